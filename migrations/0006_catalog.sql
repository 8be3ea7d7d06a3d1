-- Catalog: products with integer minor-unit prices, stock that can never go negative, a
-- version for strong ETags, soft deletes, and a full-text index for name search. The outbox
-- receives an event row in the same transaction as every product (and later order) change.
CREATE TABLE products (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text NOT NULL CONSTRAINT products_sku_key UNIQUE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    category text NOT NULL,
    price_minor bigint NOT NULL CONSTRAINT products_price_check CHECK (price_minor >= 0),
    currency text NOT NULL CONSTRAINT products_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    stock integer NOT NULL CONSTRAINT products_stock_check CHECK (stock >= 0),
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', name)) STORED
);

-- One index per allowed sort order, over live products only.
CREATE INDEX products_created_idx ON products (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX products_price_idx ON products (price_minor, id) WHERE deleted_at IS NULL;
CREATE INDEX products_name_idx ON products (name, id) WHERE deleted_at IS NULL;
CREATE INDEX products_category_idx ON products (category, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX products_search_idx ON products USING gin (search) WHERE deleted_at IS NULL;

CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
