// Package store owns durability: events (raw payloads byte for byte), the
// dedup index, per-order state and the delivery outbox, all in one bbolt file.
// Every write goes through one group committer, which commits all writes that
// are waiting in a single transaction and only then answers each caller, so
// "acknowledged" always means "on disk".
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Errors callers branch on.
var (
	// ErrLocked: another process holds the file.
	ErrLocked = errors.New("store: file is locked by another process")
	// ErrForeign: the file exists but is not a statusbridge store (or is corrupt).
	ErrForeign = errors.New("store: not a statusbridge store")
)

// Options tune the store; zero values take defaults.
type Options struct {
	// LockTimeout bounds the wait for the file lock (default 1s).
	LockTimeout time.Duration
	// QueueSize bounds ingests waiting for a commit; past it Ingest returns
	// ErrOverloaded at once instead of queueing (default 512: at the
	// ~10,000 webhooks/s a 2-core machine stores that is ~50 ms of
	// waiting, so overload still answers fast 503s rather than seconds of
	// latency, and at 5,000/s a disk stall of ~100 ms is waited out, not
	// refused: with 128, 5-14% of the webhooks of the bench's 5,000/s
	// phase were refused in such stalls, at half the capacity).
	QueueSize int
	// MaxBatch bounds the writes committed in one transaction (default 2048).
	MaxBatch int
	// ReadOnly opens the file for reading only (CLI inspection).
	ReadOnly bool
	// AsyncDelay is how long a commit of only asynchronous writes (delivery
	// records) may wait for a synchronous write to share it (default 2ms;
	// negative: never wait). Acknowledgements never wait on a timer.
	AsyncDelay time.Duration
	// Linger is how long a commit may wait for more writes when it already
	// holds LingerFrom writes that callers wait on (an ingest load): at
	// most until it holds LingerTo of them (defaults 4ms, 8 and 48;
	// negative: never wait). Under load, waiting costs a closed-loop
	// sender no latency — the commit it would have made next waits anyway
	// — and a commit's pages and fsyncs are then shared by more events. A
	// lone webhook, or the few of a commit at 1,000/s, never waits.
	Linger     time.Duration
	LingerFrom int
	LingerTo   int
	// OnCommit, when set, is told each group commit's size, pages and
	// duration (from the committer goroutine: it must not block).
	OnCommit func(CommitStats)
	// OnIdle, when set, is told of the committer's idle time while it goes
	// on, at most idleReport apart (CommitStats.Idle then holds only the
	// idle time since the last report), so counters of idle time are
	// current when read rather than waiting for the next commit.
	OnIdle func(time.Duration)
	Logger *slog.Logger
}

// DB is an open store.
type DB struct {
	bolt   *bbolt.DB
	log    *slog.Logger
	ingest chan *op // bounded: ingests are refused when full
	writes chan *op // internal writes (delivery results): callers wait
	wake   chan struct{}

	mu     sync.RWMutex // guards closed against sends on closed channels
	closed bool
	done   chan struct{}
	opts   Options
	// claims holds the deliveries this process is sending (in_flight).
	claimMu sync.Mutex
	claims  map[string]bool
	// dedup: the old forms of key the dedup index may hold.
	dedup dedupForm
	// recent: the dedup keys not yet in the dedup bucket (dedupmem.go);
	// the committer's alone. nil when read-only.
	recent *recentDedup
	// The tails of event and delivery ids, for short ids (tails.go); stage
	// is the committer's alone.
	eventTails, deliveryTails *tailIndex
	stage                     tailStage
}

// CommitStats describe one group commit.
type CommitStats struct {
	// Writes is how many writes (ingests, delivery records, …) it held.
	Writes int
	// Pages is how many pages it wrote: the B-tree pages it dirtied
	// (bbolt's TxStats.PageCount) and the meta page; 0 when it failed.
	// Each is a page of the file (4 KB), so this is what the commit cost
	// the disk.
	Pages int
	// Duration is the whole commit: the transaction and its fdatasyncs.
	Duration time.Duration
	// Where the committer's time went, from the end of the previous commit
	// to the end of this one (Idle + Linger + Duration):
	//   - Idle: waiting for a first write (with OnIdle set, only since its
	//     last report);
	//   - Linger: waiting for more writes to share the commit (a batch of
	//     delivery records waiting for an ingest, or an ingest load's
	//     linger);
	// and within Duration:
	//   - Apply: running the writes' functions (decoding the order's state,
	//     deciding, encoding the records, the puts);
	//   - Spill: bbolt rebalancing and encoding the dirtied nodes into pages;
	//   - Sync: bbolt writing the pages and the meta page, with their two
	//     fdatasyncs;
	//   - the rest (Duration - Apply - Spill - Sync): beginning the
	//     transaction, merging dedup keys, answering the callers.
	Idle, Linger, Apply, Spill, Sync time.Duration
}

