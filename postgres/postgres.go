// Package postgres is the PostgreSQL store backend: several statusbridge
// replicas share one database. It implements bridge.Backend with pgx's
// connection pool; every table lives in one schema (Options.Schema), created
// and migrated by Open.
//
// How it meets the Backend's contract with several processes writing:
//
//   - Update runs its function in a READ COMMITTED transaction and returns
//     once COMMIT has returned (synchronous_commit on: on disk). It runs the
//     function again on a serialization failure or a deadlock.
//   - The dedup index is a unique key (two replicas storing the same update
//     at once store it once); LockOrder takes a transaction-scoped advisory
//     lock on the order, so two updates of one order are decided one after
//     the other whichever replicas receive them.
//   - Writes are lazy: PutEvent, PutDelivery, PutOrder and DeleteEvent are
//     queued in the transaction and sent with its next statement (a read, or
//     COMMIT), in one round trip. An ingest is three round trips.
//   - Claims live in the deliveries' rows with a lease (Options.ClaimLease):
//     a delivery claimed by one replica is refused to the others until it is
//     recorded, released or its lease lapses, and only the oldest unfinished
//     delivery of a lane can be claimed.
//   - Wake is signalled after this process commits a write that queues
//     deliveries, when another replica's NOTIFY arrives, and every
//     Options.SweepInterval.
//   - When the database cannot be reached, calls fail within a few seconds
//     with an error wrapping bridge.ErrUnavailable; the pool reconnects by
//     itself once it is back.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
)

var _ bridge.Backend = (*DB)(nil)

// Options configure a DB; zero values take the defaults.
type Options struct {
	// DSN is a postgres:// URL or libpq key=value pairs. Its password never
	// appears in an error or a log line.
	DSN string
	// Schema holds every table (default "statusbridge"); it is created when
	// missing.
	Schema string
	// MaxConns bounds the connection pool (default 16). A DB holds up to
	// MaxConns + 5 connections: 4 more for non-durable commits (claims,
	// notifications) and one listening.
	MaxConns int
	Logger   *slog.Logger
	// Name identifies this process's claims (default: the host name and a
	// random suffix). Two live processes must not share one.
	Name string
	// ClaimLease is how long a claim holds without being recorded (default
	// 2m): longer than any target's timeout, since a sender whose lease
	// lapsed may see its delivery taken over and sent again.
	ClaimLease time.Duration
	// QueueSize bounds the ingests in flight (waiting for a connection
	// included); past it Update refuses refusable writes with
	// bridge.ErrOverloaded (default 128, as the bbolt store's queue).
	QueueSize int
	// SweepInterval: Wake is signalled at least this often, so a delivery
	// whose notification was lost (a replica died between its commit and
	// its NOTIFY, the listening connection was down) is found (default 5s).
	SweepInterval time.Duration
	// ConnectTimeout bounds establishing a connection (default 3s, unless
	// the DSN sets connect_timeout): an unreachable database fails a
	// webhook fast instead of holding it.
	ConnectTimeout time.Duration
	// IngestTimeout bounds a refusable write, an ingest, waiting included
	// (default 10s): a database that accepts connections but does not
	// answer, or an order locked for long, fails the webhook with an error
	// wrapping bridge.ErrUnavailable (503) instead of holding it.
	IngestTimeout time.Duration
	// OnCommit, when set, is told each committed write transaction's
	// duration (writes is 1: PostgreSQL groups commits itself).
	OnCommit func(writes int, d time.Duration)
}

// Defaults.
const (
	defaultSchema        = "statusbridge"
	defaultMaxConns      = 16
	defaultClaimLease    = 2 * time.Minute
	defaultQueueSize     = 128
	defaultSweepInterval = 5 * time.Second
	defaultConnect       = 3 * time.Second
	defaultIngestTimeout = 10 * time.Second
	// callTimeout bounds the background statements (records, notifications).
	callTimeout = 30 * time.Second
	// asyncConns is the size of the pool of non-durable commits.
	asyncConns = 4
)

