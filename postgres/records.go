package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/payload"
)

// inFlightColumn says whether a pending delivery is claimed now (shown as
// in_flight).
const inFlightColumn = `(state = 'pending' AND coalesce(claimed_until > now(), false))`

// GetEvent returns a stored event and its raw payload (ErrNotFound).
func (db *DB) GetEvent(ctx context.Context, id string) (*bridge.Event, []byte, error) {
	uid, err := parseID("event", id)
	if err != nil {
		return nil, nil, err
	}
	release, err := db.enter()
	if err != nil {
		return nil, nil, err
	}
	defer release()
	var stored []byte
	ev, err := scanEvent(db.pool.QueryRow(ctx, `SELECT `+eventColumns+`, payload FROM events WHERE id = $1`, uid), &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w: event %s", bridge.ErrNotFound, id)
	}
	if err != nil {
		return nil, nil, db.fail(ctx, "read event "+id, err)
	}
	raw, err := payload.Decompress(stored)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: event %s: %w", id, err)
	}
	return ev, raw, nil
}

// GetDelivery returns one delivery, in_flight while a sender (of any
// replica) holds a live claim on it.
func (db *DB) GetDelivery(ctx context.Context, id string) (*bridge.Delivery, error) {
	uid, err := parseID("delivery", id)
	if err != nil {
		return nil, err
	}
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	var inFlight bool
	d, err := scanDelivery(db.pool.QueryRow(ctx, `SELECT `+deliveryColumns+`, `+inFlightColumn+` FROM deliveries WHERE id = $1`, uid), &inFlight)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
	}
	if err != nil {
		return nil, db.fail(ctx, "read delivery "+id, err)
	}
	if inFlight {
		d.State = bridge.InFlight
	}
	return d, nil
}

// pageArgs reads a listing's page size (default 50, at most 1,000) and its
// cursor: the last id of the previous page ("" = from the newest; invalid
// then). A cursor that is not an id is an error wrapping ErrNotFound, as
// in the bbolt store.
func pageArgs(limit int, cursor string) (int, pgtype.UUID, error) {
	if limit <= 0 {
		limit = 50
	}
	var after pgtype.UUID
	if cursor != "" {
		var err error
		if after, err = parseID("cursor", cursor); err != nil {
			return 0, after, fmt.Errorf("postgres: bad cursor: %w", err)
		}
	}
	return min(limit, 1000), after, nil
}

// where builds a listing's WHERE clause.
type where struct {
	conds []string
	args  []any
}

