-- name: create_webhook_endpoint :one
INSERT INTO webhook_endpoints (url, description, event_types, secret_box, created_by)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, url, description, event_types, enabled, created_at, updated_at, rotated_at,
          previous_valid_until, failing_since, disabled_reason;

-- name: get_webhook_endpoint :one
SELECT id, url, description, event_types, enabled, created_at, updated_at, rotated_at,
       previous_valid_until, failing_since, disabled_reason
FROM webhook_endpoints
WHERE id = $1;

-- name: list_webhook_endpoints :many
-- Keyset pagination in (created_at, id) order.
SELECT id, url, description, event_types, enabled, created_at, updated_at, rotated_at,
       previous_valid_until, failing_since, disabled_reason
FROM webhook_endpoints
WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::bigint))
ORDER BY created_at, id
LIMIT $3;

-- name: update_webhook_endpoint :one
-- A NULL leaves the field as it is. Enabling clears the failure record and the reason.
UPDATE webhook_endpoints
SET url = coalesce($2, url),
    description = coalesce($3, description),
    event_types = coalesce($4, event_types),
    enabled = coalesce($5, enabled),
    failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
    disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason
                           WHEN $5 THEN NULL ELSE 'disabled by an administrator' END,
    updated_at = now()
WHERE id = $1
RETURNING id, url, description, event_types, enabled, created_at, updated_at, rotated_at,
          previous_valid_until, failing_since, disabled_reason;

-- name: delete_webhook_endpoint :execrows
DELETE FROM webhook_endpoints WHERE id = $1;

-- name: update_webhook_endpoint_secret :one
-- Rotation: the new secret signs at once; the old one signs too until $3.
UPDATE webhook_endpoints
SET previous_secret_box = secret_box, previous_valid_until = $3, secret_box = $2,
    rotated_at = now(), updated_at = now()
WHERE id = $1
RETURNING id, url, description, event_types, enabled, created_at, updated_at, rotated_at,
          previous_valid_until, failing_since, disabled_reason;

-- name: list_webhook_endpoints_enabled :many
-- What the fan-out matches events against.
SELECT id, event_types FROM webhook_endpoints WHERE enabled;

-- name: create_webhook_deliveries :exec
-- The fan-out of claimed events: one row per (event, endpoint); a repeat is ignored. Each
-- keeps its event's traceparent, which may outlive the event's row.
INSERT INTO webhook_deliveries
    (endpoint_id, event_id, message_id, event_type, body, traceparent, retry_until)
SELECT d.endpoint_id, d.event_id, d.message_id, d.event_type, d.body, d.traceparent,
       now() + make_interval(secs => $7)
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
     AS d (endpoint_id, event_id, message_id, event_type, body, traceparent)
ON CONFLICT ON CONSTRAINT webhook_deliveries_event_key DO NOTHING;

-- name: create_webhook_ping :one
-- $5: the traceparent of the request asking for it, or NULL.
INSERT INTO webhook_deliveries (endpoint_id, message_id, event_type, body, traceparent, retry_until)
VALUES ($1, $2, 'webhook.ping', $3, $5, now() + make_interval(secs => $4))
RETURNING id;

-- name: get_webhook_delivery :one
SELECT d.id, d.endpoint_id, d.event_id, d.message_id, d.event_type, d.status, d.attempts,
       d.next_attempt_at, d.created_at, d.last_attempt_at, d.finished_at
FROM webhook_deliveries d
WHERE d.id = $1 AND d.endpoint_id = $2;

-- name: list_webhook_deliveries :many
-- Newest first, keyset on id.
SELECT d.id, d.endpoint_id, d.event_id, d.message_id, d.event_type, d.status, d.attempts,
       d.next_attempt_at, d.created_at, d.last_attempt_at, d.finished_at
FROM webhook_deliveries d
WHERE d.endpoint_id = $1 AND ($2::bigint IS NULL OR d.id < $2)
ORDER BY d.id DESC
LIMIT $3;

-- name: list_webhook_attempts :many
-- The attempts of a page of deliveries, oldest first within each.
SELECT delivery_id, attempt, started_at, latency_ms, outcome, response_status, error
FROM webhook_attempts
WHERE delivery_id = ANY ($1::bigint[])
ORDER BY delivery_id, attempt;

-- name: update_webhook_delivery_redeliver :one
-- Send again from the start of the schedule, under the same webhook-id; a claimed (in-flight)
-- delivery is left alone.
UPDATE webhook_deliveries
SET status = 'pending', failures = 0, next_attempt_at = now(), finished_at = NULL,
    claim_token = NULL,
    retry_until = now() + make_interval(secs => $3)
WHERE id = $1 AND endpoint_id = $2 AND (claim_token IS NULL OR next_attempt_at <= now())
RETURNING id;

