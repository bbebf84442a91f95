package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/payload"
)

var _ bridge.Tx = (*tx)(nil)

// maxTxAttempts bounds how often Update runs its function when its
// transaction loses a race (serialization failure, deadlock) or its
// connection breaks before COMMIT was sent.
const maxTxAttempts = 5

// Update runs fn in a READ COMMITTED transaction and returns once COMMIT has
// returned. fn may run more than once: again after a serialization failure
// or a deadlock (40001, 40P01), and once more when the connection broke
// before COMMIT was sent (a connection left stale by a database restart).
// When COMMIT was sent and no answer came, the outcome is unknown: the error
// wraps bridge.ErrUnavailable, and an ingest's dedup key makes the sender's
// retry safe.
func (db *DB) Update(ctx context.Context, opt bridge.UpdateOptions, fn func(bridge.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	parent := ctx
	if opt.Refusable {
		if db.inflight.Add(1) > int64(db.opts.QueueSize) {
			db.inflight.Add(-1)
			return bridge.ErrOverloaded
		}
		defer db.inflight.Add(-1)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, db.opts.IngestTimeout)
		defer cancel()
	}
	start := time.Now()
	brokenRetried := false
	var known map[string]bool // dedup keys found stored by a speculative claim
	for attempt := 1; ; attempt++ {
		t, err := db.runTx(ctx, false, known, fn)
		if err == nil {
			break
		}
		switch {
		case attempt >= maxTxAttempts:
		case t != nil && t.dedupTaken:
			if known == nil {
				known = map[string]bool{}
			}
			for k := range t.claimed {
				known[k] = true
			}
			continue
		case t != nil && t.conflict:
			continue
		case t != nil && t.broken && !t.commitSent && !brokenRetried:
			brokenRetried = true
			continue
		}
		if parent.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			// Our own bound, not the caller's: the database holds the write.
			return fmt.Errorf("postgres: no commit within %s: %w (%w)", db.opts.IngestTimeout, bridge.ErrUnavailable, err)
		}
		return err
	}
	if db.opts.OnCommit != nil {
		db.opts.OnCommit(1, time.Since(start))
	}
	if opt.Wake {
		db.signal()
		db.requestNotify()
	}
	return nil
}

// View runs fn in a REPEATABLE READ READ ONLY transaction: one snapshot.
func (db *DB) View(ctx context.Context, fn func(bridge.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	_, err = db.runTx(ctx, true, nil, fn)
	return err
}

// runTx runs fn in one transaction on one connection. The returned tx says
// why it failed (nil when no connection could be had).
func (db *DB) runTx(ctx context.Context, readOnly bool, known map[string]bool, fn func(bridge.Tx) error) (*tx, error) {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, db.fail(ctx, "connect", err)
	}
	t := &tx{db: db, ctx: ctx, conn: pc.Conn(), readOnly: readOnly, known: known}
	defer func() {
		t.end()
		pc.Release() // a connection left in a transaction or broken is destroyed, not reused
	}()
	if err := fn(t); err != nil {
		if t.err != nil && !errors.Is(err, t.err) {
			// fn replaced a database error with its own: keep the cause.
			return t, fmt.Errorf("%w (%w)", err, t.err)
		}
		return t, err
	}
	return t, t.commit()
}

// StoredPayload compresses a body for PutEvent as the bbolt store does
// (internal/payload: zstd with the webhook dictionary). PostgreSQL's own
// TOAST compression starts with rows of ~2 KB, above most webhooks:
// BenchmarkIngest's events took 1.9-2.1 KB of database compressed, 2.6-2.9
// KB raw, for ~25 µs of CPU here (about 5% of an ingest's, client and server
// together).
func (db *DB) StoredPayload(raw []byte) []byte { return payload.Compress(raw) }

