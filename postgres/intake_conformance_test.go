package postgres

import (
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/internal/pgtest"
)

// TestIntakeConformance runs the order intake's conformance tests on a
// fresh database.
func TestIntakeConformance(t *testing.T) {
	backendtest.RunIntake(t, func(t *testing.T) (bridge.Backend, func(t *testing.T) bridge.Backend) {
		dsn := pgtest.NewDatabase(t)
		open := func(t *testing.T) bridge.Backend { return openDSN(t, dsn, Options{}) }
		return open(t), open
	})
}
