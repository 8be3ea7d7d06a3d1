-- Outgoing mail as an outbox: a request writes its mail here, in the transaction of the change
-- that causes it where there is one, and the worker (python -m server worker) sends it, so no
-- request waits on SMTP and a mail is retried until it goes out or its token has expired.
CREATE TABLE mail_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- What it is ('email_verify', 'password_reset', 'register_notice'): logs and metrics.
    kind text NOT NULL,
    -- Recipient, subject and body, AES-GCM sealed under a key derived from HOTPATH_SECRET_KEY
    -- (nonce || ciphertext): bodies carry live one-time tokens. Emptied once the mail is
    -- finished (sent or dead).
    sealed bytea NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CONSTRAINT mail_outbox_status_check CHECK (status IN ('pending', 'sent', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker's claim: while claim_token is set and the lease runs, no other worker sends it.
    claim_token uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- No retry after this: the token in the mail has expired by then.
    retry_until timestamptz NOT NULL,
    last_error text,
    finished_at timestamptz
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX mail_outbox_finished_idx ON mail_outbox (finished_at) WHERE status <> 'pending';