// tx is one transaction seen through bridge.Tx. Its statements are queued
// and sent together: a read sends the queued writes and itself in one round
// trip; commit sends them with COMMIT. BEGIN goes with the first batch.
// Consecutive writes of different rows are sent as one statement (each a
// data-modifying WITH query of it): one executor start instead of one per
// write. A database error sticks: every later call returns it.
type tx struct {
	db       *DB
	ctx      context.Context
	conn     *pgx.Conn
	readOnly bool

	items      []item // statements not sent yet
	begun      bool   // BEGIN is queued or sent
	commitSent bool
	done       bool              // COMMIT or ROLLBACK completed
	locked     map[string]bool   // orders locked by this transaction
	known      map[string]bool   // dedup keys a previous run found stored
	claimed    map[string]string // dedup key → the event that claimed it (and must store it)
	dedupTaken bool              // a speculative claim found its key stored

	err      error // the first database error (sticky)
	conflict bool  // err is a serialization failure or deadlock: run fn again
	broken   bool  // err came with the connection lost
}

// item is a queued statement: a write (what and keys set: the rows it
// writes) or another statement, whose result fn reads.
type item struct {
	sql  string
	args []any
	fn   func(br pgx.BatchResults) error
	what string
	keys []string
}

// queue adds a statement; fn, when set, reads its result.
func (t *tx) queue(sql string, fn func(br pgx.BatchResults) error, args ...any) {
	t.items = append(t.items, item{sql: sql, args: args, fn: fn})
}

// write queues a write of the rows named by keys ("table:id"), whose error
// is reported as what.
func (t *tx) write(what string, keys []string, sql string, args ...any) error {
	if t.err != nil {
		return t.err
	}
	if t.readOnly {
		return fmt.Errorf("postgres: %s: a read-only transaction cannot write", what)
	}
	t.items = append(t.items, item{sql: sql, args: args, what: what, keys: keys})
	return nil
}

// maxMerge bounds the writes sent as one statement (statements stay few
// and small enough for the statement cache).
const maxMerge = 8

// batch builds the batch of the queued statements, BEGIN first if not sent
// yet, runs of writes merged.
func (t *tx) batch() *pgx.Batch {
	b := &pgx.Batch{}
	if !t.begun {
		t.begun = true
		if t.readOnly {
			b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
		} else {
			b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
		}
	}
	var run []item
	flush := func() {
		if len(run) > 0 {
			queueWrites(b, run)
			run = run[:0]
		}
	}
	seen := map[string]bool{}
	for _, it := range t.items {
		if it.keys == nil {
			flush()
			clear(seen)
			q := b.Queue(it.sql, it.args...)
			if it.fn != nil {
				q.Fn = it.fn
			}
			continue
		}
		dup := len(run) == maxMerge
		for _, k := range it.keys {
			dup = dup || seen[k]
		}
		if dup { // a row written twice in one statement: not allowed
			flush()
			clear(seen)
		}
		for _, k := range it.keys {
			seen[k] = true
		}
		run = append(run, it)
	}
	flush()
	t.items = t.items[:0]
	return b
}

var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// queueWrites queues writes as one statement: WITH w1 AS (…), w2 AS (…)
// SELECT 1, their placeholders renumbered.
func queueWrites(b *pgx.Batch, run []item) {
	if len(run) == 1 {
		it := run[0]
		b.Queue(it.sql, it.args...).Fn = func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("%s: %w", it.what, err)
			}
			return nil
		}
		return
	}
	var args []any
	whats := make([]string, len(run))
	for i, it := range run {
		args = append(args, it.args...)
		whats[i] = it.what
	}
	b.Queue(mergedSQL(run), args...).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(whats, ", "), err)
		}
		return nil
	}
}

// merged caches the statements of runs of writes: a few kinds of runs
// recur (an ingest's deliveries, order and event).
var merged struct {
	sync.Mutex
	ids map[string]byte   // a write's SQL → its number
	sql map[string]string // the numbers of a run's writes → its statement
}

