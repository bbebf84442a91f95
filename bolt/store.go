// Package store owns durability: events (raw payloads byte for byte), the
// dedup index, per-order state and the delivery outbox, all in one bbolt file.
// Every write goes through one group committer, which commits all writes that
// are waiting in a single transaction and only then answers each caller, so
// "acknowledged" always means "on disk".
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// ErrOverloaded at once instead of queueing (default 128: at a few
	// thousand commits per second that is tens of milliseconds of waiting,
	// so overload answers fast 503s rather than seconds of latency, and at
	// 1,000 webhooks/s a disk stall of ~100 ms is waited out, not refused).
	QueueSize int
	// MaxBatch bounds the writes committed in one transaction (default 2048).
	MaxBatch int
	// ReadOnly opens the file for reading only (CLI inspection).
	ReadOnly bool
	// AsyncDelay is how long a commit of only asynchronous writes (delivery
	// records) may wait for a synchronous write to share it (default 2ms;
	// negative: never wait). Acknowledgements never wait on a timer.
	AsyncDelay time.Duration
	// OnCommit, when set, is told each group commit's size and duration.
	OnCommit func(writes int, d time.Duration)
	Logger   *slog.Logger
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
	// legacyDedup: the store began as statusbridge/1, so its dedup index may
	// hold full 32-byte keys as well as 16-byte ones.
	legacyDedup bool
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
		opts.QueueSize = 128
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2048
	}
	if opts.AsyncDelay == 0 {
		opts.AsyncDelay = 2 * time.Millisecond
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
	legacyDedup, err := checkSchema(bdb, opts.ReadOnly)
	if err == nil && !opts.ReadOnly {
		err = initConsole(bdb, opts.Logger)
	}
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	db := &DB{
		bolt:        bdb,
		log:         opts.Logger,
		ingest:      make(chan *op, opts.QueueSize),
		writes:      make(chan *op, 256),
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		opts:        opts,
		legacyDedup: legacyDedup,
		claims:      map[string]bool{},
	}
	if opts.ReadOnly {
		close(db.done)
		db.closed = true
		return db, nil
	}
	go db.commitLoop()
	return db, nil
}

// checkSchema initialises an empty file and refuses one written by anything
// else. It reports whether the store began as statusbridge/1 (its dedup index
// may hold 32-byte keys).
func checkSchema(bdb *bbolt.DB, readOnly bool) (legacyDedup bool, err error) {
	var empty, ours, v1 bool
	err = bdb.View(func(tx *bbolt.Tx) error {
		empty = true
		_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
		if m := tx.Bucket(bucketMeta); m != nil {
			schema := m.Get([]byte(metaSchemaKey))
			v1 = bytes.Equal(schema, []byte(schemaVersion1))
			ours = v1 || bytes.Equal(schema, []byte(schemaVersion2)) || bytes.Equal(schema, []byte(schemaVersion3)) ||
				bytes.Equal(schema, []byte(schemaVersion))
			legacyDedup = v1 || m.Get([]byte(metaLegacyDedupKey)) != nil
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: read schema: %w", err)
	}
	if !empty && !ours {
		return false, fmt.Errorf("%w (it holds other buckets; refusing to touch it)", ErrForeign)
	}
	if readOnly {
		if empty {
			return false, fmt.Errorf("%w (the file is empty)", bridge.ErrNotFound)
		}
		return legacyDedup, nil
	}
	return legacyDedup, bdb.Update(func(tx *bbolt.Tx) error {
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
	for ingest != nil || writes != nil {
		batch = batch[:0]
		select {
		case o, ok := <-ingest:
			if !ok {
				ingest = nil
				continue
			}
			batch = append(batch, o)
		case o, ok := <-writes:
			if !ok {
				writes = nil
				continue
			}
			batch = append(batch, o)
		}
		db.drain(&batch, &ingest, &writes)
		if db.opts.AsyncDelay > 0 && onlyAsync(batch) && ingest != nil && writes != nil {
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
			db.drain(&batch, &ingest, &writes)
		}
		db.commit(batch)
	}
}

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

// onlyAsync reports whether no write of batch has a caller waiting on it.
func onlyAsync(batch []*op) bool {
	for _, o := range batch {
		if o.done == nil {
			return false
		}
	}
	return true
}

func (db *DB) commit(batch []*op) {
	if db.opts.OnCommit != nil {
		t0 := time.Now()
		defer func() { db.opts.OnCommit(len(batch), time.Since(t0)) }()
	}
	var failed *op
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		setFill(tx)
		for _, o := range batch {
			if err := o.fn(tx); err != nil {
				failed = o
				return err
			}
		}
		return nil
	})
	if err == nil {
		db.finish(batch, nil)
		return
	}
	if failed == nil || len(batch) == 1 {
		// The commit itself failed (disk full, I/O error): nothing was written.
		db.log.Error("store commit failed", "writes", len(batch), "err", err)
		db.finish(batch, fmt.Errorf("store: commit: %w", err))
		return
	}
	// One write failed on its own: commit the others without it, one by one,
	// so one bad write never fails its neighbours.
	for _, o := range batch {
		db.commit([]*op{o})
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