// add appends a condition; each ? in it is the next argument.
func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// ListEvents returns matching events newest first (id order: UUIDv7 ids are
// time-ordered), and the cursor of the next page ("" when no more match).
func (db *DB) ListEvents(ctx context.Context, f bridge.EventFilter) ([]bridge.Event, string, error) {
	limit, after, err := pageArgs(f.Limit, f.Cursor)
	if err != nil {
		return nil, "", err
	}
	release, err := db.enter()
	if err != nil {
		return nil, "", err
	}
	defer release()
	var w where
	if after.Valid {
		w.add("id < ?", after)
	}
	if f.State != "" {
		w.add("state = ?", text(f.State))
	}
	if f.OrderID != "" {
		w.add("order_id = ? AND order_id <> ''", text(f.OrderID)) // the literal lets the partial index serve
	}
	if f.TicketID != "" {
		w.add("ticket_id = ? AND ticket_id <> ''", text(f.TicketID))
	}
	if !f.Since.IsZero() {
		w.add("received_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		w.add("received_at < ?", f.Until)
	}
	if f.StatusID != "" {
		w.add("coalesce(decisions -> -1 ->> 'status_id', '') = ?", text(f.StatusID))
	}
	if f.DeliveryState != "" {
		// As bbolt: in_flight is pending on disk; dead leaves out the
		// resolved ones unless asked for.
		state := f.DeliveryState
		if state == string(bridge.InFlight) {
			state = string(bridge.Pending)
		}
		// Most deliveries end done: an event's are looked up by their ids
		// (newest events first, stopping at a page). The other states are
		// rare: their deliveries are found by the partial indexes (pending,
		// or deliveries_state).
		var cond string
		switch state {
		case string(bridge.Done):
			cond = "EXISTS (SELECT 1 FROM deliveries d WHERE d.id = ANY(events.delivery_ids) AND d.state = ?"
		case string(bridge.Pending):
			cond = "id IN (SELECT d.event_id FROM deliveries d WHERE d.state = ? AND d.state = 'pending'"
		default:
			cond = "id IN (SELECT d.event_id FROM deliveries d WHERE d.state = ? AND d.state NOT IN ('pending', 'done')"
		}
		if state == string(bridge.Dead) && !f.IncludeResolved {
			cond += " AND d.resolved_by IS NULL"
		}
		w.add(cond+")", text(state))
	}
	sql := `SELECT ` + eventColumns + ` FROM events` + w.sql() + ` ORDER BY id DESC LIMIT ` + strconv.Itoa(limit+1)
	rows, err := db.pool.Query(ctx, sql, w.args...)
	if err != nil {
		return nil, "", db.fail(ctx, "list events", err)
	}
	out := []bridge.Event{} // an empty page is [], not null
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			rows.Close()
			return nil, "", db.fail(ctx, "list events", err)
		}
		out = append(out, *ev)
	}
	if err := rows.Err(); err != nil {
		return nil, "", db.fail(ctx, "list events", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// ListDeliveries returns matching deliveries newest first, and the next
// cursor. A pending delivery with a live claim is listed, and filtered, as
// in_flight.
func (db *DB) ListDeliveries(ctx context.Context, f bridge.DeliveryFilter) ([]bridge.Delivery, string, error) {
	limit, after, err := pageArgs(f.Limit, f.Cursor)
	if err != nil {
		return nil, "", err
	}
	release, err := db.enter()
	if err != nil {
		return nil, "", err
	}
	defer release()
	var w where
	if after.Valid {
		w.add("id < ?", after)
	}
	switch f.State {
	case "":
	case string(bridge.InFlight):
		w.add("state = 'pending' AND claimed_until > now()")
	case string(bridge.Pending):
		w.add("state = 'pending' AND (claimed_until IS NULL OR claimed_until <= now())")
	case string(bridge.Done):
		w.add("state = 'done'")
	default:
		w.add("state = ? AND state NOT IN ('pending', 'done')", text(f.State)) // the literal lets the partial index serve
	}
	if f.State == string(bridge.Dead) && !f.IncludeResolved {
		w.add("resolved_by IS NULL") // bridge.ListedDead
	}
	if f.Target != "" {
		w.add("target = ?", text(f.Target))
	}
	if f.OrderID != "" {
		w.add("order_id = ?", text(f.OrderID))
	}
	sql := `SELECT ` + deliveryColumns + `, ` + inFlightColumn + ` FROM deliveries` + w.sql() + ` ORDER BY id DESC LIMIT ` + strconv.Itoa(limit+1)
	rows, err := db.pool.Query(ctx, sql, w.args...)
	if err != nil {
		return nil, "", db.fail(ctx, "list deliveries", err)
	}
	out := []bridge.Delivery{}
	for rows.Next() {
		var inFlight bool
		d, err := scanDelivery(rows, &inFlight)
		if err != nil {
			rows.Close()
			return nil, "", db.fail(ctx, "list deliveries", err)
		}
		if inFlight {
			d.State = bridge.InFlight
		}
		out = append(out, *d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", db.fail(ctx, "list deliveries", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// Stats counts records (exactly: for tests and operators, not for a
// scrape every few seconds on a large store).
func (db *DB) Stats(ctx context.Context) (bridge.Stats, error) {
	release, err := db.enter()
	if err != nil {
		return bridge.Stats{}, err
	}
	defer release()
	var s bridge.Stats
	err = db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries),
		(SELECT count(*) FROM deliveries WHERE state = 'pending'), (SELECT count(*) FROM orders), (SELECT count(*) FROM intakes)`).
		Scan(&s.Events, &s.Deliveries, &s.Pending, &s.Orders, &s.Intakes)
	if err != nil {
		return s, db.fail(ctx, "count records", err)
	}
	return s, nil
}

// PendingByTarget counts unfinished deliveries per target and the creation
// time of the oldest (for the outbox gauges).
func (db *DB) PendingByTarget(ctx context.Context) (map[string]bridge.PendingStat, error) {
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	rows, err := db.pool.Query(ctx, `SELECT target, count(*), min(created_at) FROM deliveries WHERE state = 'pending' GROUP BY target`)
	if err != nil {
		return nil, db.fail(ctx, "count pending deliveries", err)
	}
	defer rows.Close()
	out := map[string]bridge.PendingStat{}
	for rows.Next() {
		var target string
		var n int
		var oldest time.Time
		if err := rows.Scan(&target, &n, &oldest); err != nil {
			return nil, db.fail(ctx, "count pending deliveries", err)
		}
		out[target] = bridge.PendingStat{Pending: n, Oldest: oldest.UTC()}
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(ctx, "count pending deliveries", err)
	}
	return out, nil
}
