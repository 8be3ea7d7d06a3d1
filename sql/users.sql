-- name: count_users :val
-- How many accounts exist (the seed only loads demo data into an empty database).
SELECT count(*) FROM users;

-- name: create_user :one
INSERT INTO users (email, password_hash, display_name, status, roles)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, email, display_name, status, roles, email_verified_at, created_at, updated_at;

-- name: get_user_by_id :one
SELECT id, email, display_name, status, roles, email_verified_at, created_at, updated_at
FROM users
WHERE id = $1;

-- name: get_credentials_by_email :one
-- Login: the account and its password hash, by the normalised address
-- (server/users/email_address.py), which is what email_normalized holds.
SELECT id, email, display_name, status, roles, email_verified_at, created_at, updated_at,
       password_hash
FROM users
WHERE email_normalized = $1;

-- name: get_password_hash :val
SELECT password_hash FROM users WHERE id = $1;

-- name: update_password_hash :execrows
-- A rehash on login keeps password_changed_at: the password itself did not change.
UPDATE users SET password_hash = $2 WHERE id = $1;

-- name: update_password :execrows
UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now()
WHERE id = $1;

-- name: update_profile :one
UPDATE users SET display_name = $2, updated_at = now()
WHERE id = $1
RETURNING id, email, display_name, status, roles, email_verified_at, created_at, updated_at;

-- name: update_status :one
UPDATE users SET status = $2, updated_at = now()
WHERE id = $1
RETURNING id, email, display_name, status, roles, email_verified_at, created_at, updated_at;

-- name: update_email_verified :execrows
-- The mailbox proved itself (a verification or reset token): a pending account becomes active.
UPDATE users SET email_verified_at = coalesce(email_verified_at, now()),
                 status = CASE status WHEN 'pending' THEN 'active' ELSE status END,
                 updated_at = now()
WHERE id = $1;

-- name: update_add_role :one
UPDATE users SET roles = array_append(roles, $2), updated_at = now()
WHERE id = $1 AND NOT ($2 = ANY (roles))
RETURNING id, email, display_name, status, roles, email_verified_at, created_at, updated_at;

-- name: update_remove_role :one
UPDATE users SET roles = array_remove(roles, $2), updated_at = now()
WHERE id = $1 AND $2 = ANY (roles)
RETURNING id, email, display_name, status, roles, email_verified_at, created_at, updated_at;

-- name: delete_user :execrows
DELETE FROM users WHERE id = $1;

-- name: list_users :many
-- Keyset pagination in (created_at, id) order; NULL filters match everything.
SELECT id, email, display_name, status, roles, email_verified_at, created_at, updated_at
FROM users
WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::bigint))
  AND ($3::text IS NULL OR status = $3)
  AND ($4::text IS NULL OR $4 = ANY (roles))
  AND ($5::text IS NULL OR email_normalized LIKE $5 || '%')
ORDER BY created_at, id
LIMIT $6;

-- name: list_users_email_unnormalized :many
-- Addresses stored before hotpath normalised them that migration 0009 could not rewrite in SQL:
-- not their own key, or not ASCII (every normalised address is).
SELECT id, email FROM users
WHERE email <> email_normalized COLLATE "C" OR email !~ '^[!-~]+$'
ORDER BY id;

-- name: update_email :execrows
-- Only while the address is still the one read ($3): two runners rewrite it once.
UPDATE users SET email = $2, updated_at = now() WHERE id = $1 AND email = $3;
