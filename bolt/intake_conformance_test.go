package bolt

import (
	"path/filepath"
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
)

// TestIntakeConformance runs the order intake's conformance tests on a real
// bbolt file.
func TestIntakeConformance(t *testing.T) {
	backendtest.RunIntake(t, func(t *testing.T) (bridge.Backend, func(t *testing.T) bridge.Backend) {
		path := filepath.Join(t.TempDir(), "sb.db")
		open := func(t *testing.T) bridge.Backend {
			t.Helper()
			db, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			return db
		}
		return open(t), open
	})
}
