-- Outbound webhooks: the endpoints administrators register, one delivery per (event, endpoint)
-- fanned out from the outbox by the worker, and every attempt to send one.
CREATE TABLE webhook_endpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    event_types text[] NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    -- The signing secret, AES-GCM encrypted under a key derived from HOTPATH_SECRET_KEY
    -- (nonce || ciphertext): the worker needs it back to sign, so it cannot be a hash.
    secret_box bytea NOT NULL,
    previous_secret_box bytea,
    previous_valid_until timestamptz,
    created_by bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    -- Set at the first failed attempt after a success; cleared by the next success.
    failing_since timestamptz,
    disabled_reason text
);
CREATE INDEX webhook_endpoints_created_idx ON webhook_endpoints (created_at, id);

CREATE TABLE webhook_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The outbox event (NULL for a ping); one delivery per event and endpoint.
    event_id bigint,
    -- webhook-id: the same on every attempt and redelivery of this message.
    message_id text NOT NULL,
    event_type text NOT NULL,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    -- Failed attempts since creation or the last redelivery: what the backoff grows with.
    failures integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker's claim: while claim_token is set and the lease runs, no other worker sends it.
    claim_token uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Retries stop (dead) once the next one would fall after retry_until.
    retry_until timestamptz NOT NULL,
    last_attempt_at timestamptz,
    finished_at timestamptz,
    CONSTRAINT webhook_deliveries_event_key UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id);

CREATE TABLE webhook_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    latency_ms integer NOT NULL,
    outcome text NOT NULL
        CONSTRAINT webhook_attempts_outcome_check
        CHECK (outcome IN ('succeeded', 'failed', 'blocked')),
    response_status integer,
    error text,
    response_excerpt text,
    CONSTRAINT webhook_attempts_once_key UNIQUE (delivery_id, attempt)
);
