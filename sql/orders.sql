-- name: get_idempotency_lock :val
-- In flight: a second request with the same key finds this lock taken (and answers 409).
SELECT pg_try_advisory_xact_lock(hashtextextended($1::bigint || ':' || $2, 0));

-- name: get_idempotency_key :one
SELECT request_hash, response_status, response_body
FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND expires_at > now();

-- name: get_idempotency_key_and_buyer :one
-- get_idempotency_key and, when nothing is stored, whether the buyer's address is confirmed
-- (false for an account that is gone), in one round trip: always one row; the stored columns
-- are NULL when there is no answer, email_verified is NULL when there is one (a replay does not
-- depend on the address).
SELECT k.request_hash, k.response_status, k.response_body,
       CASE WHEN k.user_id IS NULL THEN
           EXISTS (SELECT 1 FROM users WHERE id = $1 AND email_verified_at IS NOT NULL)
       END AS email_verified
FROM (VALUES (1)) AS one (n)
LEFT JOIN idempotency_keys AS k ON k.user_id = $1 AND k.key = $2 AND k.expires_at > now();

-- name: create_idempotency_key_and_events :exec
-- A new order's stored answer ($1 to $6) and its outbox events ($7 to $11: create_outbox_events'
-- arguments, sql/outbox.sql) in one round trip. The answer replaces only a key past its
-- lifetime (a live key is locked and has no answer, or the order would have been replayed).
WITH events AS (
    INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, traceparent)
    SELECT e.topic, e.aggregate_type, e.aggregate_id, e.payload::jsonb, $11
    FROM unnest($7::text[], $8::text[], $9::text[], $10::text[])
         WITH ORDINALITY AS e (topic, aggregate_type, aggregate_id, payload, n)
    ORDER BY e.n
)
INSERT INTO idempotency_keys (user_id, key, request_hash, response_status, response_body, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id, key) DO UPDATE
SET request_hash = excluded.request_hash, response_status = excluded.response_status,
    response_body = excluded.response_body, created_at = now(), expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at <= now();

-- name: delete_expired_idempotency_keys :execrows
DELETE FROM idempotency_keys WHERE expires_at <= now();

-- name: create_order :one
-- The order and its items in one round trip: $4, $5 and $6 are the items' product ids,
-- quantities and unit prices. The items' foreign key is checked at the end of the statement,
-- when the order's row is there.
WITH placed AS (
    INSERT INTO orders (user_id, currency, total_minor) VALUES ($1, $2, $3)
    RETURNING id, user_id, status, currency, total_minor, created_at, updated_at
), items AS (
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_minor)
    SELECT placed.id, t.product_id, t.quantity, t.unit_price
    FROM placed,
         unnest($4::bigint[], $5::integer[], $6::bigint[]) AS t (product_id, quantity, unit_price)
)
SELECT id, user_id, status, currency, total_minor, created_at, updated_at FROM placed;

-- name: get_order :one
SELECT id, user_id, status, currency, total_minor, created_at, updated_at
FROM orders WHERE id = $1;

-- name: get_order_for_update :one
SELECT id, user_id, status, currency, total_minor, created_at, updated_at
FROM orders WHERE id = $1 FOR UPDATE;

-- name: list_order_items :many
SELECT order_id, product_id, quantity, unit_price_minor
FROM order_items WHERE order_id = ANY ($1::bigint[])
ORDER BY order_id, product_id;

-- name: update_order_status :one
UPDATE orders SET status = $2, updated_at = now() WHERE id = $1 AND status = $3
RETURNING id, user_id, status, currency, total_minor, created_at, updated_at;

-- name: list_orders :many
-- Newest first, keyset on (created_at, id); NULL owner: every order (staff).
SELECT id, user_id, status, currency, total_minor, created_at, updated_at
FROM orders
WHERE ($1::bigint IS NULL OR user_id = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::bigint))
ORDER BY created_at DESC, id DESC
LIMIT $5;