// mergedSQL returns the statement of a run of writes: WITH w0 AS (…),
// w1 AS (…) SELECT 1, each write's placeholders renumbered after the
// previous ones'.
func mergedSQL(run []item) string {
	merged.Lock()
	defer merged.Unlock()
	if merged.ids == nil {
		merged.ids, merged.sql = map[string]byte{}, map[string]string{}
	}
	key := make([]byte, len(run))
	cacheable := true
	for i, it := range run {
		id, ok := merged.ids[it.sql]
		if !ok && len(merged.ids) < 255 {
			id, ok = byte(len(merged.ids)+1), true
			merged.ids[it.sql] = id
		}
		cacheable = cacheable && ok
		key[i] = id
	}
	if sql, ok := merged.sql[string(key)]; ok && cacheable {
		return sql
	}
	var sql strings.Builder
	sql.WriteString("WITH ")
	off := 0
	for i, it := range run {
		if i > 0 {
			sql.WriteString(", ")
		}
		fmt.Fprintf(&sql, "w%d AS (", i)
		sql.WriteString(placeholder.ReplaceAllStringFunc(it.sql, func(p string) string {
			n, _ := strconv.Atoi(p[1:])
			return "$" + strconv.Itoa(n+off)
		}))
		sql.WriteString(")")
		off += len(it.args)
	}
	sql.WriteString(" SELECT 1")
	if cacheable && len(merged.sql) < 1000 {
		merged.sql[string(key)] = sql.String()
	}
	return sql.String()
}

// send sends the queued statements and reads their results.
func (t *tx) send() error {
	if t.err != nil {
		return t.err
	}
	if len(t.items) == 0 {
		return nil
	}
	if err := t.conn.SendBatch(t.ctx, t.batch()).Close(); err != nil {
		t.setErr(err)
		return t.err
	}
	return nil
}

// read queues a query and sends it with what is queued before it.
func (t *tx) read(sql string, fn func(br pgx.BatchResults) error, args ...any) error {
	if t.err != nil {
		return t.err
	}
	t.queue(sql, fn, args...)
	return t.send()
}

func (t *tx) setErr(err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01") {
		t.conflict = true
	}
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == dedupIndex && len(t.claimed) > 0 {
		t.dedupTaken = true
	}
	t.broken = t.conn.IsClosed()
	t.err = t.db.fail(t.ctx, "transaction", err)
	if t.broken && !errors.Is(t.err, bridge.ErrUnavailable) && t.ctx.Err() == nil {
		t.db.resetPool(err)
		t.err = fmt.Errorf("postgres: transaction: %w: connection lost: %s", bridge.ErrUnavailable, scrub(err.Error(), t.db.secrets))
	}
}

// commit sends the queued writes with COMMIT. A transaction that sent
// nothing has nothing to commit.
func (t *tx) commit() error {
	if t.err != nil {
		return t.err
	}
	for _, id := range t.claimed {
		if id != "" {
			t.err = fmt.Errorf("postgres: the dedup key claimed for event %s was not stored with it", id)
			return t.err
		}
	}
	if !t.begun && len(t.items) == 0 {
		t.done = true
		return nil
	}
	t.queue("COMMIT", nil)
	t.commitSent = true
	if err := t.send(); err != nil {
		return err
	}
	t.done = true
	return nil
}

// end rolls back a transaction that is still open on the server (its
// function failed, or a statement did). A connection that cannot roll back
// is closed, so the pool drops it.
func (t *tx) end() {
	if t.done || t.conn.IsClosed() || t.conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = t.conn.Close(ctx)
	}
}

// rowsFn reads a query's rows with fn.
func rowsFn(fn func(rows pgx.Rows) error) func(br pgx.BatchResults) error {
	return func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		if err := fn(rows); err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}
}

// Columns, in the order the scan functions read them.
const (
	eventColumns    = `id::text, received_at, event, ticket_id, order_id, state, error, decisions, delivery_ids::text[], dedup_key`
	deliveryColumns = `id::text, coalesce(event_id::text, ''), order_id, target, status, status_id, created_at, state, reason, result, force,
		next_attempt_at, updated_at, attempts, kind, coalesce(intake_id::text, ''), coalesce(retry_of::text, ''), coalesce(resolved_by::text, '')`
)

