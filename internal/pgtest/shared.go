package pgtest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/statusbridge/statusbridge/internal/pgserver"
)

// The server shared by a test binary: started by the first Shared call,
// stopped by Main.
var shared struct {
	mu     sync.Mutex
	inMain bool
	srv    *Server
	err    error // the first start's error, repeated to every caller
}

// Main runs the tests of a binary that uses Shared or NewDatabase and then
// stops the shared server and removes its files. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		if err := shared.srv.destroy(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop the shared server:", err)
			if code == 0 {
				code = 1
			}
		}
		shared.srv = nil
	}
	return code
}

// Shared returns the server shared by every test of the binary, starting it
// on first use. It cannot be stopped or crashed (other tests use it): a test
// that needs an outage starts its own server with Start.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("pgtest: the shared server needs TestMain to call pgtest.Main, which stops it: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
		return nil
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = start()
		if shared.srv != nil {
			shared.srv.shared = true
		}
	}
	if shared.err != nil {
		if errors.Is(shared.err, pgserver.ErrNotInstalled) {
			missing(t)
			return nil
		}
		t.Fatalf("pgtest: start the shared server: %v", shared.err)
		return nil
	}
	return shared.srv
}

// NewDatabase creates a fresh, empty database on the shared server and
// returns its DSN (a postgres:// URL); it is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s := Shared(t)
	if s == nil {
		return "" // not reached: Shared skipped or failed t
	}
	return s.NewDatabase(t)
}
