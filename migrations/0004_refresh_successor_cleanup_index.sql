-- migrate: no-transaction
-- The periodic wipe of sealed successors looks only at rows that still hold one.
CREATE INDEX CONCURRENTLY IF NOT EXISTS refresh_tokens_sealed_idx
    ON refresh_tokens (rotated_at) WHERE successor_sealed IS NOT NULL;
