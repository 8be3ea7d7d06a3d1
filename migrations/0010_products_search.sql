-- migrate: no-transaction
-- Product search that finds what a shopper types (issue 18): whole words of the name only
-- (`search`, 0006) becomes prefixes of stemmed words of the name, the SKU and the description,
-- ranked by where they match (name and SKU weigh A, the description C). English stemming:
-- `kettles` finds `kettle`; prefixes: `ket` finds it too; a SKU's parts: `DEMO-00001` finds
-- DEMO-0000123, and so does `0000123`. And an index for price listings in one currency (prices
-- in different currencies do not compare, so a price filter or sort needs `currency=`).
--
-- Only additions: the replicas of the release before keep reading `search` and
-- products_price_idx until they are replaced (docs/operations.md: migrations only add); a later
-- migration may drop both. Concurrent index builds, so writers are not blocked while they run;
-- the new generated column rewrites the table once under its lock (100,000 products: about a
-- second). Every part is rerunnable.
--
-- products_search_query(q, prefix): what the listings match `search_document` with. Every
-- lexeme the document's own configuration finds in q becomes a term: with prefix, a prefix term,
-- all of them required (what matches); without, the whole lexeme, any of them (what earns a
-- match more rank: `kettle` ranks a kettle above a kettlebell). A q of stop words only ("the",
-- "a") falls back to its words unstemmed, so typing "a" still finds "apple". NULL (no match at
-- all) when q has no word. Lexemes are quoted for to_tsquery (a quote doubled, a backslash
-- escaped), never spliced in raw.
CREATE OR REPLACE FUNCTION products_search_query(q text, prefix boolean) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT to_tsquery('simple', string_agg(
               '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''''
                   || CASE WHEN prefix THEN ':*' ELSE '' END,
               CASE WHEN prefix THEN ' & ' ELSE ' | ' END))
    FROM unnest(coalesce(
        nullif(tsvector_to_array(to_tsvector('english', q)), '{}'),
        tsvector_to_array(to_tsvector('simple', q)))) AS lexeme
$$;
-- migrate: statement
ALTER TABLE products ADD COLUMN IF NOT EXISTS search_document tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', name), 'A')
    -- The SKU as written and split at its punctuation: the parser reads DEMO-0000123 as
    -- `demo` and `-0000123`, so `0000123` alone is found through the split copy.
    || setweight(to_tsvector('english', sku || ' ' || translate(sku, '-_./', '    ')), 'A')
    || setweight(to_tsvector('english', description), 'C')
) STORED;
-- migrate: statement
DROP INDEX CONCURRENTLY IF EXISTS products_search_document_idx;
-- migrate: statement
CREATE INDEX CONCURRENTLY products_search_document_idx ON products USING gin (search_document)
    WHERE deleted_at IS NULL;
-- migrate: statement
DROP INDEX CONCURRENTLY IF EXISTS products_currency_price_idx;
-- migrate: statement
CREATE INDEX CONCURRENTLY products_currency_price_idx ON products (currency, price_minor, id)
    WHERE deleted_at IS NULL;
