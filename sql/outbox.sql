-- name: create_outbox_event :exec
INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload) VALUES ($1, $2, $3, $4);

-- name: create_outbox_events :exec
-- Several events of one topic in one statement: an order's stock changes, one per product.
INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload)
SELECT $1, $2, e.id, e.payload::jsonb FROM unnest($3::text[], $4::text[]) AS e (id, payload);
