-- name: count_users :val
-- How many accounts exist (the seed only loads demo data into an empty database).
SELECT count(*) FROM users;

-- name: create_user :one
INSERT INTO users (email, password_hash, display_name, status, roles)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, email, display_name, status, roles, created_at, updated_at;
