-- API keys for machine clients. The secret is stored as SHA-256 only (keys are high-entropy:
-- no argon2 per request). During a rotation the previous secret keeps working until
-- previous_valid_until. last_used_at and request_count are updated in batches.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    scopes text[] NOT NULL DEFAULT '{}',
    rate_tier text NOT NULL DEFAULT 'standard'
        CONSTRAINT api_keys_rate_tier_check CHECK (rate_tier IN ('standard', 'high')),
    secret_hash bytea NOT NULL,
    previous_secret_hash bytea,
    previous_valid_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    rotated_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    request_count bigint NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at, id);
CREATE INDEX api_keys_created_idx ON api_keys (created_at, id);
