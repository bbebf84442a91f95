-- Order intake (issue #13): order intakes with their raw bodies, each
-- order's intake record, deliveries of the kinds order, ticket and fetch,
-- and durable claims kept apart from the leases (a sender that dies with a
-- ticket request sent leaves the record that it may have gone out; a new
-- sender's takeover releases leases, not these).

-- Deliveries of an intake have no event; each delivery has a kind (those
-- stored before read as status).
ALTER TABLE deliveries ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN kind text NOT NULL DEFAULT 'status';
ALTER TABLE deliveries ADD COLUMN intake_id uuid;

-- intakes: every stored intake (a duplicate is not stored).
CREATE TABLE intakes (
	id           uuid PRIMARY KEY, -- UUIDv7: id order is time order
	order_id     text NOT NULL,
	received_at  timestamptz NOT NULL,
	state        text NOT NULL,               -- new | updated | fetch
	id_only      boolean NOT NULL DEFAULT false,
	source       text NOT NULL,               -- http | admin | fetch
	key          bytea,                       -- the content key (none for an orderId alone)
	delivery_ids uuid[] NOT NULL DEFAULT '{}',
	fetched_by   uuid,                        -- the fetch delivery that read it
	raw          bytea                        -- the body as internal/payload stores it
);
CREATE INDEX intakes_order_id ON intakes (order_id, id);
CREATE INDEX intakes_received_at ON intakes (received_at);

-- order_intakes: each order's intake record (bridge.OrderIntake).
CREATE TABLE order_intakes (
	order_id           text PRIMARY KEY,
	latest_intake_id   uuid,                  -- the latest intake with content
	key                bytea,                 -- its content key
	last_intake_id     uuid NOT NULL,         -- the newest intake of any state (the orders listing)
	intake_ids         uuid[] NOT NULL DEFAULT '{}',
	ticket             jsonb,                 -- bridge.Ticket, once created
	media_id           text NOT NULL DEFAULT '',
	ticket_delivery_id uuid,
	upsert_delivery_id uuid
);
CREATE INDEX order_intakes_last ON order_intakes (last_intake_id);

-- durable_claims: a delivery whose request must not be repeated blindly,
-- claimed durably (committed before the request went out) and not yet
-- recorded. Recording or releasing the delivery deletes it.
CREATE TABLE durable_claims (
	delivery_id uuid PRIMARY KEY,
	claimed_by  text NOT NULL,
	claimed_at  timestamptz NOT NULL DEFAULT now()
);
