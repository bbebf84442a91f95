package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Leader elects the deployment's sender: the replica that holds a
// session-level advisory lock, on a connection of its own, sends; the others
// wait. A sender that dies releases the lock with its connection, and one of
// the others takes it within a third of the failover time; a sender whose
// connection fails a check gives the role up at once.
type Leader struct {
	dsn   string
	key   int64
	every time.Duration // how often a follower tries, and a leader checks its connection
	log   *slog.Logger
}

// NewLeader returns the election for schema's deployment. failover is how
// soon a new sender takes over.
func NewLeader(dsn, schema string, failover time.Duration, log *slog.Logger) *Leader {
	h := fnv.New64a()
	_, _ = h.Write([]byte("statusbridge sender " + schema))
	return &Leader{dsn: dsn, key: int64(h.Sum64() >> 1), every: max(failover/3, 100*time.Millisecond), log: log}
}

// Acquire blocks until this process is the sender or ctx ends. lost is
// closed when it no longer is (its connection failed a check); release gives
// the role up.
func (l *Leader) Acquire(ctx context.Context) (lost <-chan struct{}, release func(), err error) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-t.C:
		}
		conn, ok, err := l.try(ctx)
		if err != nil && ctx.Err() == nil {
			l.log.Debug("sender election: database not reachable", "err", err)
		}
		if ok {
			return l.hold(conn)
		}
		t.Reset(l.every)
	}
}

// try connects and asks for the lock; the connection is kept when it was
// granted.
func (l *Leader) try(ctx context.Context) (*pgx.Conn, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, l.every)
	defer cancel()
	cfg, err := pgx.ParseConfig(l.dsn)
	if err != nil {
		return nil, false, errors.New("postgres: sender election: the DSN does not parse")
	}
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: sender election: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(cctx, "SELECT pg_try_advisory_lock($1)", l.key).Scan(&ok); err != nil || !ok {
		_ = conn.Close(context.Background())
		if err != nil {
			return nil, false, fmt.Errorf("postgres: sender election: %w", err)
		}
		return nil, false, nil
	}
	return conn, true, nil
}

// hold checks the connection that holds the lock until it fails or the role
// is released.
func (l *Leader) hold(conn *pgx.Conn) (<-chan struct{}, func(), error) {
	lost := make(chan struct{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = conn.Close(context.Background()) }()
		t := time.NewTicker(l.every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				ctx, cancel := context.WithTimeout(context.Background(), l.every)
				_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.key)
				cancel()
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), l.every)
				err := conn.Ping(ctx)
				cancel()
				if err != nil {
					l.log.Warn("sender election: lost the database connection; stopped sending", "err", err)
					close(lost)
					return
				}
			}
		}
	}()
	var once sync.Once
	release := func() { once.Do(func() { close(stop); <-done }) }
	return lost, release, nil
}