-- name: update_webhook_deliveries_claim :many
-- The worker's claim of due deliveries: at most $2 per endpoint, none of the endpoints in $3
-- (those this worker has no room for), enabled endpoints only. The claim pushes the next
-- attempt past the lease ($4 seconds), so if the worker dies the delivery becomes due again
-- on its own; skip-locked rows belong to another worker's claim.
WITH due AS (
    SELECT d.id, d.endpoint_id,
           row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS nth
    FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND NOT (d.endpoint_id = ANY ($3::bigint[]))
    ORDER BY d.next_attempt_at, d.id
    LIMIT $1 * 4
), picked AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.id IN (SELECT id FROM due WHERE nth <= $2)
      AND d.status = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at, d.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, claim_token = $5, last_attempt_at = now(),
    next_attempt_at = now() + make_interval(secs => $4)
FROM picked, webhook_endpoints e
WHERE d.id = picked.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.message_id, d.event_type, d.body, d.attempts, d.failures,
          d.retry_until, d.traceparent, e.url, e.secret_box, e.previous_secret_box,
          e.previous_valid_until;

-- name: create_webhook_attempt :exec
INSERT INTO webhook_attempts
    (delivery_id, attempt, started_at, latency_ms, outcome, response_status, error,
     response_excerpt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ON CONSTRAINT webhook_attempts_once_key DO NOTHING;

-- name: update_webhook_delivery_succeeded :one
-- Only under this worker's own claim: a claim that lapsed and was taken over is not ours.
UPDATE webhook_deliveries
SET status = 'succeeded', claim_token = NULL, finished_at = now()
WHERE id = $1 AND claim_token = $2
RETURNING endpoint_id;

-- name: update_webhook_delivery_failed :one
-- $3: when to try again; past retry_until the delivery is dead instead.
UPDATE webhook_deliveries
SET failures = failures + 1, claim_token = NULL,
    status = CASE WHEN $3 > retry_until THEN 'dead' ELSE 'pending' END,
    next_attempt_at = CASE WHEN $3 > retry_until THEN next_attempt_at ELSE $3 END,
    finished_at = CASE WHEN $3 > retry_until THEN now() END
WHERE id = $1 AND claim_token = $2
RETURNING endpoint_id, status;

-- name: update_webhook_delivery_released :execrows
-- A worker stopping with the attempt unfinished: the delivery is due again at once. $3 is 1
-- when nothing was sent (the attempt number is unspent), 0 when the request may have gone out.
UPDATE webhook_deliveries
SET claim_token = NULL, next_attempt_at = now(), attempts = attempts - $3
WHERE id = $1 AND claim_token = $2;

-- name: update_webhook_endpoint_succeeded :exec
UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL;

-- name: update_webhook_endpoint_failing :val
-- Records a failure. When a delivery died ($2) and nothing has succeeded since before
-- failing_since reached $3 seconds ago, the endpoint is disabled: true when that happened now.
WITH old AS (
    SELECT id, enabled, coalesce(failing_since, now()) AS since
    FROM webhook_endpoints WHERE id = $1
    FOR UPDATE
)
UPDATE webhook_endpoints e
SET failing_since = old.since,
    enabled = e.enabled AND NOT ($2 AND old.since <= now() - make_interval(secs => $3)),
    disabled_reason = CASE
        WHEN e.enabled AND $2 AND old.since <= now() - make_interval(secs => $3)
        THEN 'failing deliveries' ELSE e.disabled_reason END
FROM old
WHERE e.id = old.id
RETURNING old.enabled AND NOT e.enabled;

-- name: update_webhook_deliveries_dead_for_endpoint :execrows
-- An endpoint disabled for failing: what it still had pending dies with it (redeliverable).
UPDATE webhook_deliveries
SET status = 'dead', finished_at = now()
WHERE endpoint_id = $1 AND status = 'pending' AND claim_token IS NULL;

-- name: delete_webhook_deliveries_finished :execrows
-- Retention: deliveries that succeeded or died more than $1 seconds ago (their attempts go
-- with them), at most $2 a statement.
DELETE FROM webhook_deliveries
WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status <> 'pending' AND finished_at < now() - make_interval(secs => $1)
    ORDER BY id
    LIMIT $2
);

-- name: get_webhook_backlog :one
-- For the worker's gauges: what waits, and how long the oldest has waited (seconds).
SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS events,
       coalesce(extract(epoch FROM now() - (SELECT created_at FROM outbox
                                            WHERE published_at IS NULL
                                            ORDER BY id LIMIT 1)), 0)::float8 AS events_age,
       (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS deliveries,
       coalesce(extract(epoch FROM now() - (SELECT min(created_at) FROM webhook_deliveries
                                            WHERE status = 'pending')), 0)::float8
           AS deliveries_age;
