package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/statusbridge/statusbridge/internal/pgserver"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx(t), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestStartServesTCPAndSocket(t *testing.T) {
	t.Parallel()
	s := Start(t)
	for _, dsn := range []string{s.DSN(), s.SocketDSN()} {
		conn := connect(t, dsn)
		if got := queryString(t, conn, "SELECT current_user"); got != "postgres" {
			t.Errorf("current_user over %s = %q, want postgres", dsn, got)
		}
		// Durability is on unless NoSync is asked for.
		if got := queryString(t, conn, "SHOW fsync"); got != "on" {
			t.Errorf("fsync = %q, want on", got)
		}
		if got := queryString(t, conn, "SHOW synchronous_commit"); got != "on" {
			t.Errorf("synchronous_commit = %q, want on", got)
		}
	}
	if len(s.Dir())+len("/.s.PGSQL.00000") > 107 {
		t.Errorf("socket path under %s is longer than 107 bytes", s.Dir())
	}
}

func TestNoSyncOption(t *testing.T) {
	t.Parallel()
	s := Start(t, NoSync(), Param("work_mem", "8MB"))
	conn := connect(t, s.DSN())
	if got := queryString(t, conn, "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %q with NoSync, want off", got)
	}
	if got := queryString(t, conn, "SHOW work_mem"); got != "8MB" {
		t.Errorf("work_mem = %q, want the Param 8MB", got)
	}
}

func TestDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatalf("two NewDatabase calls returned the same DSN %s", a)
	}
	pool, err := pgxpool.New(ctx(t), a)
	if err != nil {
		t.Fatalf("pgxpool.New(%s): %v", a, err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx(t), "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)"); err != nil {
		t.Fatalf("create table in a: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx(t), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count in a = %d, %v; want 1", n, err)
	}
	connB := connect(t, b)
	var exists bool
	if err := connB.QueryRow(ctx(t), "SELECT to_regclass('items') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("table items created in %s is visible in %s", a, b)
	}
	if da, db := queryString(t, connect(t, a), "SELECT current_database()"), queryString(t, connB, "SELECT current_database()"); da == db {
		t.Errorf("both DSNs reach database %q", da)
	}
}

func TestDatabaseIsDroppedAfterTest(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("uses a database", func(t *testing.T) {
		name = queryString(t, connect(t, NewDatabase(t)), "SELECT current_database()")
	})
	var exists bool
	conn := connect(t, Shared(t).DSN())
	if err := conn.QueryRow(ctx(t), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestStopStartKeepsDataAndAddress(t *testing.T) {
	t.Parallel()
	s := Start(t)
	dsn := s.NewDatabase(t)
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx(t), "CREATE TABLE kv (k text PRIMARY KEY, v text); INSERT INTO kv VALUES ('a', 'kept')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if s.Running() {
		t.Fatal("Running() = true after Stop")
	}
	if err := conn.Ping(ctx(t)); err == nil {
		t.Fatal("a connection still answers after Stop")
	}
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := pgx.Connect(short, dsn); err == nil {
		c.Close(short)
		t.Fatal("connect succeeded while the server is stopped")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("a second Stop = %v, want nil", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start on a running server succeeded")
	}
	if got := queryString(t, connect(t, dsn), "SELECT v FROM kv WHERE k = 'a'"); got != "kept" {
		t.Errorf("after restart kv[a] = %q, want kept", got)
	}
}

func TestCrashKeepsCommittedData(t *testing.T) {
	t.Parallel()
	s := Start(t)
	dsn := s.NewDatabase(t)
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx(t), "CREATE TABLE kv (k int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := conn.Exec(ctx(t), "INSERT INTO kv VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Crash(); err != nil {
		t.Fatalf("Crash: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start after crash: %v", err)
	}
	var n int
	if err := connect(t, dsn).QueryRow(ctx(t), "SELECT count(*) FROM kv").Scan(&n); err != nil || n != 50 {
		t.Errorf("after crash recovery count = %d, %v; want 50 committed rows", n, err)
	}
	log, _ := os.ReadFile(s.LogFile())
	if !strings.Contains(string(log), "not properly shut down") {
		t.Errorf("the log does not show crash recovery (was the shutdown immediate?):\n%s", log)
	}
}

func TestSharedServerCannotBeStopped(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	if err := s.Stop(); err == nil {
		t.Fatal("Stop on the shared server succeeded")
	}
	if !s.Running() {
		t.Fatal("the shared server is not running")
	}
}

func TestCleanupStopsServerAndRemovesFiles(t *testing.T) {
	t.Parallel()
	var s *Server
	t.Run("server", func(t *testing.T) { s = Start(t) })
	if s.Running() {
		t.Error("server still running after its test ended")
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s after the test = %v, want it removed", s.Dir(), err)
	}
}

// recorder is a testing.TB that records Skip and Fatal instead of ending the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...) }
func (r *recorder) Fatalf(f string, args ...any) {
	r.failed = fmt.Sprintf(f, args...)
}

func TestMissingPostgresSkipsOrFailsUnderCI(t *testing.T) {
	// Not parallel: it changes pgserver.BinGlob and PATH.
	old := pgserver.BinGlob
	pgserver.BinGlob = t.TempDir() + "/*/bin"
	defer func() { pgserver.BinGlob = old }()
	t.Setenv("PATH", t.TempDir())

	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		if s := Start(r); s != nil {
			t.Fatalf("CI=%q: Start returned a server without PostgreSQL", ci)
		}
		got, other := r.skipped, r.failed
		if ci == "true" {
			got, other = r.failed, r.skipped
		}
		if !strings.Contains(got, "apt-get install postgresql") || strings.Contains(got, "\n") || other != "" {
			t.Errorf("CI=%q: skipped %q, failed %q; want one line naming apt-get install postgresql, and %s", ci, r.skipped, r.failed,
				map[string]string{"": "a skip", "true": "a failure"}[ci])
		}
	}
}
