-- name: create_outbox_event :exec
-- $5: the W3C traceparent of the request writing it, or NULL (server/db/outbox.py).
INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, traceparent)
VALUES ($1, $2, $3, $4, $5);

-- name: create_outbox_events :exec
-- Several events in one statement (an order and its stock changes): $1 to $4 are their topics,
-- aggregate types, aggregate ids and payloads (JSON text), one element per event, written in
-- that order (the worker publishes by id); $5 as in create_outbox_event, for all of them.
INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, traceparent)
SELECT e.topic, e.aggregate_type, e.aggregate_id, e.payload::jsonb, $5
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
     WITH ORDINALITY AS e (topic, aggregate_type, aggregate_id, payload, n)
ORDER BY e.n;

-- name: list_outbox_events_to_publish :many
-- The worker's claim: the oldest unpublished events, locked until its transaction ends; rows
-- another worker holds are skipped, so any number of workers never claim one event twice.
SELECT id, topic, aggregate_type, aggregate_id, payload, created_at, traceparent
FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: update_outbox_published :exec
UPDATE outbox SET published_at = now() WHERE id = ANY ($1::bigint[]);

-- name: delete_outbox_published :execrows
-- Retention: events published more than $1 seconds ago, at most $2 a statement. Published
-- rows are the old ones, so the id order finds them first.
DELETE FROM outbox
WHERE id IN (
    SELECT id FROM outbox
    WHERE published_at < now() - make_interval(secs => $1)
    ORDER BY id
    LIMIT $2
);
