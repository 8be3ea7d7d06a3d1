-- name: list_roles :many
SELECT name, description, permissions, created_at, updated_at FROM roles ORDER BY name;

-- name: get_role :one
SELECT name, description, permissions, created_at, updated_at FROM roles WHERE name = $1;

-- name: get_role_for_update :one
-- The role as it is before a change, locked so concurrent changes see each other's result.
SELECT name, description, permissions, created_at, updated_at FROM roles WHERE name = $1
FOR UPDATE;

-- name: list_permissions_for_roles :many
-- The permissions granted by a set of role names (unknown names grant nothing).
SELECT DISTINCT unnest(permissions) AS permission FROM roles WHERE name = ANY ($1::text[]);

-- name: create_role :one
INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3)
RETURNING name, description, permissions, created_at, updated_at;

-- name: update_role_permissions :one
UPDATE roles SET permissions = $2, description = coalesce($3, description), updated_at = now()
WHERE name = $1
RETURNING name, description, permissions, created_at, updated_at;