// scanEvent reads eventColumns (and dest, appended).
func scanEvent(row pgx.Row, dest ...any) (*bridge.Event, error) {
	var ev bridge.Event
	var state string
	var decisions []byte
	err := row.Scan(append([]any{&ev.ID, &ev.ReceivedAt, &ev.Name, &ev.TicketID, &ev.OrderID, &state, &ev.Error,
		&decisions, &ev.DeliveryIDs, &ev.DedupKey}, dest...)...)
	if err != nil {
		return nil, err
	}
	ev.ReceivedAt = ev.ReceivedAt.UTC()
	ev.State = bridge.EventState(state)
	if len(decisions) > 0 {
		if err := json.Unmarshal(decisions, &ev.Decisions); err != nil {
			return nil, fmt.Errorf("decode decisions of event %s: %w", ev.ID, err)
		}
	}
	if len(ev.DeliveryIDs) == 0 {
		ev.DeliveryIDs = nil
	}
	if len(ev.DedupKey) == 0 {
		ev.DedupKey = nil
	}
	return &ev, nil
}

// scanDelivery reads deliveryColumns (and dest, appended).
func scanDelivery(row pgx.Row, dest ...any) (*bridge.Delivery, error) {
	var d bridge.Delivery
	var state string
	var next *time.Time
	var attempts []byte
	var kind string
	err := row.Scan(append([]any{&d.ID, &d.EventID, &d.OrderID, &d.Target, &d.Status, &d.StatusID, &d.CreatedAt, &state,
		&d.Reason, &d.Result, &d.Force, &next, &d.UpdatedAt, &attempts, &kind, &d.IntakeID, &d.RetryOf, &d.ResolvedBy}, dest...)...)
	if err != nil {
		return nil, err
	}
	d.State, d.Kind = bridge.DeliveryState(state), bridge.DeliveryKind(kind)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	if next != nil {
		d.NextAttemptAt = next.UTC()
	}
	if len(attempts) > 2 { // "[]": none
		if err := json.Unmarshal(attempts, &d.Attempts); err != nil {
			return nil, fmt.Errorf("decode attempts of delivery %s: %w", d.ID, err)
		}
	}
	return &d, nil
}

// parseID reads an id as a query argument (ErrNotFound when it is not one,
// as no record has it). A pgtype.UUID is sent in binary; a string would
// make pgx fail the binary encoding before falling back to text, each time.
func parseID(kind, id string) (pgtype.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return pgtype.UUID{}, fmt.Errorf("%w: %s %q", bridge.ErrNotFound, kind, id)
	}
	return pgtype.UUID{Bytes: u, Valid: true}, nil
}

// ids reads the valid ids of a list as a query argument.
func ids(list []string) []pgtype.UUID {
	out := make([]pgtype.UUID, 0, len(list))
	for _, id := range list {
		if u, err := uuid.Parse(id); err == nil {
			out = append(out, pgtype.UUID{Bytes: u, Valid: true})
		}
	}
	return out
}

// dedupIndex is the unique index of the dedup keys, on events.
const dedupIndex = "events_dedup_key"

// ClaimDedup claims the key for eventID. The key is an event's column with
// a unique index: it is stored by PutEvent of that event (as Ingest does;
// a commit without it fails), and a concurrent claim of the same key waits
// for the first transaction and then sees its row, so two replicas storing
// the same update at once store it once.
//
// The claim is speculative, to save a statement and a round trip: it
// answers "new" and checks nothing. If the key was stored already, the
// event's INSERT fails (a unique violation), nothing of the transaction is
// committed, and Update runs fn again, in which ClaimDedup, knowing the key
// is stored, reads the first event's id.
// ClaimDedup keys the index by the hash alone (the update's time in key is
// bbolt's way to append; a PostgreSQL index does not need it).
func (t *tx) ClaimDedup(key bridge.DedupKey, eventID string) ([]byte, string, error) {
	if t.readOnly {
		return nil, "", errors.New("postgres: claim dedup key: a read-only transaction cannot write")
	}
	if t.err != nil {
		return nil, "", t.err
	}
	dkey := append([]byte(nil), key.Hash[:dedupKeyLen]...)
	k := string(dkey)
	if t.known[k] {
		var first string
		found := true
		err := t.read(`SELECT id::text FROM events WHERE dedup_key = $1`, func(br pgx.BatchResults) error {
			err := br.QueryRow().Scan(&first)
			if errors.Is(err, pgx.ErrNoRows) {
				found = false // its event was deleted since (retention): new again
				return nil
			}
			return err
		}, dkey)
		if err != nil {
			return nil, "", fmt.Errorf("postgres: read dedup key for %s: %w", eventID, err)
		}
		if found {
			return dkey, first, nil
		}
	}
	if t.claimed == nil {
		t.claimed = map[string]string{}
	}
	t.claimed[k] = eventID
	return dkey, "", nil
}