// DB is an open PostgreSQL store.
type DB struct {
	pool *pgxpool.Pool
	// async is a small pool whose sessions commit without waiting for the
	// disk (synchronous_commit off): for what may be lost in a database
	// crash because it is only redone (non-durable claims, releases,
	// notifications).
	async   *pgxpool.Pool
	connCfg *pgx.ConnConfig // for dedicated connections: copy before use
	log     *slog.Logger
	opts    Options
	schema  string
	channel string   // NOTIFY channel of this schema's outbox
	lockKey int32    // advisory lock class of this schema's order locks
	secrets []string // the DSN's passwords, scrubbed from error texts

	wake     chan struct{}
	notifyCh chan struct{} // a NOTIFY to send (coalesced)
	recq     chan *recordReq
	claimq   chan *claimReq
	reads    pendingReads
	inflight atomic.Int64 // refusable writes in flight

	mu     sync.RWMutex // held (read) by every call; Close takes it to wait for them
	closed bool
	stop   chan struct{}
	bg     sync.WaitGroup // listener, notifier, sweeper
	recWG  sync.WaitGroup // recorders and the claimer
}

// Open connects to the database, creates the schema and applies the
// migrations it lacks (under an advisory lock, so replicas starting at once
// apply them once), and starts listening for other replicas' commits. It
// refuses a schema newer than this binary knows. A database that cannot be
// reached fails Open with an error wrapping bridge.ErrUnavailable.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Schema == "" {
		opts.Schema = defaultSchema
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = defaultMaxConns
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ClaimLease <= 0 {
		opts.ClaimLease = defaultClaimLease
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = defaultQueueSize
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = defaultSweepInterval
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = defaultConnect
	}
	if opts.IngestTimeout <= 0 {
		opts.IngestTimeout = defaultIngestTimeout
	}
	if opts.Name == "" {
		opts.Name = defaultName()
	}
	secrets := config.DSNSecrets(opts.DSN)
	pcfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: read the DSN: %s", scrub(err.Error(), secrets))
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	rp := pcfg.ConnConfig.RuntimeParams
	rp["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	if rp["application_name"] == "" {
		rp["application_name"] = "statusbridge"
	}
	pcfg.MaxConns = int32(opts.MaxConns)
	pcfg.PingTimeout = 2 * time.Second

	db := &DB{
		connCfg:  pcfg.ConnConfig.Copy(),
		log:      opts.Logger,
		opts:     opts,
		schema:   opts.Schema,
		channel:  channelName(opts.Schema),
		lockKey:  hash32("statusbridge orders " + opts.Schema),
		secrets:  secrets,
		wake:     make(chan struct{}, 1),
		notifyCh: make(chan struct{}, 1),
		recq:     make(chan *recordReq, 1024),
		claimq:   make(chan *claimReq, 256),
		stop:     make(chan struct{}),
	}
	db.reads.init()
	if err := db.migrate(ctx); err != nil {
		return nil, err
	}
	if db.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, db.fail(ctx, "open the pool", err)
	}
	acfg := pcfg.Copy()
	acfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	acfg.MaxConns = asyncConns
	if db.async, err = pgxpool.NewWithConfig(ctx, acfg); err != nil {
		db.pool.Close()
		return nil, db.fail(ctx, "open the pool", err)
	}
	if err := db.checkSettings(ctx); err != nil {
		db.pool.Close()
		db.async.Close()
		return nil, err
	}
	db.recWG.Add(3)
	go db.recorder()
	go db.recorder()
	go db.claimer()
	db.bg.Add(3)
	go db.listen()
	go db.notifier()
	go db.sweeper()
	return db, nil
}

// checkSettings warns about settings under which an acknowledged write may
// be lost.
func (db *DB) checkSettings(ctx context.Context) error {
	var syncCommit, fsync string
	err := db.pool.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('fsync')").Scan(&syncCommit, &fsync)
	if err != nil {
		return db.fail(ctx, "read settings", err)
	}
	if syncCommit == "off" {
		db.log.Warn("postgres: synchronous_commit is off: an acknowledged webhook could be lost if the database crashes",
			"schema", db.schema)
	}
	if fsync == "off" {
		db.log.Warn("postgres: fsync is off: an acknowledged webhook could be lost if the database host crashes",
			"schema", db.schema)
	}
	return nil
}

func defaultName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "statusbridge"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// channelName is the NOTIFY channel of a schema's outbox, kept within
// PostgreSQL's 63-byte identifiers (a longer one is shortened with a hash,
// the same in every replica).
func channelName(schema string) string {
	name := "statusbridge_" + schema + "_outbox"
	if len(name) <= 63 {
		return name
	}
	return fmt.Sprintf("statusbridge_%s_%08x_outbox", strings.ToValidUTF8(schema[:30], ""), uint32(hash32(schema)))
}

