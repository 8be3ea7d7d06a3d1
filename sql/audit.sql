-- name: create_audit_event :exec
INSERT INTO audit_events
    (action, outcome, actor_id, target_type, target_id, ip, user_agent, request_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: list_audit_events :many
-- Newest first, keyset on (occurred_at, id); NULL filters match everything.
SELECT id, occurred_at, action, outcome, actor_id, target_type, target_id, ip, user_agent,
       request_id, details
FROM audit_events
WHERE ($1::timestamptz IS NULL OR (occurred_at, id) < ($1, $2::bigint))
  AND ($3::bigint IS NULL OR actor_id = $3)
  AND ($4::text IS NULL OR action = $4)
  AND ($5::text IS NULL OR target_type = $5)
  AND ($6::text IS NULL OR target_id = $6)
  AND ($7::timestamptz IS NULL OR occurred_at >= $7)
  AND ($8::timestamptz IS NULL OR occurred_at < $8)
ORDER BY occurred_at DESC, id DESC
LIMIT $9;
