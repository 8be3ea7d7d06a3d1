-- Baseline: accounts for the identity domain.
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    email_normalized text GENERATED ALWAYS AS (lower(email)) STORED
        CONSTRAINT users_email_normalized_key UNIQUE,
    password_hash text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'active'
        CONSTRAINT users_status_check CHECK (status IN ('active', 'disabled', 'pending')),
    roles text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Keyset pagination walks users in (created_at, id) order.
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