func hash32(s string) int32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int32(h.Sum32())
}

// Name returns the name this process claims deliveries under.
func (db *DB) Name() string { return db.opts.Name }

// Schema returns the schema holding the tables.
func (db *DB) Schema() string { return db.schema }

// Pool returns the connection pool (for statements of the caller's own, e.g.
// a sender election). Its connections' search_path is the schema.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// AdvisoryKey returns a two-int advisory lock key for name (e.g. "sender",
// for an election) in this schema: not one the store takes itself (its
// migrations, its orders) nor another schema's.
func (db *DB) AdvisoryKey(name string) (int32, int32) {
	return hash32("statusbridge lock " + name + " " + db.schema), 0
}

// Connect opens a dedicated connection with the pool's settings, for what
// must hold one connection for long (a session advisory lock, a LISTEN). The
// caller closes it. Errors wrap bridge.ErrUnavailable when the database
// cannot be reached, and never show the DSN's password.
func (db *DB) Connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, db.connCfg.Copy())
	if err != nil {
		return nil, db.fail(ctx, "connect", err)
	}
	return conn, nil
}

// Wake is signalled (without blocking) after this process commits a write
// that may queue deliveries, when another replica notifies one, and every
// Options.SweepInterval.
func (db *DB) Wake() <-chan struct{} { return db.wake }

func (db *DB) signal() {
	select {
	case db.wake <- struct{}{}:
	default:
	}
}

// Busy reports whether an ingest now would be refused (ErrOverloaded):
// Options.QueueSize ingests are in flight.
func (db *DB) Busy() bool { return db.inflight.Load() >= int64(db.opts.QueueSize) }

// Ping reports whether the database answers and takes writes (for
// /readyz): a standby (read-only after a failover) is not ready.
func (db *DB) Ping(ctx context.Context) error {
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	var standby bool
	err = db.pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby)
	if err != nil && unavailable(err) && ctx.Err() == nil {
		// A connection left from before a restart: the pool is reset; ask
		// once more, on a new one.
		db.resetPool(err)
		err = db.pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby)
	}
	if err != nil {
		return db.fail(ctx, "ping", err)
	}
	if standby {
		return fmt.Errorf("postgres: %w: the database is a read-only standby", bridge.ErrUnavailable)
	}
	return nil
}

// Close waits for the calls in progress, commits the delivery records
// queued by RecordAsync, stops listening and closes the pool.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	close(db.recq) // no sender left: they hold mu while sending
	close(db.claimq)
	db.mu.Unlock()
	db.recWG.Wait()
	close(db.stop)
	db.bg.Wait()
	db.pool.Close()
	db.async.Close()
	return nil
}

// enter admits a call unless the store is closed; release ends it.
func (db *DB) enter() (release func(), err error) {
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return nil, bridge.ErrClosed
	}
	return db.mu.RUnlock, nil
}

// fail wraps a database error with what was being done. A database that
// cannot be reached (no connection, a connection lost, the server shutting
// down or starting, a standby, no connection slot) wraps
// bridge.ErrUnavailable; the caller's own cancellation wraps its context
// error; anything else (a statement the server refused) wraps the pgx error.
// The DSN's passwords never appear in the text.
func (db *DB) fail(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("postgres: %s: %w", what, cerr)
	}
	if unavailable(err) {
		db.resetPool(err)
		return fmt.Errorf("postgres: %s: %w: %s", what, bridge.ErrUnavailable, scrub(err.Error(), db.secrets))
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// resetPool closes the pool's connections after one that was established
// broke (not a failure to connect): the server restarted or the network
// was cut, so the idle ones are dead too, and the next calls would each
// find one. The pool connects afresh.
func (db *DB) resetPool(err error) {
	var connErr *pgconn.ConnectError
	if db.pool == nil || errors.As(err, &connErr) {
		return
	}
	db.pool.Reset()
	db.async.Reset()
}

// unavailable reports whether err says the database cannot take the call
// now (rather than that it refused the statement, or a bug of ours).
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutting down, crashed, starting
			pgErr.Code == "53300", // too many connections
			pgErr.Code == "53100", // disk full
			pgErr.Code == "25006": // read-only transaction: a standby
			return true
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

// scrub replaces the DSN's passwords in s.
func scrub(s string, secrets []string) string {
	for _, p := range secrets {
		if p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	return s
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }
