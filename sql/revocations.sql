-- name: create_revocation :one
-- Runs inside the revoking service's transaction; the caller publishes the row after commit.
INSERT INTO revocations (kind, subject, not_before, expires_at)
VALUES ($1, $2, $3, $4)
RETURNING id, kind, subject, not_before, expires_at;

-- name: create_role_holder_revocations :many
-- A role lost permissions: a user-level cut-off for every holder, in the role change's
-- transaction. Their older access tokens are refused (a refresh carries the role's new
-- permissions) and their cached API keys are looked up again.
INSERT INTO revocations (kind, subject, not_before, expires_at)
SELECT 'user', id::text, $2, $3 FROM users WHERE $1 = ANY (roles)
RETURNING id, kind, subject, not_before, expires_at;

-- name: list_revocations_after :many
-- The replicas' poll: unexpired revocations past a known id, oldest first, one page at a time.
SELECT id, kind, subject, not_before, expires_at
FROM revocations
WHERE id > $1 AND expires_at > now()
ORDER BY id
LIMIT $2;

-- name: list_revocations_by_id :many
-- Re-reads ids a poll skipped: an id is taken at INSERT but visible at COMMIT, so a poll can
-- see id 11 before id 10 commits.
SELECT id, kind, subject, not_before, expires_at
FROM revocations
WHERE id = ANY($1::bigint[]) AND expires_at > now()
ORDER BY id;

-- name: delete_expired_revocations :execrows
-- Once expires_at passed, no access token the row could affect is still valid.
DELETE FROM revocations WHERE expires_at <= now();
