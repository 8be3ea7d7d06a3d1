-- name: create_mail :exec
-- A mail to send: $1 kind, $2 sealed recipient, subject and body, $3 seconds to keep trying.
INSERT INTO mail_outbox (kind, sealed, retry_until)
VALUES ($1, $2, now() + make_interval(secs => $3));

-- name: update_mail_claim :many
-- The worker's claim of due mails, oldest first: the next attempt moves past the lease ($2
-- seconds), so a worker that dies mid-send leaves the mail due again on its own; rows another
-- worker holds are skipped, so no two workers send one mail at once.
WITH picked AS (
    SELECT id FROM mail_outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE mail_outbox m
SET attempts = m.attempts + 1, claim_token = $3,
    next_attempt_at = now() + make_interval(secs => $2)
FROM picked
WHERE m.id = picked.id
RETURNING m.id, m.kind, m.sealed, m.attempts, m.created_at;

-- name: update_mail_sent :val
-- Only under this worker's own claim; the content, a live token, is not kept.
UPDATE mail_outbox
SET status = 'sent', claim_token = NULL, sealed = '', last_error = NULL, finished_at = now()
WHERE id = $1 AND claim_token = $2
RETURNING id;

-- name: update_mail_failed :one
-- $3: when to try again, or NULL when the failure is permanent; past retry_until the mail is
-- dead instead (its token has expired). $4: the error, never the body.
UPDATE mail_outbox
SET claim_token = NULL, last_error = $4,
    status = CASE WHEN $3::timestamptz IS NULL OR $3 > retry_until THEN 'dead' ELSE 'pending' END,
    next_attempt_at = coalesce($3, next_attempt_at),
    sealed = CASE WHEN $3::timestamptz IS NULL OR $3 > retry_until THEN '' ELSE sealed END,
    finished_at = CASE WHEN $3::timestamptz IS NULL OR $3 > retry_until THEN now() END
WHERE id = $1 AND claim_token = $2
RETURNING status;

-- name: update_mail_released :exec
-- A worker stopping before it sent the mail: due again at once, the attempt unspent.
UPDATE mail_outbox
SET claim_token = NULL, next_attempt_at = now(), attempts = attempts - 1
WHERE id = $1 AND claim_token = $2;

-- name: delete_mail_finished :val
-- Retention: mails sent or dead more than $1 seconds ago, at most $2 a statement; how many.
WITH gone AS (
    DELETE FROM mail_outbox
    WHERE id IN (
        SELECT id FROM mail_outbox
        WHERE status <> 'pending' AND finished_at < now() - make_interval(secs => $1)
        ORDER BY id
        LIMIT $2
    )
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: get_mail_backlog :one
-- For the worker's gauges: mails waiting, and how long the oldest has waited (seconds).
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age
FROM mail_outbox
WHERE status = 'pending';
