// Package pgtest starts throwaway PostgreSQL servers for tests.
//
// A test that needs its own server (to stop it, crash it or start it again)
// calls Start; a test that only needs a database calls NewDatabase, which
// creates a fresh database on one server shared by the whole test binary
// (TestMain must call Main so that server is stopped at the end):
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.NewDatabase(t) // a fresh, empty database
//		...
//	}
//
// The binaries are taken from the highest /usr/lib/postgresql/<version>/bin,
// else from PATH. When they are missing the test is skipped with one line
// saying how to install them, except under CI=true, where it fails. Run as
// root, the server runs as the "postgres" system user (PostgreSQL refuses to
// run as root).
//
// Servers listen on a loopback TCP port and on a unix socket in their own
// temporary directory, with fsync and synchronous_commit left on (tests of
// durability stay honest) unless the NoSync option is given. The servers
// themselves are internal/pgserver's.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statusbridge/statusbridge/internal/pgserver"
)

// InstallHint is the one line a test is skipped (or, under CI, failed) with
// when PostgreSQL is not installed.
const InstallHint = "PostgreSQL is not installed (no postgres/initdb under /usr/lib/postgresql/*/bin or in PATH): install it with `apt-get install postgresql` to run this test"

// readyTimeout bounds creating and dropping a database.
const readyTimeout = 60 * time.Second

// Option changes how a server is started.
type Option func(*pgserver.Options)

// NoSync turns off fsync, synchronous_commit and full_page_writes: faster,
// but committed data may be lost if the machine (not the server) crashes.
// Never use it in a test that checks durability.
func NoSync() Option { return func(o *pgserver.Options) { o.NoSync = true } }

// Param sets a server parameter (postgres -c name=value), e.g.
// Param("max_connections", "300").
func Param(name, value string) Option {
	return func(o *pgserver.Options) { o.Params[name] = value }
}

// Server is one PostgreSQL server with its own data directory. Its address
// (DSN) stays the same across Stop and Start.
type Server struct {
	*pgserver.Server
	shared  bool
	dbCount atomic.Int64
}

// Start starts a server for this test only and stops it (and removes its
// files) when the test ends. Stop and Start on it simulate an outage.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := start(opts...)
	if err != nil {
		if errors.Is(err, pgserver.ErrNotInstalled) {
			missing(t)
			return nil // not reached: missing skips or fails t
		}
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.destroy(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

func start(opts ...Option) (*Server, error) {
	o := pgserver.Options{Params: map[string]string{}}
	for _, f := range opts {
		f(&o)
	}
	srv, err := pgserver.Start(o)
	if err != nil {
		return nil, err
	}
	return &Server{Server: srv}, nil
}

// Stop shuts the server down (fast shutdown: sessions are disconnected,
// committed data kept) and waits until it has exited. Stopping a stopped
// server does nothing. The shared server cannot be stopped.
func (s *Server) Stop() error {
	if s.shared {
		return errors.New("the shared server cannot be stopped: use pgtest.Start for a server of your own")
	}
	return s.Server.Stop()
}

// Crash stops the server the way a crash would: immediate shutdown (SIGQUIT),
// no checkpoint, so the next Start runs crash recovery from the WAL.
func (s *Server) Crash() error {
	if s.shared {
		return errors.New("the shared server cannot be crashed: use pgtest.Start for a server of your own")
	}
	return s.Server.Crash()
}

// destroy stops the server and removes its files.
func (s *Server) destroy() error {
	s.shared = false
	return s.Destroy()
}

// NewDatabase creates a fresh, empty database on s and returns its DSN. It
// is dropped when the test ends (unless the server is stopped by then).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbCount.Add(1), sanitize(t.Name()))
	if len(name) > 63 {
		name = name[:63]
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if !s.Running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		defer cancel()
		if err := s.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.DSNFor(name)
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

func sanitize(name string) string {
	return strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(name), "_"), "_")
}

// missing skips t, or fails it under CI=true.
func missing(t testing.TB) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(InstallHint + " (CI=true: a missing PostgreSQL is a failure)")
		return
	}
	t.Skip(InstallHint)
}
