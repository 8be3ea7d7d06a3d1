-- name: count_users :val
-- How many accounts exist (the seed only loads demo data into an empty database).
SELECT count(*) FROM users;

-- name: get_user_by_id :one
SELECT id, email, display_name, status, roles, created_at, updated_at
FROM users
WHERE id = $1;

-- name: get_user_by_email :one
-- Case-insensitive: the unique key is on the normalised email.
SELECT id, email, display_name, status, roles, created_at, updated_at
FROM users
WHERE email_normalized = lower($1);

-- name: create_user :one
INSERT INTO users (email, password_hash, display_name, status, roles)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, email, display_name, status, roles, created_at, updated_at;
