// Package storeopen opens the store a config names — the bbolt file or the
// PostgreSQL database — for serve and for the operator commands, so both
// open it the same way.
package storeopen

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/postgres"
)

// Options change how the store is opened; zero values suit serve.
type Options struct {
	Logger *slog.Logger
	// OnCommit is told each committed write transaction (metrics): its
	// writes, the pages it wrote (bbolt's group commits; 0 where the
	// backend does not know) and its duration.
	OnCommit func(writes, pages int, d time.Duration)
	// OnCommitter, when set, is told after each of a bbolt store's group
	// commits where its committer's time went since the previous one, and
	// of its idle time while it lasts, every 100 ms (PostgreSQL has no
	// committer: never called).
	OnCommitter func(CommitterTimes)
	// ReadOnly opens a bbolt file for reading only (PostgreSQL: ignored).
	ReadOnly bool
	// LockTimeout bounds the wait for a bbolt file's lock (default 1s).
	LockTimeout time.Duration
	// MaxConns, when positive, overrides store.postgres.max_conns (a
	// command needs few connections).
	MaxConns int
}

// CommitterTimes is where a bbolt group committer's time went from the end
// of one commit to the end of the next (bolt.CommitStats): waiting for a
// first write (Idle), waiting for more to share the commit (Linger),
// running the writes (Apply), bbolt encoding pages (Spill), writing and
// fdatasyncing them (Sync), and the rest of the commit (Rest: beginning the
// transaction, merging dedup keys, answering the callers).
type CommitterTimes struct {
	Idle, Linger, Apply, Spill, Sync, Rest time.Duration
}

// Open opens the store of cfg.Store. A bbolt file held by another process
// fails with an error wrapping bolt.ErrLocked; a database that cannot be
// reached, with one wrapping bridge.ErrUnavailable. No error shows the DSN's
// password.
func Open(ctx context.Context, cfg *config.Config, o Options) (bridge.Backend, error) {
	switch cfg.Store.Driver {
	case config.DriverPostgres:
		p := cfg.Store.Postgres
		if p == nil || p.DSN == "" {
			return nil, fmt.Errorf("store.driver is postgres but store.postgres.dsn is not set")
		}
		maxConns := p.MaxConns
		if o.MaxConns > 0 {
			maxConns = o.MaxConns
		}
		var onCommit func(int, time.Duration)
		if o.OnCommit != nil {
			onCommit = func(writes int, d time.Duration) { o.OnCommit(writes, 0, d) }
		}
		db, err := postgres.Open(ctx, postgres.Options{DSN: p.DSN, Schema: p.Schema, MaxConns: maxConns,
			Logger: o.Logger, OnCommit: onCommit})
		if err != nil {
			return nil, fmt.Errorf("open the PostgreSQL store %s: %w", config.RedactDSN(p.DSN), err)
		}
		return db, nil
	case config.DriverBbolt, "":
		var onCommit func(bolt.CommitStats)
		if o.OnCommit != nil || o.OnCommitter != nil {
			onCommit = func(c bolt.CommitStats) {
				if o.OnCommit != nil {
					o.OnCommit(c.Writes, c.Pages, c.Duration)
				}
				if o.OnCommitter != nil {
					o.OnCommitter(CommitterTimes{Idle: c.Idle, Linger: c.Linger, Apply: c.Apply, Spill: c.Spill, Sync: c.Sync,
						Rest: max(c.Duration-c.Apply-c.Spill-c.Sync, 0)})
				}
			}
		}
		var onIdle func(time.Duration)
		if o.OnCommitter != nil {
			onIdle = func(d time.Duration) { o.OnCommitter(CommitterTimes{Idle: d}) }
		}
		return bolt.Open(cfg.Store.Path, bolt.Options{Logger: o.Logger, OnCommit: onCommit, OnIdle: onIdle,
			ReadOnly: o.ReadOnly, LockTimeout: o.LockTimeout})
	}
	return nil, fmt.Errorf("store.driver %q: want bbolt or postgres", cfg.Store.Driver)
}

// Describe names the store for logs and messages: "bbolt <path>" or
// "postgres <DSN with its password redacted>" (and the schema).
func Describe(cfg *config.Config) string {
	if cfg.Store.Driver == config.DriverPostgres && cfg.Store.Postgres != nil {
		return fmt.Sprintf("postgres %s (schema %s)", config.RedactDSN(cfg.Store.Postgres.DSN), cfg.Store.Postgres.Schema)
	}
	return "bbolt " + cfg.Store.Path
}