type op struct {
	fn   func(tx *bbolt.Tx) error
	err  chan error      // the result, for a caller that waits (submit)
	done func(err error) // or: called by the committer (submitAsync)
	wake bool            // a commit of this op should wake the delivery worker
}

// Open opens (or creates) the store at path. It refuses a file that is not a
// statusbridge store rather than overwriting it.
func Open(path string, opts Options) (*DB, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 512
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2048
	}
	if opts.AsyncDelay == 0 {
		opts.AsyncDelay = 2 * time.Millisecond
	}
	if opts.Linger == 0 {
		opts.Linger = 4 * time.Millisecond
	}
	if opts.LingerFrom <= 0 {
		opts.LingerFrom = 8
	}
	if opts.LingerTo <= 0 {
		opts.LingerTo = 48
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
		}
	}
	existed := false
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		existed = true // bbolt initialises only empty files; anything else must be ours
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly,
		// The freelist is not written at every commit (it grows with the file
		// and made every commit slower); bbolt rebuilds it when the file is
		// opened. Data durability is unchanged: etcd runs this way.
		NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		switch {
		case errors.Is(err, bbolt.ErrTimeout):
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		case errors.Is(err, os.ErrPermission), errors.Is(err, os.ErrNotExist):
		case existed:
			return nil, fmt.Errorf("%w (or it is corrupt): %s: %v; refusing to touch it", ErrForeign, path, err)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// bbolt extends a large file 16 MB at a time; 4 MB keeps the unused tail
	// small (an extension costs one extra fsync, every few thousand events).
	bdb.AllocSize = 4 << 20
	dedup, err := checkSchema(bdb, opts.ReadOnly)
	if err == nil && !opts.ReadOnly {
		err = initConsole(bdb, opts.Logger)
	}
	var recent *recentDedup
	if err == nil && !opts.ReadOnly {
		if recent, err = loadRecentDedup(bdb); err == nil && recent.size() >= mergeDedupAt {
			err = mergeRecentDedup(bdb, recent)
		}
	}
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	db := &DB{
		bolt:   bdb,
		log:    opts.Logger,
		ingest: make(chan *op, opts.QueueSize),
		writes: make(chan *op, 256),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		opts:   opts,
		dedup:  dedup,
		recent: recent,
		claims: map[string]bool{},

		eventTails:    &tailIndex{bucket: bucketEvents},
		deliveryTails: &tailIndex{bucket: bucketDeliveries},
	}
	if opts.ReadOnly {
		close(db.done)
		db.closed = true
		return db, nil
	}
	go db.commitLoop()
	return db, nil
}

// dedupForm says which forms of dedup key an index may hold besides the
// current one (dedupIndexKey).
type dedupForm struct {
	// legacy32: the store began as statusbridge/1, so its index may hold
	// full 32-byte keys.
	legacy32 bool
	// hashBefore (Unix seconds, 0: none): the store was upgraded to
	// statusbridge/4, so updates from before this time may repeat events
	// stored under hash-only keys.
	hashBefore int64
}

