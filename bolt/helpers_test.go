package bolt

// Helpers of the bbolt-only tests that main's tests (feed, resolve) use:
// the shared tests moved to bridge/backendtest with the PostgreSQL backend.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/mapping"
)

const confirmed = "yqdwrbka7kz69v8e"

func testTable(t testing.TB, apiKey string) *mapping.Table {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { api_key: %q } }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }, x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed } } }
`, apiKey)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return mapping.New(cfg)
}

func ingestAt(t *testing.T, db *DB, tb *mapping.Table, ticket, order, status, at string, received time.Time) bridge.IngestResult {
	t.Helper()
	raw := fake.Update{TicketID: ticket, OrderID: order, StatusID: status, DateStatus: at}.Payload()
	ev, err := digishare.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bridge.Ingest(context.Background(), db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: received}, tb)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func incoming(t *testing.T, raw []byte) bridge.Incoming {
	t.Helper()
	ev, err := digishare.Decode(raw)
	in := bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}
	var se *digishare.ShapeError
	if errors.As(err, &se) {
		in.Invalid = se.Reason
	} else if err != nil {
		t.Fatal(err)
	}
	return in
}
