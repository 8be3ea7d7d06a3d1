-- name: create_session :one
INSERT INTO sessions (id, user_id, idle_expires_at, expires_at, user_agent, ip)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, user_id, created_at, last_used_at, idle_expires_at, expires_at, user_agent, ip,
          revoked_at;

-- name: get_session_for_update :one
-- Refresh locks the family so concurrent uses of one token are serialised.
SELECT id, user_id, created_at, last_used_at, idle_expires_at, expires_at, user_agent, ip,
       revoked_at
FROM sessions
WHERE id = $1
FOR UPDATE;

-- name: list_live_sessions :many
SELECT id, user_id, created_at, last_used_at, idle_expires_at, expires_at, user_agent, ip,
       revoked_at
FROM sessions
WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() AND idle_expires_at > now()
ORDER BY last_used_at DESC;

-- name: update_session_used :execrows
UPDATE sessions SET last_used_at = now(), idle_expires_at = $2 WHERE id = $1;

-- name: update_session_revoked :execrows
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE id = $1 AND revoked_at IS NULL;

-- name: update_user_sessions_revoked :many
-- Every live session of a user except (optionally) one; returns the ids it revoked.
UPDATE sessions SET revoked_at = now(), revoked_reason = $3
WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2)
RETURNING id;

-- name: create_refresh_token :exec
INSERT INTO refresh_tokens (token_hash, session_id, generation) VALUES ($1, $2, $3);

-- name: get_refresh_token :one
SELECT token_hash, session_id, generation, created_at, rotated_at, successor_sealed
FROM refresh_tokens
WHERE token_hash = $1;

-- name: update_refresh_token_rotated :execrows
UPDATE refresh_tokens SET rotated_at = now(), successor_sealed = $2
WHERE token_hash = $1 AND rotated_at IS NULL;

-- name: update_refresh_successor_cleared :execrows
-- Successors are only needed during the grace window; wipe the sealed copies after it.
UPDATE refresh_tokens SET successor_sealed = NULL
WHERE successor_sealed IS NOT NULL AND rotated_at < now() - make_interval(secs => $1);
