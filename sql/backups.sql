-- name: get_exported_snapshot :val
-- The snapshot of the caller's repeatable-read transaction, for pg_dump --snapshot: the dump
-- and the facts the manifest records about it then see exactly the same rows.
SELECT pg_export_snapshot();

-- name: get_snapshot_time :val
SELECT now();

-- name: list_table_row_counts :many
-- Exact row counts of every table in the public schema, in the caller's snapshot. Each count
-- is its own query through query_to_xml, so no SQL is put together here.
SELECT c.relname::text AS table_name,
       (xpath('/row/n/text()',
              query_to_xml(format('SELECT count(*) AS n FROM public.%I', c.relname),
                           false, true, '')))[1]::text::bigint AS row_count
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname;

-- name: list_audit_rows_for_digest :many
-- The audit trail in insertion order, each row as PostgreSQL prints it: the digest over these
-- lines is recorded at backup time and recomputed after a restore (run with TimeZone UTC and
-- DateStyle ISO, so the text does not depend on the session).
SELECT id, audit_events::text AS line FROM audit_events ORDER BY id;

-- name: count_audit_guards :val
-- The append-only triggers of migration 0003 that are present and enabled (2 when intact).
SELECT count(*) FROM pg_trigger
WHERE tgrelid = 'audit_events'::regclass
  AND tgname IN ('audit_events_no_update_or_delete', 'audit_events_no_truncate')
  AND tgenabled <> 'D';

-- name: get_consistency_problems :one
-- What a sound copy of hotpath never holds; every column is 0 in one.
SELECT
    (SELECT count(*) FROM order_items i
     WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = i.product_id)) AS items_without_product,
    (SELECT count(*) FROM order_items i
     WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id)) AS items_without_order,
    (SELECT count(*) FROM orders o
     WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)) AS orders_without_items,
    (SELECT count(*) FROM orders o
     WHERE o.total_minor <> (SELECT sum(i.quantity * i.unit_price_minor)
                             FROM order_items i WHERE i.order_id = o.id)) AS orders_with_wrong_total,
    (SELECT count(*) FROM products WHERE stock < 0) AS products_with_negative_stock;

-- name: list_applied_migrations :many
SELECT version, name, checksum FROM schema_migrations ORDER BY version;

-- name: exists_user_relation :val
-- Whether a database holds anything of its own (a table, view or sequence outside the system
-- schemas): a restore refuses such a target unless told to replace what the backup holds.
SELECT EXISTS (
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'
      AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
);

-- name: create_backup_record :exec
INSERT INTO backups (kind, file_name, size_bytes, sha256, schema_version, snapshot_at)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: get_latest_backup_time :val
-- The newest recorded backup's finish time, NULL when none was ever recorded.
SELECT max(finished_at) FROM backups;