// dedupKeyLen is how much of the sha256 dedup key is kept, as bbolt does:
// 128 bits make an accidental collision as unlikely as a UUID's.
const dedupKeyLen = 16

func (t *tx) Event(id string) (*bridge.Event, error) {
	uid, err := parseID("event", id)
	if err != nil {
		return nil, err
	}
	var ev *bridge.Event
	err = t.read(`SELECT `+eventColumns+` FROM events WHERE id = $1`, func(br pgx.BatchResults) error {
		var err error
		ev, err = scanEvent(br.QueryRow())
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	}, uid)
	if err != nil {
		return nil, fmt.Errorf("postgres: read event %s: %w", id, err)
	}
	if ev == nil {
		return nil, fmt.Errorf("%w: event %s", bridge.ErrNotFound, id)
	}
	return ev, nil
}

func (t *tx) Payload(id string) ([]byte, error) {
	uid, err := parseID("event", id)
	if err != nil {
		return nil, err
	}
	var stored []byte
	found := true
	err = t.read(`SELECT payload FROM events WHERE id = $1`, func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	}, uid)
	if err != nil {
		return nil, fmt.Errorf("postgres: read payload of %s: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: event %s", bridge.ErrNotFound, id)
	}
	return payload.Decompress(stored)
}

// PutEvent upserts an event; a nil stored payload keeps the one it has.
func (t *tx) PutEvent(ev *bridge.Event, stored []byte) error {
	uid, err := parseID("event", ev.ID)
	if err != nil {
		return err
	}
	decisions, err := jsonb(ev.Decisions)
	if err != nil {
		return fmt.Errorf("postgres: put event %s: %w", ev.ID, err)
	}
	if id, ok := t.claimed[string(ev.DedupKey)]; ok && id == ev.ID {
		t.claimed[string(ev.DedupKey)] = "" // stored
	}
	return t.write("put event "+ev.ID, []string{"events:" + ev.ID}, `INSERT INTO events (id, received_at, event, ticket_id, order_id, state, error, decisions, delivery_ids, dedup_key, payload)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (id) DO UPDATE SET received_at = excluded.received_at, event = excluded.event,
			ticket_id = excluded.ticket_id, order_id = excluded.order_id, state = excluded.state, error = excluded.error,
			decisions = excluded.decisions, delivery_ids = excluded.delivery_ids, dedup_key = excluded.dedup_key,
			payload = coalesce(excluded.payload, events.payload)`,
		uid, ev.ReceivedAt, text(ev.Name), text(ev.TicketID), text(ev.OrderID), text(string(ev.State)), text(ev.Error),
		decisions, ids(ev.DeliveryIDs), nilIfEmpty(ev.DedupKey), stored)
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func (t *tx) EventsFrom(after string, limit int) ([]bridge.Event, error) {
	sql, args := `SELECT `+eventColumns+` FROM events ORDER BY id LIMIT $1`, []any{limit}
	if after != "" {
		uid, err := parseID("event", after)
		if err != nil {
			return nil, err
		}
		sql, args = `SELECT `+eventColumns+` FROM events WHERE id > $2 ORDER BY id LIMIT $1`, []any{limit, uid}
	}
	var out []bridge.Event
	err := t.read(sql, rowsFn(func(rows pgx.Rows) error {
		for rows.Next() {
			ev, err := scanEvent(rows)
			if err != nil {
				return err
			}
			out = append(out, *ev)
		}
		return nil
	}), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: read events: %w", err)
	}
	return out, nil
}

// DeleteEvent queues the deletion of an event (its payload and dedup key
// are in its row) and its deliveries.
func (t *tx) DeleteEvent(ev *bridge.Event) error {
	uid, err := parseID("event", ev.ID)
	if err != nil {
		return err
	}
	if dids := ids(ev.DeliveryIDs); len(dids) > 0 {
		keys := make([]string, len(ev.DeliveryIDs))
		for i, id := range ev.DeliveryIDs {
			keys[i] = "deliveries:" + id
		}
		if err := t.write("delete deliveries of event "+ev.ID, keys, `DELETE FROM deliveries WHERE id = ANY($1::uuid[])`, dids); err != nil {
			return err
		}
	}
	return t.write("delete event "+ev.ID, []string{"events:" + ev.ID}, `DELETE FROM events WHERE id = $1`, uid)
}

// orderStateSQL reads an order's state and the state of each target's last
// delivery ("id state").
const orderStateSQL = `SELECT o.state, ARRAY(SELECT d.id::text || ' ' || d.state FROM deliveries d WHERE d.id = ANY(o.delivery_ids))
	FROM orders o WHERE o.order_id = $1`

// OrderState reads an order's state; a target whose last delivery is gone
// (deleted by retention) counts as live.
func (t *tx) OrderState(orderID string) (bridge.OrderState, error) {
	if orderID == "" {
		return bridge.OrderState{}, nil
	}
	return t.orderState(orderID, false)
}

// LockOrder takes the order's advisory lock (held until the transaction
// ends; every decision of the order takes it, whichever replica makes it)
// and then reads its state, with a statement that starts once the lock is
// held and so sees the previous holder's commit.
func (t *tx) LockOrder(orderID string) (bridge.OrderState, error) {
	if orderID == "" {
		return bridge.OrderState{}, nil
	}
	if t.readOnly {
		return t.OrderState(orderID)
	}
	return t.orderState(orderID, !t.locked[orderID])
}

func (t *tx) orderState(orderID string, lock bool) (bridge.OrderState, error) {
	orderID = text(orderID)
	if lock {
		t.queue(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, nil, t.db.lockKey, orderID)
	}
	var stateJSON []byte
	var deliveries []string
	found := true
	err := t.read(orderStateSQL, func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&stateJSON, &deliveries)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	}, orderID)
	if err != nil {
		return bridge.OrderState{}, fmt.Errorf("postgres: read order %s: %w", orderID, err)
	}
	if lock {
		if t.locked == nil {
			t.locked = map[string]bool{}
		}
		t.locked[orderID] = true
	}
	st := bridge.OrderState{}
	if !found {
		return st, nil
	}
	if err := json.Unmarshal(stateJSON, &st); err != nil {
		return st, fmt.Errorf("postgres: decode order %s: %w", orderID, err)
	}
	states := make(map[string]string, len(deliveries))
	for _, d := range deliveries {
		id, state, _ := strings.Cut(d, " ")
		states[id] = state
	}
	for target, ts := range st.Targets {
		ts.Live = true
		if s, ok := states[ts.DeliveryID]; ok {
			ts.Live = (&bridge.Delivery{State: bridge.DeliveryState(s)}).Live()
		}
		st.Targets[target] = ts
	}
	return st, nil
}

