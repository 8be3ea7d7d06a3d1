-- migrate: no-transaction
-- Prefix search (email_normalized LIKE 'abc%') needs text_pattern_ops under a non-C collation.
-- A failed concurrent build leaves an INVALID index that IF NOT EXISTS would keep on the rerun;
-- dropping it first makes the rerun build it again.
DROP INDEX CONCURRENTLY IF EXISTS users_email_normalized_prefix_idx;
-- migrate: statement
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_normalized_prefix_idx
    ON users (email_normalized text_pattern_ops);
