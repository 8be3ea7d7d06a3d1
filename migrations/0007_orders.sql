-- Orders and their items; idempotency keys stored in the same transaction as the order they
-- answer, so a crash can never leave an order without its key or a key without its order.
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'placed'
        CONSTRAINT orders_status_check CHECK (status IN ('placed', 'fulfilled', 'cancelled')),
    currency text NOT NULL,
    total_minor bigint NOT NULL CONSTRAINT orders_total_check CHECK (total_minor >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_idx ON orders (user_id, created_at, id);
CREATE INDEX orders_created_idx ON orders (created_at, id);

CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    unit_price_minor bigint NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE idempotency_keys (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    response_status integer NOT NULL,
    response_body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
