package postgres

import (
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/internal/pgtest"
)

// TestConformance runs the backend conformance suite on a fresh database.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) (bridge.Backend, backendtest.Reopen) {
		dsn := pgtest.NewDatabase(t)
		open := func(t *testing.T) bridge.Backend { return openDSN(t, dsn, Options{}) }
		return open(t), open
	})
}
