-- name: get_product :one
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE id = $1 AND deleted_at IS NULL;

-- name: create_product :one
INSERT INTO products (sku, name, description, category, price_minor, currency, stock)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, sku, name, description, category, price_minor, currency, stock, version,
          created_at, updated_at;

-- name: update_product :one
-- Optimistic concurrency: only the version the client saw ($2) is updated.
UPDATE products
SET name = $3, description = $4, category = $5, price_minor = $6, currency = $7,
    version = version + 1, updated_at = now()
WHERE id = $1 AND version = $2 AND deleted_at IS NULL
RETURNING id, sku, name, description, category, price_minor, currency, stock, version,
          created_at, updated_at;

-- name: delete_product :one
UPDATE products SET deleted_at = now(), version = version + 1, updated_at = now()
WHERE id = $1 AND version = $2 AND deleted_at IS NULL
RETURNING id;

-- name: update_product_stock :one
-- A conditional update: stock never goes below zero (nor past the column's range), whatever
-- runs concurrently.
UPDATE products SET stock = stock + $2, version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
  AND stock::bigint + $2 BETWEEN 0 AND 2147483647
RETURNING id, sku, name, description, category, price_minor, currency, stock, version,
          created_at, updated_at;

-- name: exists_product :val
SELECT EXISTS (SELECT 1 FROM products WHERE id = $1 AND deleted_at IS NULL);

-- name: list_product_stock :many
-- What is left of each live product among $1, for an order that could not be filled (ids
-- missing from the answer name no product).
SELECT id, stock FROM products WHERE id = ANY ($1::bigint[]) AND deleted_at IS NULL;
