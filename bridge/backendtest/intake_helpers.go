package backendtest

// Helpers the intake conformance tests share with the suite of
// backendtest.go (on the postgres branch); this file goes when that one
// arrives.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/mapping"
)

// Status ids of Table's mapping.
const (
	Confirmed = "yqdwrbka7kz69v8e" // "paid" for expertsender
	Awaiting  = "x9q3wrlv0m7vzea8" // "placed"
)

// Table is a mapping with one target, expertsender, order ids with
// "ORDER-" stripped.
func Table(t testing.TB, apiKey string) *mapping.Table {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { api_key: %q } }
mapping: { statuses: { %s: { name: Order Confirmed, expertsender: paid }, %s: { name: Awaiting, expertsender: placed } } }
`, apiKey, Confirmed, Awaiting)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return mapping.New(cfg)
}

// IngestAt ingests an update of order to status (Digishare timestamp at).
func IngestAt(t testing.TB, b bridge.Backend, tb bridge.Decider, ticket, order, status, at string, received time.Time) bridge.IngestResult {
	t.Helper()
	raw := fake.Update{TicketID: ticket, OrderID: order, StatusID: status, DateStatus: at}.Payload()
	ev, err := digishare.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bridge.Ingest(context.Background(), b, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: received}, tb)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