func (t *tx) PutOrder(orderID string, st bridge.OrderState) error {
	state, err := jsonb(st)
	if err != nil {
		return fmt.Errorf("postgres: put order %s: %w", orderID, err)
	}
	last := make([]string, 0, len(st.Targets))
	for _, ts := range st.Targets {
		last = append(last, ts.DeliveryID)
	}
	return t.write("put order "+orderID, []string{"orders:" + orderID}, `INSERT INTO orders (order_id, state, delivery_ids) VALUES ($1, $2, $3)
		ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, delivery_ids = excluded.delivery_ids`, text(orderID), state, ids(last))
}

func (t *tx) Delivery(id string) (*bridge.Delivery, error) {
	uid, err := parseID("delivery", id)
	if err != nil {
		return nil, err
	}
	var d *bridge.Delivery
	err = t.read(`SELECT `+deliveryColumns+` FROM deliveries WHERE id = $1`, func(br pgx.BatchResults) error {
		var err error
		d, err = scanDelivery(br.QueryRow())
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	}, uid)
	if err != nil {
		return nil, fmt.Errorf("postgres: read delivery %s: %w", id, err)
	}
	if d == nil {
		return nil, fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
	}
	return d, nil
}

// PutDelivery upserts a delivery. A new one gets the next seq and the id of
// this transaction (queued_xid; see PendingAfter), assigned before the seq.
func (t *tx) PutDelivery(d *bridge.Delivery) error {
	uid, err := parseID("delivery", d.ID)
	if err != nil {
		return err
	}
	var eid, iid pgtype.UUID // a delivery of an intake has no event (SQL NULL), a status delivery no intake
	if d.EventID != "" || d.IntakeID == "" {
		if eid, err = parseID("event", d.EventID); err != nil {
			return fmt.Errorf("postgres: put delivery %s: event id: %w", d.ID, err)
		}
	}
	if d.IntakeID != "" {
		if iid, err = parseID("intake", d.IntakeID); err != nil {
			return fmt.Errorf("postgres: put delivery %s: intake id: %w", d.ID, err)
		}
	}
	var retryOf, resolvedBy pgtype.UUID // NULL for none
	if d.RetryOf != "" {
		if retryOf, err = parseID("delivery", d.RetryOf); err != nil {
			return fmt.Errorf("postgres: put delivery %s: retry_of: %w", d.ID, err)
		}
	}
	if d.ResolvedBy != "" {
		if resolvedBy, err = parseID("delivery", d.ResolvedBy); err != nil {
			return fmt.Errorf("postgres: put delivery %s: resolved_by: %w", d.ID, err)
		}
	}
	kind := d.Kind
	if kind == "" {
		kind = bridge.KindStatus
	}
	state := d.State
	if state == bridge.InFlight {
		state = bridge.Pending // a claim is not a stored state
	}
	attempts, err := jsonb(d.Attempts)
	if err != nil {
		return fmt.Errorf("postgres: put delivery %s: %w", d.ID, err)
	}
	if d.Attempts == nil {
		attempts = []byte("[]")
	}
	// The CASE takes the transaction's id (assigning it if need be) before
	// the seq: see PendingAfter.
	return t.write("put delivery "+d.ID, []string{"deliveries:" + d.ID}, `INSERT INTO deliveries (id, seq, queued_xid, event_id, order_id,
			target, status, status_id, created_at, state, reason, result, force, next_attempt_at, updated_at, attempts, kind, intake_id,
			retry_of, resolved_by)
		VALUES ($1, CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('deliveries_seq') END, pg_current_xact_id()::text::bigint,
			$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
		ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id, order_id = excluded.order_id, target = excluded.target,
			kind = excluded.kind, intake_id = excluded.intake_id, retry_of = excluded.retry_of, resolved_by = excluded.resolved_by,
			status = excluded.status, status_id = excluded.status_id, created_at = excluded.created_at, state = excluded.state,
			reason = excluded.reason, result = excluded.result, force = excluded.force,
			next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at, attempts = excluded.attempts,
			queued_xid = CASE WHEN deliveries.state <> 'pending' AND excluded.state = 'pending'
				THEN excluded.queued_xid ELSE deliveries.queued_xid END`,
		uid, eid, text(d.OrderID), text(d.Target), text(d.Status), text(d.StatusID), d.CreatedAt, string(state),
		text(d.Reason), text(d.Result), d.Force, nullTime(d.NextAttemptAt), d.UpdatedAt, attempts, string(kind), iid,
		retryOf, resolvedBy)
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
