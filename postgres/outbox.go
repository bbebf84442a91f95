package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/statusbridge/statusbridge/bridge"
)

// PendingAfter returns up to limit unfinished deliveries in seq order: from
// the start when after is "", else those the worker has not been given since
// the read that returned the delivery after.
//
// seq is commit order within a lane (the order's lock serialises its
// decisions) but not across lanes: a transaction may take seq 10, another
// seq 11 and commit first, so a reader that saw 11 and asks for "after 11"
// would never see 10. So each read remembers, for every id it returns, the
// transactions its snapshot saw in progress, and "after id" means: rows
// with a larger seq, plus rows queued by one of those transactions
// (queued_xid), which may have a smaller seq. In progress means listed by
// pg_snapshot_xip or at or above the snapshot's xmax: xip lists only the
// transactions below xmax, which is the newest completed one + 1, so a
// transaction that took its id (and a seq) after the newest commit the
// snapshot saw is not in xip even though it is running (what
// TestPendingAfterMissesNothingUnderConcurrentCommits caught). No other row
// can have been missed: a transaction below xmax and not in xip had
// completed, so its rows were visible to that read. Both parts use small
// partial indexes of pending rows, so a read costs what it returns, not the
// backlog; a re-read from the start is one index scan.
//
// A delivery may be returned again (the worker skips those it holds). An id
// this DB did not return recently (or at all: a restart) reads from the
// start, which is always correct. A delivery another sender holds is
// returned with NextAttemptAt no earlier than the end of its lease, so a
// worker waits for the lease instead of spinning on refused claims.
func (db *DB) PendingAfter(ctx context.Context, after string, limit int) ([]bridge.Delivery, error) {
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	var pos readPos
	known := false
	if after != "" {
		pos, known = db.reads.lookup(after)
	}
	const cols = `SELECT ` + deliveryColumns + `, seq,
		CASE WHEN claimed_until > now() AND claimed_by <> $1 THEN greatest(next_attempt_at, claimed_until) END,
		EXISTS (SELECT 1 FROM durable_claims c WHERE c.delivery_id = deliveries.id AND c.claimed_by <> $1)
		FROM deliveries WHERE state = 'pending'`
	sql, args := cols+` ORDER BY seq LIMIT $2`, []any{db.opts.Name, limit}
	if known {
		sql = `(` + cols + ` AND seq > $3 ORDER BY seq LIMIT $2) UNION ALL (` + cols + ` AND seq <= $3
			AND (queued_xid = ANY($4) OR queued_xid >= $5)) ORDER BY seq LIMIT $2`
		args = append(args, pos.seq, pos.inProgress, pos.xmax)
	}
	var out []bridge.Delivery
	var seqs []int64
	var xip []int64
	var xmax int64
	err = db.readTx(ctx, func(b *pgx.Batch) {
		// The first statement takes the transaction's snapshot; the second
		// reads with the same one.
		b.Queue(`SELECT ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(pg_current_snapshot()) x),
			pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).QueryRow(func(row pgx.Row) error {
			return row.Scan(&xip, &xmax)
		})
		b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var seq int64
				var leased *time.Time
				var claimed bool
				d, err := scanDelivery(rows, &seq, &leased, &claimed)
				if err != nil {
					return err
				}
				d.Claimed = claimed // a durable claim of another sender (gone: one sender sends)
				if leased != nil {
					d.NextAttemptAt = leased.UTC()
				}
				out = append(out, *d)
				seqs = append(seqs, seq)
			}
			return nil
		})
	})
	if err != nil {
		return nil, db.fail(ctx, "read pending deliveries", err)
	}
	// Every row visible now with a seq up to a returned row's has been
	// returned (now or before); so has every one up to after's, once no row
	// of the second part (seq <= after's) was cut off by the limit.
	floor := int64(0)
	if known && (len(out) < limit || (len(seqs) > 0 && seqs[len(seqs)-1] > pos.seq)) {
		floor = pos.seq
	}
	db.reads.remember(out, seqs, floor, xip, xmax)
	return out, nil
}

// readTx runs the statements b queues in one REPEATABLE READ READ ONLY
// transaction, in one round trip.
func (db *DB) readTx(ctx context.Context, queue func(b *pgx.Batch)) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	queue(b)
	b.Queue("COMMIT")
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release() // left in a transaction (an error): destroyed
	return pc.Conn().SendBatch(ctx, b).Close()
}

// readPos is where a read left a reader: every pending delivery its
// snapshot saw with a seq up to seq has been returned, and inProgress are
// the transactions that snapshot saw running.
type readPos struct {
	seq        int64
	inProgress []int64
	xmax       int64 // transactions from this one on were not complete either
	gen        uint64
}

// pendingReads remembers the position of every delivery the recent reads
// returned (at most maxPositions).
type pendingReads struct {
	mu    sync.Mutex
	byID  map[string]readPos
	order []idGen // oldest first
	gen   uint64
}

type idGen struct {
	id  string
	gen uint64
}

const maxPositions = 50000

func (r *pendingReads) init() { r.byID = map[string]readPos{} }

func (r *pendingReads) lookup(id string) (readPos, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byID[id]
	return p, ok
}

func (r *pendingReads) remember(ds []bridge.Delivery, seqs []int64, floor int64, xip []int64, xmax int64) {
	if xip == nil {
		xip = []int64{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	for i := range ds {
		r.byID[ds[i].ID] = readPos{seq: max(seqs[i], floor), inProgress: xip, xmax: xmax, gen: r.gen}
		r.order = append(r.order, idGen{ds[i].ID, r.gen})
	}
	for len(r.order) > maxPositions {
		old := r.order[0]
		r.order = r.order[1:]
		if p, ok := r.byID[old.id]; ok && p.gen == old.gen {
			delete(r.byID, old.id)
		}
	}
}

// claimSQL claims the pending deliveries of $1 that no live claim of
// another sender holds and that are the next of their lane (laneAhead): a
// lane's order upserts go before its other deliveries, each class in seq
// order, and an upsert waits for a delivery of its lane being sent (one in
// flight finishes first).
const claimSQL = `UPDATE deliveries AS d SET claimed_by = $2, claimed_until = now() + $3::interval
	WHERE d.id = ANY($1) AND d.state = 'pending'
		AND (d.claimed_until IS NULL OR d.claimed_until <= now() OR d.claimed_by = $2)
		AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE ` + laneAhead + `)
	RETURNING d.id`

// durableClaimSQL is claimSQL recording each claim in durable_claims too,
// in the same statement (apart from the lease, which a takeover releases).
const durableClaimSQL = `WITH c AS (` + claimSQL + `),
dc AS (INSERT INTO durable_claims (delivery_id, claimed_by) SELECT id, $2 FROM c
	ON CONFLICT (delivery_id) DO UPDATE SET claimed_by = excluded.claimed_by, claimed_at = now())
SELECT id FROM c`

// laneAhead is true for a delivery p that goes before d in d's lane.
const laneAhead = `p.state = 'pending' AND p.order_id = d.order_id AND p.target = d.target AND p.id <> d.id AND (
	(p.kind = 'order' AND d.kind <> 'order')
	OR ((p.kind = 'order') = (d.kind = 'order') AND p.seq < d.seq)
	OR (d.kind = 'order' AND p.kind <> 'order' AND p.claimed_until > now()))`

// ClaimsCheckLaneOrder: claims here refuse a delivery that is not the next
// of its lane (replicas share the outbox).
func (db *DB) ClaimsCheckLaneOrder() bool { return true }

// Claim marks a delivery as being sent by this process until it is
// recorded or released, or Options.ClaimLease passes. It refuses
// (ErrClaimRefused, with the reason) a delivery that is not pending, that
// another sender holds, or that an older unfinished delivery of its lane
// precedes.
//
// A durable claim is committed as any write. One that is not is committed
// without waiting for the disk (synchronous_commit off), lost only if the
// database crashes, and then the delivery is sent again, which
// at-least-once allows; and the claims made at once by the worker's senders
// go in one statement, by one goroutine.
func (db *DB) Claim(ctx context.Context, d *bridge.Delivery, durable bool) error {
	uid, err := parseID("delivery", d.ID)
	if err != nil {
		return fmt.Errorf("%w: %w", bridge.ErrClaimRefused, err)
	}
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	if durable {
		rows, err := db.pool.Query(ctx, durableClaimSQL, []pgtype.UUID{uid}, db.opts.Name, db.opts.ClaimLease)
		if err != nil {
			return db.fail(ctx, "claim delivery "+d.ID, err)
		}
		claimed := 0
		for rows.Next() {
			claimed++
		}
		if err := rows.Err(); err != nil {
			return db.fail(ctx, "claim delivery "+d.ID, err)
		}
		if claimed == 1 {
			return nil
		}
		return fmt.Errorf("%w: delivery %s %s", bridge.ErrClaimRefused, d.ID, db.refusal(ctx, uid))
	}
	req := &claimReq{id: uid, sid: d.ID, res: make(chan error, 1)}
	db.claimq <- req // the claimer drains it until Close, which waits for this call
	select {
	case err := <-req.res:
		return err
	case <-ctx.Done():
		return ctx.Err() // if the claim was made, it is ours: our next claim of it is not refused
	}
}

type claimReq struct {
	id  pgtype.UUID
	sid string
	res chan error // buffered
}

// maxClaimBatch bounds the claims made by one statement.
const maxClaimBatch = 128

// claimer makes the queued non-durable claims, as many as are waiting in
// one statement, until the queue is closed and empty.
func (db *DB) claimer() {
	defer db.recWG.Done()
	batch := make([]*claimReq, 0, maxClaimBatch)
	for req := range db.claimq {
		batch = append(batch[:0], req)
	drain:
		for len(batch) < maxClaimBatch {
			select {
			case r, ok := <-db.claimq:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		db.claimBatch(ctx, batch)
		cancel()
	}
}

// claimBatch claims a batch on the pool that does not wait for the disk
// and answers each request.
func (db *DB) claimBatch(ctx context.Context, batch []*claimReq) {
	ids := make([]pgtype.UUID, len(batch))
	for i, r := range batch {
		ids[i] = r.id
	}
	claimed := map[[16]byte]bool{}
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		clear(claimed)
		var rows pgx.Rows
		rows, err = db.async.Query(ctx, claimSQL, ids, db.opts.Name, db.opts.ClaimLease)
		if err == nil {
			for rows.Next() {
				var id pgtype.UUID
				if err = rows.Scan(&id); err != nil {
					break
				}
				claimed[id.Bytes] = true
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "40P01" { // a deadlock with another sender's claims: again
			break
		}
	}
	for _, r := range batch {
		switch {
		case err != nil:
			r.res <- db.fail(ctx, "claim delivery "+r.sid, err)
		case claimed[r.id.Bytes]:
			r.res <- nil
		default:
			r.res <- fmt.Errorf("%w: delivery %s %s", bridge.ErrClaimRefused, r.sid, db.refusal(ctx, r.id))
		}
	}
}

// refusal says why a claim was refused.
func (db *DB) refusal(ctx context.Context, id pgtype.UUID) string {
	var state, by string
	var held, older bool
	var until *time.Time
	err := db.pool.QueryRow(ctx, `SELECT state, coalesce(claimed_by, ''), claimed_until, coalesce(claimed_until > now(), false),
		EXISTS (SELECT 1 FROM deliveries p WHERE `+laneAhead+`)
		FROM deliveries d WHERE id = $1`, id).Scan(&state, &by, &until, &held, &older)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "does not exist"
	case err != nil:
		return "(reason unknown: " + db.fail(ctx, "read delivery", err).Error() + ")"
	case state != string(bridge.Pending):
		return "is " + state
	case held && by != db.opts.Name:
		return fmt.Sprintf("is being sent by %s (lease until %s)", by, until.UTC().Format(time.RFC3339))
	case older:
		return "waits for a delivery of its order and target that goes first (an older one, an order upsert, or one being sent)"
	}
	return "changed while being claimed"
}

// Release drops this process's claim without recording an attempt.
func (db *DB) Release(ctx context.Context, id string) error {
	uid, err := parseID("delivery", id)
	if err != nil {
		return err
	}
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	if _, err := db.async.Exec(ctx, `WITH u AS (UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND claimed_by = $2)
		DELETE FROM durable_claims WHERE delivery_id = $1 AND claimed_by = $2`,
		uid, db.opts.Name); err != nil {
		return db.fail(ctx, "release delivery "+id, err)
	}
	return nil
}

// recordSQL appends an attempt, moves the delivery to its new state, clears
// its claims (the lease and a durable claim) and appends the record to the
// changes feed, in one statement. recordDoneSQL also resolves the dead
// deliveries a done one retries (the chain of retry_of, as
// bridge.ResolveRetried walks it: at most 100); recordOnceSQL also records
// a done delivery's no-repeat key (only then: the table is not opened for
// the records without one). Each returns how many deliveries it updated
// (0: unknown).
const (
	recordUpdate = `UPDATE deliveries SET
		attempts = CASE WHEN $2::jsonb IS NULL THEN attempts ELSE attempts || $2::jsonb END,
		state = $3, next_attempt_at = $4,
		reason = CASE WHEN $5 THEN $6 ELSE reason END,
		result = CASE WHEN $7 <> '' THEN $7 ELSE result END,
		updated_at = $8, claimed_by = NULL, claimed_until = NULL
	WHERE id = $1 RETURNING id, retry_of, state`
	recordDurable = `dc AS (DELETE FROM durable_claims WHERE delivery_id IN (SELECT id FROM u)),
	ch AS (INSERT INTO changes (delivery_id, xid) SELECT id, pg_current_xact_id()::text::bigint FROM u)`
	recordResolve = `chain (id, depth) AS (
		SELECT retry_of, 1 FROM u WHERE state = 'done' AND retry_of IS NOT NULL
		UNION ALL
		SELECT d.retry_of, c.depth + 1 FROM chain c JOIN deliveries d ON d.id = c.id
		WHERE d.retry_of IS NOT NULL AND c.depth < 100),
	r AS (UPDATE deliveries p SET resolved_by = u.id FROM u
		WHERE p.id IN (SELECT id FROM chain) AND p.id <> u.id AND p.state = 'dead' AND p.resolved_by IS NULL)`
	recordSQL     = `WITH u AS (` + recordUpdate + `), ` + recordDurable + ` SELECT count(*) FROM u`
	recordDoneSQL = `WITH RECURSIVE u AS (` + recordUpdate + `), ` + recordDurable + `, ` + recordResolve + ` SELECT count(*) FROM u`
	recordOnceSQL = `WITH RECURSIVE u AS (` + recordUpdate + `),
	o AS (INSERT INTO once (key, delivery_id) SELECT $9, id FROM u ON CONFLICT (key) DO UPDATE SET delivery_id = excluded.delivery_id),
	` + recordDurable + `, ` + recordResolve + ` SELECT count(*) FROM u`
)

type recordReq struct {
	id   string
	sql  string
	args []any
	done func(error)
	err  error // set by commitRecords
}

func newRecord(id string, o bridge.AttemptResult, now time.Time) (*recordReq, error) {
	uid, err := parseID("delivery", id)
	if err != nil {
		return nil, err
	}
	var attempt []byte
	if o.Attempt != nil {
		if attempt, err = jsonb([]bridge.Attempt{*o.Attempt}); err != nil {
			return nil, err
		}
	}
	state := o.State
	if state == bridge.InFlight {
		state = bridge.Pending
	}
	var next *time.Time
	if !state.Terminal() {
		next = nullTime(o.NextAttemptAt)
	}
	onceKey := ""
	if state == bridge.Done {
		onceKey = text(o.OnceKey)
	}
	req := &recordReq{id: id, sql: recordSQL, args: []any{uid, attempt, string(state), next, o.Reason != "" || state.Terminal(), text(o.Reason),
		text(o.Result), now.UTC()}}
	switch {
	case onceKey != "":
		req.sql, req.args = recordOnceSQL, append(req.args, onceKey)
	case state == bridge.Done:
		req.sql = recordDoneSQL
	}
	return req, nil
}

// Record appends an attempt, moves the delivery to its new state and
// releases its claim, and returns once that is committed.
func (db *DB) Record(ctx context.Context, id string, o bridge.AttemptResult, now time.Time) error {
	req, err := newRecord(id, o, now)
	if err != nil {
		return fmt.Errorf("postgres: record delivery %s: %w", id, err)
	}
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	db.commitRecords(ctx, []*recordReq{req})
	return req.err
}

// RecordAsync is Record without waiting: the record is committed by a
// recorder goroutine, together with the others waiting (one transaction for
// many records), and done is called once that is committed or has failed.
// It returns an error, and does not call done, when the record cannot even
// be queued (ErrClosed).
func (db *DB) RecordAsync(ctx context.Context, id string, o bridge.AttemptResult, now time.Time, done func(error)) error {
	req, err := newRecord(id, o, now)
	if err != nil {
		return fmt.Errorf("postgres: record delivery %s: %w", id, err)
	}
	req.done = done
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	db.recq <- req // recorders drain it until Close, which waits for this call
	return nil
}

// maxRecordBatch bounds the records committed in one transaction.
const maxRecordBatch = 256

// recorder commits queued records, as many as are waiting in one
// transaction, until the queue is closed and empty.
func (db *DB) recorder() {
	defer db.recWG.Done()
	batch := make([]*recordReq, 0, maxRecordBatch)
	for req := range db.recq {
		batch = append(batch[:0], req)
	drain:
		for len(batch) < maxRecordBatch {
			select {
			case r, ok := <-db.recq:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		db.commitRecords(ctx, batch)
		cancel()
		for _, r := range batch {
			r.done(r.err)
		}
	}
}

// commitRecords commits the records in one transaction (a pipeline of
// statements is one implicit transaction) and sets each one's err. When the
// transaction fails on one record's statement, the others are committed
// again one by one, so one bad record never fails its neighbours; a lost
// race (deadlock) is retried.
func (db *DB) commitRecords(ctx context.Context, reqs []*recordReq) {
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		b := &pgx.Batch{}
		counts := make([]int64, len(reqs))
		for i, r := range reqs {
			b.Queue(r.sql, r.args...).QueryRow(func(row pgx.Row) error { return row.Scan(&counts[i]) })
		}
		err = db.sendBatch(ctx, b)
		if err == nil {
			for i, r := range reqs {
				r.err = nil
				if counts[i] == 0 {
					r.err = fmt.Errorf("postgres: record delivery %s: %w: delivery %s", r.id, bridge.ErrNotFound, r.id)
				}
			}
			return
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40001" && pgErr.Code != "40P01") {
			break
		}
	}
	if len(reqs) > 1 && !unavailable(err) && ctx.Err() == nil {
		for _, r := range reqs {
			db.commitRecords(ctx, []*recordReq{r})
		}
		return
	}
	for _, r := range reqs {
		r.err = db.fail(ctx, "record delivery "+r.id, err)
	}
}

// sendBatch sends b on a pooled connection.
func (db *DB) sendBatch(ctx context.Context, b *pgx.Batch) error {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release()
	return pc.Conn().SendBatch(ctx, b).Close()
}

// Triggered reports whether a no-repeat key was recorded by a done delivery.
func (db *DB) Triggered(ctx context.Context, key string) (bool, error) {
	release, err := db.enter()
	if err != nil {
		return false, err
	}
	defer release()
	var found bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM once WHERE key = $1)`, text(key)).Scan(&found); err != nil {
		return false, db.fail(ctx, "read no-repeat key", err)
	}
	return found, nil
}
