-- Product listings: one query per sort order and direction, keyset on the sort column and
-- id, and for each a variant for a search. NULL filters match everything. The parameters:
-- $1/$2 the cursor (NULL: the first page), $3 the search, $4/$5 the price range, $6 in stock
-- only, $7 the category, $8 the limit, $9 the currency. A listing without a search is given
-- NULL for $3 (and answers nothing for a search: a search has queries of its own).
--
-- Listings by price are within one currency ($9 is required there: prices in two currencies do
-- not compare), which products_currency_price_idx serves in order. A search
-- (products_search_query, migration 0010) reads the matches from products_search_document_idx
-- first, whatever the plan's parameters (MATERIALIZED), and then orders them: walking the sort's
-- own index and filtering would read the whole table for a word nothing has. Its tsquery is a
-- sub-select, computed once per run rather than once per row in a generic plan.

-- name: list_products_by_created_asc :many
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products
WHERE deleted_at IS NULL
  AND $3::text IS NULL
  AND ($9::text IS NULL OR currency = $9)
  AND ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::bigint))
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
  AND $3::text IS NULL
  AND ($9::text IS NULL OR currency = $9)
  AND ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2::bigint))
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
  AND $3::text IS NULL
  AND currency = $9
  AND ($1::bigint IS NULL OR (price_minor, id) > ($1, $2::bigint))
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
  AND $3::text IS NULL
  AND currency = $9
  AND ($1::bigint IS NULL OR (price_minor, id) < ($1, $2::bigint))
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
  AND $3::text IS NULL
  AND ($9::text IS NULL OR currency = $9)
  AND ($1::text IS NULL OR (name, id) > ($1, $2::bigint))
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
  AND $3::text IS NULL
  AND ($9::text IS NULL OR currency = $9)
  AND ($1::text IS NULL OR (name, id) < ($1, $2::bigint))
  AND ($4::bigint IS NULL OR price_minor >= $4)
  AND ($5::bigint IS NULL OR price_minor <= $5)
  AND (NOT $6::boolean OR stock > 0)
  AND ($7::text IS NULL OR category = $7)
ORDER BY name DESC, id DESC
LIMIT $8;

-- name: list_products_matching_by_created_asc :many
WITH found AS MATERIALIZED (
    SELECT id, sku, name, description, category, price_minor, currency, stock, version,
           created_at, updated_at
    FROM products
    WHERE deleted_at IS NULL
      AND search_document @@ (SELECT products_search_query($3, true))
      AND ($9::text IS NULL OR currency = $9)
      AND ($4::bigint IS NULL OR price_minor >= $4)
      AND ($5::bigint IS NULL OR price_minor <= $5)
      AND (NOT $6::boolean OR stock > 0)
      AND ($7::text IS NULL OR category = $7)
)
SELECT * FROM found
WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2::bigint)
ORDER BY created_at, id
LIMIT $8;

-- name: list_products_matching_by_created_desc :many
WITH found AS MATERIALIZED (
    SELECT id, sku, name, description, category, price_minor, currency, stock, version,
           created_at, updated_at
    FROM products
    WHERE deleted_at IS NULL
      AND search_document @@ (SELECT products_search_query($3, true))
      AND ($9::text IS NULL OR currency = $9)
      AND ($4::bigint IS NULL OR price_minor >= $4)
      AND ($5::bigint IS NULL OR price_minor <= $5)
      AND (NOT $6::boolean OR stock > 0)
      AND ($7::text IS NULL OR category = $7)
)
SELECT * FROM found
WHERE $1::timestamptz IS NULL OR (created_at, id) < ($1, $2::bigint)
ORDER BY created_at DESC, id DESC
LIMIT $8;

