package bolt

import (
	"path/filepath"
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
)

// TestConformance runs the backend conformance suite on a real bbolt file.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) (bridge.Backend, backendtest.Reopen) {
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
