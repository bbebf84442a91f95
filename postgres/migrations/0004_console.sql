-- Parity with the bbolt store: retries resolved, the console's counters,
-- jobs and actions, and the changes feed of the live tail.

-- A delivery's predecessor (the dead delivery it retries) and, on a dead
-- delivery, the done successor that resolved it (bridge.ResolveRetried).
ALTER TABLE deliveries ADD COLUMN retry_of uuid;
ALTER TABLE deliveries ADD COLUMN resolved_by uuid;

-- Counters (bridge.Counters), kept by triggers in the transactions that
-- change what they count, whatever statement does it (ingest, replay,
-- records, retries, retention). Each count is split over slots (the
-- backend's pid modulo 16), so concurrent transactions on different
-- connections rarely wait for one another's counter rows; a read sums the
-- slots. A count that reaches zero stays as a row of 0. The functions keep
-- the schema's search_path, so a write from a session of another one (an
-- operator's psql) is counted in this schema's tables.
--   event_counts: events received in a 5-minute bucket (kept 48 hours), by state now.
--   status_counts: stored events by the status id of their last decision
--     (unmapped: the ones held as unmapped).
--   delivery_counts: deliveries by target and stored state.
CREATE TABLE event_counts (
	bucket timestamptz NOT NULL,
	state  text NOT NULL,
	slot   int NOT NULL,
	n      bigint NOT NULL,
	PRIMARY KEY (bucket, state, slot)
);
CREATE TABLE status_counts (
	status_id text NOT NULL,
	unmapped  boolean NOT NULL,
	slot      int NOT NULL,
	n         bigint NOT NULL,
	PRIMARY KEY (status_id, unmapped, slot)
);
CREATE TABLE delivery_counts (
	target text NOT NULL,
	state  text NOT NULL,
	slot   int NOT NULL,
	n      bigint NOT NULL,
	PRIMARY KEY (target, state, slot)
);

CREATE FUNCTION count_event() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
	s int := pg_backend_pid() % 16;
	horizon timestamptz := now() - interval '48 hours';
BEGIN
	IF TG_OP <> 'INSERT' THEN
		IF OLD.received_at >= horizon THEN
			INSERT INTO event_counts AS c VALUES (to_timestamp(floor(extract(epoch FROM OLD.received_at) / 300) * 300), OLD.state, s, -1)
				ON CONFLICT (bucket, state, slot) DO UPDATE SET n = c.n + excluded.n;
		END IF;
		IF nullif(OLD.decisions -> -1 ->> 'status_id', '') IS NOT NULL THEN
			INSERT INTO status_counts AS c VALUES (OLD.decisions -> -1 ->> 'status_id', OLD.state = 'unmapped', s, -1)
				ON CONFLICT (status_id, unmapped, slot) DO UPDATE SET n = c.n + excluded.n;
		END IF;
	END IF;
	IF TG_OP <> 'DELETE' THEN
		IF NEW.received_at >= horizon THEN
			INSERT INTO event_counts AS c VALUES (to_timestamp(floor(extract(epoch FROM NEW.received_at) / 300) * 300), NEW.state, s, 1)
				ON CONFLICT (bucket, state, slot) DO UPDATE SET n = c.n + excluded.n;
		END IF;
		IF nullif(NEW.decisions -> -1 ->> 'status_id', '') IS NOT NULL THEN
			INSERT INTO status_counts AS c VALUES (NEW.decisions -> -1 ->> 'status_id', NEW.state = 'unmapped', s, 1)
				ON CONFLICT (status_id, unmapped, slot) DO UPDATE SET n = c.n + excluded.n;
		END IF;
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION count_delivery() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
	s int := pg_backend_pid() % 16;
BEGIN
	IF TG_OP <> 'INSERT' THEN
		INSERT INTO delivery_counts AS c VALUES (OLD.target, OLD.state, s, -1)
			ON CONFLICT (target, state, slot) DO UPDATE SET n = c.n + excluded.n;
	END IF;
	IF TG_OP <> 'DELETE' THEN
		INSERT INTO delivery_counts AS c VALUES (NEW.target, NEW.state, s, 1)
			ON CONFLICT (target, state, slot) DO UPDATE SET n = c.n + excluded.n;
	END IF;
	RETURN NULL;
END $$;

-- The triggers first: they lock the tables against writes until this
-- migration commits, so the counts built below miss nothing.
CREATE TRIGGER events_count AFTER INSERT OR DELETE ON events
	FOR EACH ROW EXECUTE FUNCTION count_event();
CREATE TRIGGER events_count_update AFTER UPDATE OF state, received_at, decisions ON events
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.received_at IS DISTINCT FROM NEW.received_at
		OR (OLD.decisions -> -1 ->> 'status_id') IS DISTINCT FROM (NEW.decisions -> -1 ->> 'status_id'))
	EXECUTE FUNCTION count_event();
CREATE TRIGGER deliveries_count AFTER INSERT OR DELETE ON deliveries
	FOR EACH ROW EXECUTE FUNCTION count_delivery();
CREATE TRIGGER deliveries_count_update AFTER UPDATE OF state, target ON deliveries
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.target IS DISTINCT FROM NEW.target)
	EXECUTE FUNCTION count_delivery();

-- The counts of what is stored already: one scan, once.
INSERT INTO event_counts
	SELECT to_timestamp(floor(extract(epoch FROM received_at) / 300) * 300), state, 0, count(*)
	FROM events WHERE received_at >= now() - interval '48 hours' GROUP BY 1, 2;
INSERT INTO status_counts
	SELECT decisions -> -1 ->> 'status_id', state = 'unmapped', 0, count(*)
	FROM events WHERE nullif(decisions -> -1 ->> 'status_id', '') IS NOT NULL GROUP BY 1, 2;
INSERT INTO delivery_counts SELECT target, state, 0, count(*) FROM deliveries GROUP BY 1, 2;

-- jobs (bridge.Job as JSON): few, written rarely.
CREATE TABLE jobs (
	id       uuid PRIMARY KEY,
	finished boolean NOT NULL,
	job      jsonb NOT NULL
);
CREATE INDEX jobs_unfinished ON jobs (id) WHERE NOT finished;

-- actions: the last operator actions (bridge.Action as JSON), capped.
CREATE TABLE actions (
	id     uuid PRIMARY KEY,
	action jsonb NOT NULL
);

-- changes: the feed of delivery results for the live tail, one row per
-- record, in the order of seq; xid is the recording transaction (a reader
-- finds rows committed out of seq order with it: see ChangesAfter). Rows
-- older than 10 minutes are pruned.
CREATE TABLE changes (
	seq         bigserial PRIMARY KEY,
	delivery_id uuid NOT NULL,
	xid         bigint NOT NULL,
	at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_at ON changes (at);