-- name: list_products_matching_by_price_asc :many
WITH found AS MATERIALIZED (
    SELECT id, sku, name, description, category, price_minor, currency, stock, version,
           created_at, updated_at
    FROM products
    WHERE deleted_at IS NULL
      AND search_document @@ (SELECT products_search_query($3, true))
      AND currency = $9
      AND ($4::bigint IS NULL OR price_minor >= $4)
      AND ($5::bigint IS NULL OR price_minor <= $5)
      AND (NOT $6::boolean OR stock > 0)
      AND ($7::text IS NULL OR category = $7)
)
SELECT * FROM found
WHERE $1::bigint IS NULL OR (price_minor, id) > ($1, $2::bigint)
ORDER BY price_minor, id
LIMIT $8;

-- name: list_products_matching_by_price_desc :many
WITH found AS MATERIALIZED (
    SELECT id, sku, name, description, category, price_minor, currency, stock, version,
           created_at, updated_at
    FROM products
    WHERE deleted_at IS NULL
      AND search_document @@ (SELECT products_search_query($3, true))
      AND currency = $9
      AND ($4::bigint IS NULL OR price_minor >= $4)
      AND ($5::bigint IS NULL OR price_minor <= $5)
      AND (NOT $6::boolean OR stock > 0)
      AND ($7::text IS NULL OR category = $7)
)
SELECT * FROM found
WHERE $1::bigint IS NULL OR (price_minor, id) < ($1, $2::bigint)
ORDER BY price_minor DESC, id DESC
LIMIT $8;

-- name: list_products_matching_by_name_asc :many
WITH found AS MATERIALIZED (
    SELECT id, sku, name, description, category, price_minor, currency, stock, version,
           created_at, updated_at
    FROM products
    WHERE deleted_at IS NULL
      AND search_document @@ (SELECT products_search_query($3, true))
      AND ($9::text IS NULL OR currency = $9)
      AND ($4::bigint IS NULL OR price_minor >= $4)
      AND ($5::bigint IS NULL OR price_minor <= $5)
      AND (NOT $6::boolean OR stock > 0)
      AND ($7::text IS NULL OR category = $7)
)
SELECT * FROM found
WHERE $1::text IS NULL OR (name, id) > ($1, $2::bigint)
ORDER BY name, id
LIMIT $8;

-- name: list_products_matching_by_name_desc :many
WITH found AS MATERIALIZED (
    SELECT id, sku, name, description, category, price_minor, currency, stock, version,
           created_at, updated_at
    FROM products
    WHERE deleted_at IS NULL
      AND search_document @@ (SELECT products_search_query($3, true))
      AND ($9::text IS NULL OR currency = $9)
      AND ($4::bigint IS NULL OR price_minor >= $4)
      AND ($5::bigint IS NULL OR price_minor <= $5)
      AND (NOT $6::boolean OR stock > 0)
      AND ($7::text IS NULL OR category = $7)
)
SELECT * FROM found
WHERE $1::text IS NULL OR (name, id) < ($1, $2::bigint)
ORDER BY name DESC, id DESC
LIMIT $8;

-- name: list_products_by_relevance :many
-- Best match first: ts_rank over name and SKU (weight A) and description (C) of the search's
-- prefixes (what matched), plus that of its whole words (a word typed in full ranks the
-- products that have it above those with a longer word it begins); ties newest first. The keyset is (rank, id): rank is a real, so the cursor's copy compares
-- exactly.
WITH found AS MATERIALIZED (
    SELECT id, sku, name, description, category, price_minor, currency, stock, version,
           created_at, updated_at,
           ts_rank(search_document, (SELECT products_search_query($3, true)))
           + ts_rank(search_document, (SELECT products_search_query($3, false))) AS rank
    FROM products
    WHERE deleted_at IS NULL
      AND search_document @@ (SELECT products_search_query($3, true))
      AND ($4::bigint IS NULL OR price_minor >= $4)
      AND ($5::bigint IS NULL OR price_minor <= $5)
      AND (NOT $6::boolean OR stock > 0)
      AND ($7::text IS NULL OR category = $7)
      AND ($9::text IS NULL OR currency = $9)
)
SELECT * FROM found
WHERE $1::real IS NULL OR (rank, id) < ($1::real, $2::bigint)
ORDER BY rank DESC, id DESC
LIMIT $8;
