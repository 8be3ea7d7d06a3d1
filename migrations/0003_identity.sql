-- Identity: roles and their permissions, sessions (refresh-token families), revocations that
-- every replica applies, one-time tokens (email verification, password reset), login throttling
-- and the append-only audit trail.

CREATE TABLE roles (
    name text PRIMARY KEY CONSTRAINT roles_name_check CHECK (name ~ '^[a-z][a-z0-9_-]{1,31}$'),
    description text NOT NULL DEFAULT '',
    permissions text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO roles (name, description, permissions) VALUES
    ('admin', 'Full administrative access', ARRAY[
        'users:read', 'users:write', 'roles:write', 'audit:read', 'products:write',
        'orders:read_all', 'orders:write_all', 'webhooks:write', 'apikeys:write']),
    ('staff', 'Operations staff', ARRAY[
        'users:read', 'audit:read', 'products:write', 'orders:read_all', 'orders:write_all']),
    ('customer', 'A regular account', ARRAY[]::text[]);

ALTER TABLE users
    ALTER COLUMN roles SET DEFAULT '{customer}',
    ADD COLUMN email_verified_at timestamptz,
    ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT now();

UPDATE users SET roles = array_replace(roles, 'user', 'customer');

-- A login starts a session: one refresh-token family with an idle timeout and an absolute end.
CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    idle_expires_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    user_agent text NOT NULL DEFAULT '',
    ip text NOT NULL DEFAULT '',
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Refresh tokens are stored as SHA-256 only. The successor of a rotated token is kept
-- encrypted for the grace window, so a concurrent or repeated use gets the same successor.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    successor_sealed bytea
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- Every revocation, in order: replicas poll these by id when Redis pub/sub is not available.
-- kind 'session': subject is a session id; kind 'user': every token of the user issued before
-- not_before is revoked. Rows are kept until every access token they could affect expired.
CREATE TABLE revocations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CONSTRAINT revocations_kind_check CHECK (kind IN ('session', 'user')),
    subject text NOT NULL,
    not_before timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX revocations_expires_at_idx ON revocations (expires_at);

CREATE TABLE one_time_tokens (
    token_hash bytea PRIMARY KEY,
    purpose text NOT NULL CONSTRAINT one_time_tokens_purpose_check
        CHECK (purpose IN ('email_verify', 'password_reset')),
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX one_time_tokens_user_idx ON one_time_tokens (user_id, purpose);

-- Failed logins per account and per client address, for exponential backoff.
CREATE TABLE login_throttle (
    key text PRIMARY KEY,
    failures integer NOT NULL DEFAULT 0,
    blocked_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL,
    outcome text NOT NULL CONSTRAINT audit_events_outcome_check
        CHECK (outcome IN ('success', 'failure', 'denied')),
    actor_id bigint,
    target_type text NOT NULL DEFAULT '',
    target_id text NOT NULL DEFAULT '',
    ip text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT '',
    request_id text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_occurred_idx ON audit_events (occurred_at, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, occurred_at, id);
CREATE INDEX audit_events_action_idx ON audit_events (action, occurred_at, id);
CREATE INDEX audit_events_target_idx ON audit_events (target_type, target_id, occurred_at, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
