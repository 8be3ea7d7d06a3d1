-- name: create_api_key :one
INSERT INTO api_keys (id, user_id, name, scopes, rate_tier, secret_hash, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, user_id, name, scopes, rate_tier, created_at, expires_at, rotated_at, revoked_at,
          last_used_at, request_count, previous_valid_until;

-- name: get_api_key :one
SELECT id, user_id, name, scopes, rate_tier, created_at, expires_at, rotated_at, revoked_at,
       last_used_at, request_count, previous_valid_until
FROM api_keys
WHERE id = $1;

-- name: get_api_key_credentials :one
-- Verification: the key, its hashes and its owner's standing and permissions, in one round trip.
SELECT k.id, k.user_id, k.scopes, k.rate_tier, k.secret_hash, k.previous_secret_hash,
       k.previous_valid_until, k.expires_at, k.revoked_at, u.status AS owner_status,
       u.roles AS owner_roles,
       coalesce((SELECT array_agg(DISTINCT p) FROM roles r, unnest(r.permissions) AS p
                 WHERE r.name = ANY (u.roles)), '{}') AS owner_permissions
FROM api_keys k
JOIN users u ON u.id = k.user_id
WHERE k.id = $1;

-- name: list_api_keys :many
-- Keyset pagination in (created_at, id) order; a NULL owner lists every key (administrators).
SELECT id, user_id, name, scopes, rate_tier, created_at, expires_at, rotated_at, revoked_at,
       last_used_at, request_count, previous_valid_until
FROM api_keys
WHERE ($1::bigint IS NULL OR user_id = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::text))
ORDER BY created_at, id
LIMIT $4;

-- name: update_api_key_revoked :one
UPDATE api_keys SET revoked_at = now()
WHERE id = $1 AND revoked_at IS NULL
RETURNING id;

-- name: update_api_key_secret :one
-- Rotation: the new secret works at once, the old one until $3.
UPDATE api_keys
SET previous_secret_hash = secret_hash, previous_valid_until = $3, secret_hash = $2,
    rotated_at = now()
WHERE id = $1 AND revoked_at IS NULL
RETURNING id, user_id, name, scopes, rate_tier, created_at, expires_at, rotated_at, revoked_at,
          last_used_at, request_count, previous_valid_until;

-- name: update_api_key_usage :execrows
-- The batched usage of many keys in one statement.
UPDATE api_keys AS k
SET request_count = k.request_count + u.requests,
    last_used_at = greatest(k.last_used_at, u.used_at)
FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS u (id, requests, used_at)
WHERE k.id = u.id;
