-- migrate: no-transaction
-- The trace an outbox event comes from, so the webhook worker's spans can link back to the
-- request that caused it (docs/observability.md, Tracing). `traceparent` is the W3C header of
-- that moment: with tracing on, the request's server span; with tracing off, the span of a
-- caller that sent a valid traceparent; NULL when there was neither. The server writes it from
-- parsed ids only (version 00, lower-case hex, no all-zero id), which the CHECK holds it to.
-- The fan-out copies it to each delivery, whose retries and redeliveries may outlive the
-- event's row (retention prunes published events).
--
-- Only additions (docs/operations.md): the release before keeps writing events without it
-- (NULL). The columns are added without a scan (nullable, no default); the CHECKs are added
-- NOT VALID, then validated under a lock that lets writers go on, so placing orders is never
-- blocked for the length of a scan of the outbox. Every part is rerunnable.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent text;
-- migrate: statement
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_traceparent_check;
-- migrate: statement
ALTER TABLE outbox ADD CONSTRAINT outbox_traceparent_check
    CHECK (traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
           AND traceparent !~ '^00-0{32}-' AND traceparent !~ '-0{16}-')
    NOT VALID;
-- migrate: statement
ALTER TABLE outbox VALIDATE CONSTRAINT outbox_traceparent_check;
-- migrate: statement
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS traceparent text;
-- migrate: statement
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_traceparent_check;
-- migrate: statement
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_traceparent_check
    CHECK (traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
           AND traceparent !~ '^00-0{32}-' AND traceparent !~ '-0{16}-')
    NOT VALID;
-- migrate: statement
ALTER TABLE webhook_deliveries VALIDATE CONSTRAINT webhook_deliveries_traceparent_check;
