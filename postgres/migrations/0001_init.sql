-- statusbridge's tables. Migrations run with search_path set to the
-- configured schema, so names here are unqualified. Column names are the
-- JSON names of bridge's types (bridge/types.go); nested parts (decisions,
-- attempts, an order's targets) are jsonb written with encoding/json, so a
-- field added to them needs no migration.

-- events: every stored webhook call, its decisions and its raw payload.
CREATE TABLE events (
	id           uuid PRIMARY KEY, -- UUIDv7: id order is time order
	received_at  timestamptz NOT NULL,
	event        text NOT NULL,
	ticket_id    text NOT NULL DEFAULT '',
	order_id     text NOT NULL DEFAULT '',
	state        text NOT NULL,
	error        text NOT NULL DEFAULT '',
	decisions    jsonb,                       -- []bridge.Decision
	delivery_ids uuid[] NOT NULL DEFAULT '{}',
	dedup_key    bytea,                       -- its dedup key (unique: see below)
	payload      bytea                        -- as internal/payload stores it
);
-- The listing filters (newest first).
CREATE INDEX events_order_id ON events (order_id, id) WHERE order_id <> '';
CREATE INDEX events_ticket_id ON events (ticket_id, id) WHERE ticket_id <> '';
CREATE INDEX events_state ON events (state, id);
-- received_at follows the insertion order: a BRIN index serves the time
-- ranges for almost nothing at ingest.
CREATE INDEX events_received_at ON events USING brin (received_at);

-- The dedup index: a unique key, not a check-then-insert, so two replicas
-- storing the same update at once store it once. In the event's row, the
-- key goes with its event.
CREATE UNIQUE INDEX events_dedup_key ON events (dedup_key);

-- orders: each order's last applied state (bridge.OrderState as JSON), and
-- the ids of its targets' last deliveries (whether each is live is read
-- from deliveries).
CREATE TABLE orders (
	order_id     text PRIMARY KEY,
	state        jsonb NOT NULL,
	delivery_ids uuid[] NOT NULL DEFAULT '{}'
);

-- deliveries: the outbox. A pending delivery is unfinished; in_flight is
-- not stored: it is a pending delivery with a live claim.
CREATE SEQUENCE deliveries_seq;
CREATE TABLE deliveries (
	id              uuid PRIMARY KEY,
	-- seq orders a lane: the order's lock makes it commit order within a
	-- (order_id, target) lane. It is taken after the transaction's id (see
	-- PutDelivery).
	seq             bigint NOT NULL DEFAULT nextval('deliveries_seq'),
	-- queued_xid is the transaction that queued the delivery (see
	-- PendingAfter: how a reader finds rows committed out of seq order).
	queued_xid      bigint NOT NULL,
	event_id        uuid NOT NULL,
	order_id        text NOT NULL,
	target          text NOT NULL,
	status          text NOT NULL,
	status_id       text NOT NULL DEFAULT '',
	created_at      timestamptz NOT NULL,
	state           text NOT NULL,
	reason          text NOT NULL DEFAULT '',
	result          text NOT NULL DEFAULT '',
	force           boolean NOT NULL DEFAULT false,
	next_attempt_at timestamptz,
	updated_at      timestamptz NOT NULL,
	attempts        jsonb NOT NULL DEFAULT '[]', -- []bridge.Attempt
	claimed_by      text,                        -- the sender holding it
	claimed_until   timestamptz                  -- its lease
);
ALTER SEQUENCE deliveries_seq OWNED BY deliveries.seq;
-- The outbox in seq order, the lanes (a claim needs its lane's oldest
-- unfinished delivery) and late commits: all small, pending rows only.
CREATE INDEX deliveries_pending ON deliveries (seq) WHERE state = 'pending';
CREATE INDEX deliveries_lane ON deliveries (order_id, target, seq) WHERE state = 'pending';
CREATE INDEX deliveries_queued_xid ON deliveries (queued_xid) WHERE state = 'pending';
-- The listing filters. A delivery is written pending and most end done:
-- those two are found by the pending index and the primary key, the rare
-- others (dead, skipped, superseded) by this small index, which an ingest
-- does not touch. A target filter walks the primary key: targets are few.
CREATE INDEX deliveries_state ON deliveries (state, id) WHERE state NOT IN ('pending', 'done');

-- once: no-repeat keys recorded by done deliveries (Outbox.Triggered).
CREATE TABLE once (
	key         text PRIMARY KEY,
	delivery_id uuid NOT NULL
);
