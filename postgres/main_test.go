package postgres

import (
	"context"
	"flag"
	"os"
	"testing"

	"github.com/statusbridge/statusbridge/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openDSN opens a DB on dsn (closed when the test ends).
func openDSN(t testing.TB, dsn string, opts Options) *DB {
	t.Helper()
	opts.DSN = dsn
	db, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openTemp opens a DB on a fresh database of the shared server.
func openTemp(t testing.TB, opts Options) (*DB, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	return openDSN(t, dsn, opts), dsn
}

var benchConns = flag.Int("pgconns", 16, "BenchmarkIngest: the pool's MaxConns")