// checkSchema initialises an empty file and refuses one written by anything
// else; a store of an earlier version is upgraded in place (meta only: the
// records stay as they are). It reports which old dedup keys the index may
// hold.
func checkSchema(bdb *bbolt.DB, readOnly bool) (form dedupForm, err error) {
	var empty, ours, v1, current bool
	err = bdb.View(func(tx *bbolt.Tx) error {
		empty = true
		_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
		if m := tx.Bucket(bucketMeta); m != nil {
			schema := m.Get([]byte(metaSchemaKey))
			v1 = bytes.Equal(schema, []byte(schemaVersion1))
			current = bytes.Equal(schema, []byte(schemaVersion))
			ours = v1 || current || bytes.Equal(schema, []byte(schemaVersion2)) || bytes.Equal(schema, []byte(schemaVersion3)) ||
				bytes.Equal(schema, []byte(schemaVersion4))
			form.legacy32 = v1 || m.Get([]byte(metaLegacyDedupKey)) != nil
			if v := m.Get([]byte(metaHashDedupKey)); len(v) == 8 {
				form.hashBefore = int64(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	if err != nil {
		return dedupForm{}, fmt.Errorf("store: read schema: %w", err)
	}
	if !empty && !ours {
		return dedupForm{}, fmt.Errorf("%w (it holds other buckets; refusing to touch it)", ErrForeign)
	}
	if readOnly {
		if empty {
			return dedupForm{}, fmt.Errorf("%w (the file is empty)", bridge.ErrNotFound)
		}
		if !current && form.hashBefore == 0 {
			form.hashBefore = math.MaxInt64 // not upgraded yet: every key is hash-only
		}
		return form, nil
	}
	if !empty && !current && form.hashBefore == 0 {
		form.hashBefore = time.Now().Add(hashDedupSlack).Unix()
	}
	return form, bdb.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("store: create bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v1 {
			if err := meta.Put([]byte(metaLegacyDedupKey), []byte("32")); err != nil {
				return fmt.Errorf("store: upgrade schema: %w", err)
			}
		}
		if form.hashBefore != 0 && meta.Get([]byte(metaHashDedupKey)) == nil {
			if err := meta.Put([]byte(metaHashDedupKey), binary.BigEndian.AppendUint64(nil, uint64(form.hashBefore))); err != nil {
				return fmt.Errorf("store: upgrade schema: %w", err)
			}
			// Every key of an earlier version is in the bucket.
			if last, _ := tx.Bucket(bucketEvents).Cursor().Last(); len(last) == 16 {
				if err := meta.Put([]byte(metaDedupMergedKey), last); err != nil {
					return fmt.Errorf("store: upgrade schema: %w", err)
				}
			}
		}
		return meta.Put([]byte(metaSchemaKey), []byte(schemaVersion))
	})
}

// Busy reports whether the ingest queue is full: an Ingest now would get
// ErrOverloaded. The receiver asks before reading a body, so refusing under
// overload costs almost nothing.
func (db *DB) Busy() bool { return len(db.ingest) >= cap(db.ingest) }

// Wake is signalled (without blocking) after every commit that created
// pending deliveries. The delivery worker waits on it instead of polling.
func (db *DB) Wake() <-chan struct{} { return db.wake }

// Path returns the file's path.
func (db *DB) Path() string { return db.bolt.Path() }

// Close stops accepting writes, commits what is queued and closes the file.
func (db *DB) Close() error {
	db.mu.Lock()
	if !db.closed {
		db.closed = true
		close(db.ingest)
		close(db.writes)
	}
	db.mu.Unlock()
	<-db.done
	if db.recent != nil && db.recent.size() > 0 {
		// Leave the dedup bucket complete (nothing to reload at the next
		// open). A failure loses nothing: the next open reloads.
		if err := mergeRecentDedup(db.bolt, db.recent); err != nil {
			db.log.Warn("store: dedup keys left for the next open to reload", "err", err)
		}
	}
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// submit queues fn for the next group commit and waits for that commit.
// Ingest-class writes are refused with ErrOverloaded when the queue is full.
func (db *DB) submit(fn func(tx *bbolt.Tx) error, refusable, wake bool) error {
	o := &op{fn: fn, err: make(chan error, 1), wake: wake}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return bridge.ErrClosed
	}
	if refusable {
		select {
		case db.ingest <- o:
		default:
			db.mu.RUnlock()
			return bridge.ErrOverloaded
		}
	} else {
		db.writes <- o
	}
	db.mu.RUnlock()
	return <-o.err
}

// submitAsync queues fn for the next group commit and returns at once; done
// is called with the commit's result from the committer goroutine, so it
// must not block. It returns ErrClosed (and does not call done) when the
// store is closing.
func (db *DB) submitAsync(fn func(tx *bbolt.Tx) error, done func(error)) error {
	o := &op{fn: fn, done: done}
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed {
		return bridge.ErrClosed
	}
	db.writes <- o
	return nil
}

// commitLoop is the group committer: it takes whatever writes are already
// waiting (no timer window, so a lone ingest commits at once) and commits
// them in one transaction.
//
// One exception: a batch of nothing but asynchronous writes (delivery
// records, which nobody waits on to answer a caller) waits up to
// Options.AsyncDelay for a write that someone does wait on, and rides along
// with it. At a steady webhook rate the records of the deliveries just sent
// then share the next ingest's commit instead of taking one of their own,
// which would make the next webhook wait behind two fsyncs it has no part in.
func (db *DB) commitLoop() {
	defer close(db.done)
	ingest, writes := db.ingest, db.writes
	batch := make([]*op, 0, db.opts.MaxBatch)
	var timer *time.Timer
	var report <-chan time.Time // ticks while idle, for OnIdle
	if db.opts.OnIdle != nil {
		t := time.NewTicker(idleReport)
		defer t.Stop()
		report = t.C
	}
	for ingest != nil || writes != nil {
		batch = batch[:0]
		var lingered time.Duration
		o, idle := db.first(&ingest, &writes, report)
		if o == nil {
			continue // a queue closed
		}
		batch = append(batch, o)
		db.drain(&batch, &ingest, &writes)
		if db.opts.AsyncDelay > 0 && onlyAsync(batch) && ingest != nil && writes != nil {
			tw := time.Now()
			if waiting != nil {
				waiting()
			}
			if timer == nil {
				timer = time.NewTimer(db.opts.AsyncDelay)
			} else {
				timer.Reset(db.opts.AsyncDelay)
			}
		wait:
			for len(batch) < db.opts.MaxBatch {
				select {
				case o, ok := <-ingest:
					if !ok {
						ingest = nil
						break wait
					}
					batch = append(batch, o)
					break wait
				case o, ok := <-writes:
					if !ok {
						writes = nil
						break wait
					}
					batch = append(batch, o)
					if o.done == nil {
						break wait
					}
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
			lingered += time.Since(tw)
			db.drain(&batch, &ingest, &writes)
		}
		if n := syncWrites(batch); db.opts.Linger > 0 && n >= db.opts.LingerFrom && n < db.opts.LingerTo && ingest != nil && writes != nil {
			if timer == nil {
				timer = time.NewTimer(db.opts.Linger)
			} else {
				timer.Reset(db.opts.Linger)
			}
			tw := time.Now()
		linger:
			for n < db.opts.LingerTo && len(batch) < db.opts.MaxBatch {
				select {
				case o, ok := <-ingest:
					if !ok {
						ingest = nil
						break linger
					}
					batch, n = append(batch, o), n+1
				case o, ok := <-writes:
					if !ok {
						writes = nil
						break linger
					}
					batch = append(batch, o)
					if o.done == nil {
						n++
					}
				case <-timer.C:
					break linger
				}
			}
			timer.Stop()
			lingered += time.Since(tw)
			db.drain(&batch, &ingest, &writes)
		}
		db.commit(batch, idle, lingered)
	}
}

// first waits for the next write (nil when a queue closed, which it sets to
// nil) and returns it with the idle time not yet reported: while it waits,
// every tick of report tells Options.OnIdle how long it has waited since.
func (db *DB) first(ingest, writes *chan *op, report <-chan time.Time) (*op, time.Duration) {
	t0 := time.Now()
	for {
		select {
		case o, ok := <-*ingest:
			if !ok {
				*ingest = nil
			}
			return o, time.Since(t0)
		case o, ok := <-*writes:
			if !ok {
				*writes = nil
			}
			return o, time.Since(t0)
		case <-report:
			// The tick's own time may be older than t0 (a tick left
			// waiting while the committer was busy): use the clock's.
			now := time.Now()
			db.opts.OnIdle(now.Sub(t0))
			t0 = now
		}
	}
}

// idleReport is how often an idle committer reports its idle time
// (Options.OnIdle).
const idleReport = 100 * time.Millisecond

// waiting, when set (by tests), is called when a batch of delivery records
// begins its wait for an ingest (Options.AsyncDelay).
var waiting func()

// beforeCommit, when set (by tests), sees each group commit's transaction
// after its writes, before bbolt commits it.
var beforeCommit func(tx *bbolt.Tx)

// drain adds to batch whatever is already waiting, without blocking.
func (db *DB) drain(batch *[]*op, ingest, writes *chan *op) {
	for len(*batch) < db.opts.MaxBatch {
		select {
		case o, ok := <-*writes:
			if !ok {
				*writes = nil
				return
			}
			*batch = append(*batch, o)
		case o, ok := <-*ingest:
			if !ok {
				*ingest = nil
				return
			}
			*batch = append(*batch, o)
		default:
			return
		}
	}
}

// syncWrites counts the writes of batch a caller waits on.
func syncWrites(batch []*op) int {
	n := 0
	for _, o := range batch {
		if o.done == nil {
			n++
		}
	}
	return n
}

// onlyAsync reports whether no write of batch has a caller waiting on it.
func onlyAsync(batch []*op) bool {
	for _, o := range batch {
		if o.done == nil {
			return false
		}
	}
	return true
}

// commit commits batch in one transaction; idle and lingered are how long
// the committer waited for its first write and for more (CommitStats).
func (db *DB) commit(batch []*op, idle, lingered time.Duration) {
	var btx *bbolt.Tx
	var apply time.Duration
	if db.opts.OnCommit != nil {
		t0 := time.Now()
		defer func() {
			st := CommitStats{Writes: len(batch), Duration: time.Since(t0), Idle: idle, Linger: lingered, Apply: apply}
			if btx != nil {
				// Read after the commit: a closed tx keeps its stats.
				ts := btx.Stats()
				if n := ts.GetPageCount(); n > 0 {
					st.Pages = int(n) + 1 // + the meta page
				}
				st.Spill = ts.GetSpillTime() + ts.GetRebalanceTime()
				st.Sync = ts.GetWriteTime()
			}
			db.opts.OnCommit(st)
		}()
	}
	var failed *op
	db.recent.begin()
	db.stage.begin()
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		btx = tx
		setFill(tx)
		ta := time.Now()
		for _, o := range batch {
			if err := o.fn(tx); err != nil {
				failed = o
				return err
			}
		}
		apply = time.Since(ta)
		if db.recent.due() {
			if err := db.recent.merge(tx, false); err != nil {
				return err
			}
		}
		if beforeCommit != nil {
			beforeCommit(tx)
		}
		return nil
	})
	if err == nil {
		db.recent.keep()
		db.eventTails.add(db.stage.events)
		db.deliveryTails.add(db.stage.deliveries)
		db.finish(batch, nil)
		return
	}
	db.recent.begin() // rolled back: what it staged is dropped
	btx = nil         // and it wrote nothing
	if failed == nil || len(batch) == 1 {
		// The commit itself failed (disk full, I/O error): nothing was written.
		db.log.Error("store commit failed", "writes", len(batch), "err", err)
		db.finish(batch, fmt.Errorf("store: commit: %w", err))
		return
	}
	// One write failed on its own: commit the others without it, one by one,
	// so one bad write never fails its neighbours.
	for _, o := range batch {
		db.commit([]*op{o}, 0, 0)
	}
}

// finish wakes the worker (before answering, so a caller that got its answer
// knows the worker has been told) and answers every write of the batch.
func (db *DB) finish(batch []*op, err error) {
	for _, o := range batch {
		if err == nil && o.wake {
			select {
			case db.wake <- struct{}{}:
			default:
			}
			break
		}
	}
	for _, o := range batch {
		if o.done != nil {
			o.done(err)
		} else {
			o.err <- err
		}
	}
}

// Ping reports whether the store is open and readable (for /readyz).
func (db *DB) Ping(ctx context.Context) error {
	db.mu.RLock()
	closed := db.closed && !db.opts.ReadOnly
	db.mu.RUnlock()
	if closed {
		return bridge.ErrClosed
	}
	if err := db.view(func(*bbolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// view runs a read-only transaction.
func (db *DB) view(fn func(tx *bbolt.Tx) error) error { return db.bolt.View(fn) }
