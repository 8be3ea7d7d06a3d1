-- Product listings: one query per allowed sort order and direction (keyset on the sort
-- column and id). NULL filters match everything; $1/$2 are the cursor (NULL: first page).

-- name: list_products_by_created_asc :many
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE deleted_at IS NULL
  AND ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::bigint))
  AND ($3::text IS NULL OR search @@ plainto_tsquery('simple', $3))
  AND ($4::bigint IS NULL OR price_minor >= $4)
  AND ($5::bigint IS NULL OR price_minor <= $5)
  AND (NOT $6::boolean OR stock > 0)
  AND ($7::text IS NULL OR category = $7)
ORDER BY created_at, id
LIMIT $8;

-- name: list_products_by_created_desc :many
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE deleted_at IS NULL
  AND ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2::bigint))
  AND ($3::text IS NULL OR search @@ plainto_tsquery('simple', $3))
  AND ($4::bigint IS NULL OR price_minor >= $4)
  AND ($5::bigint IS NULL OR price_minor <= $5)
  AND (NOT $6::boolean OR stock > 0)
  AND ($7::text IS NULL OR category = $7)
ORDER BY created_at DESC, id DESC
LIMIT $8;

-- name: list_products_by_price_asc :many
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE deleted_at IS NULL
  AND ($1::bigint IS NULL OR (price_minor, id) > ($1, $2::bigint))
  AND ($3::text IS NULL OR search @@ plainto_tsquery('simple', $3))
  AND ($4::bigint IS NULL OR price_minor >= $4)
  AND ($5::bigint IS NULL OR price_minor <= $5)
  AND (NOT $6::boolean OR stock > 0)
  AND ($7::text IS NULL OR category = $7)
ORDER BY price_minor, id
LIMIT $8;

-- name: list_products_by_price_desc :many
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE deleted_at IS NULL
  AND ($1::bigint IS NULL OR (price_minor, id) < ($1, $2::bigint))
  AND ($3::text IS NULL OR search @@ plainto_tsquery('simple', $3))
  AND ($4::bigint IS NULL OR price_minor >= $4)
  AND ($5::bigint IS NULL OR price_minor <= $5)
  AND (NOT $6::boolean OR stock > 0)
  AND ($7::text IS NULL OR category = $7)
ORDER BY price_minor DESC, id DESC
LIMIT $8;

-- name: list_products_by_name_asc :many
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE deleted_at IS NULL
  AND ($1::text IS NULL OR (name, id) > ($1, $2::bigint))
  AND ($3::text IS NULL OR search @@ plainto_tsquery('simple', $3))
  AND ($4::bigint IS NULL OR price_minor >= $4)
  AND ($5::bigint IS NULL OR price_minor <= $5)
  AND (NOT $6::boolean OR stock > 0)
  AND ($7::text IS NULL OR category = $7)
ORDER BY name, id
LIMIT $8;

-- name: list_products_by_name_desc :many
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE deleted_at IS NULL
  AND ($1::text IS NULL OR (name, id) < ($1, $2::bigint))
  AND ($3::text IS NULL OR search @@ plainto_tsquery('simple', $3))
  AND ($4::bigint IS NULL OR price_minor >= $4)
  AND ($5::bigint IS NULL OR price_minor <= $5)
  AND (NOT $6::boolean OR stock > 0)
  AND ($7::text IS NULL OR category = $7)
ORDER BY name DESC, id DESC
LIMIT $8;
