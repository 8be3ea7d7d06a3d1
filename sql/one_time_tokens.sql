-- name: create_one_time_token :exec
INSERT INTO one_time_tokens (token_hash, purpose, user_id, expires_at) VALUES ($1, $2, $3, $4);

-- name: update_one_time_token_used :one
-- Single use: only the first redemption of an unexpired token returns its user.
UPDATE one_time_tokens SET used_at = now()
WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
RETURNING user_id;

-- name: delete_one_time_tokens_for_user :execrows
-- A new reset link invalidates the older ones.
DELETE FROM one_time_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL;
