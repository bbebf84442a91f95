// Package backendtest is the conformance suite of bridge.Backend: the
// behaviour every store backend must show, written once. A backend's tests
// run it with a factory of fresh stores:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) (bridge.Backend, backendtest.Reopen) { … })
//	}
//
// Tests of one backend's own concerns (a file format, a server outage) stay
// with that backend.
package backendtest

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

// Factory opens a fresh, empty store for one test, closed (again) when the
// test ends, and returns it with a Reopen of the same store.
type Factory func(t *testing.T) (bridge.Backend, Reopen)

// Reopen opens the store a Factory made again, after the test closed it;
// it is closed when the test ends.
type Reopen func(t *testing.T) bridge.Backend

// Test is one conformance test.
type Test struct {
	Name string
	Fn   func(t *testing.T, f Factory)
}

// Tests lists the conformance tests.
var Tests = []Test{
	{"IngestDispatchesAndKeepsPayload", IngestDispatchesAndKeepsPayload},
	{"IngestDuplicateStoresNothing", IngestDuplicateStoresNothing},
	{"IngestInvalidAndSkipped", IngestInvalidAndSkipped},
	{"IngestOrderStateAcrossEvents", IngestOrderStateAcrossEvents},
	{"ConcurrentIngestsAreAllStored", ConcurrentIngestsAreAllStored},
	{"RecordAttempts", RecordAttempts},
	{"RecordAsyncAndClose", RecordAsyncAndClose},
	{"ClosedStoreRefusesWrites", ClosedStoreRefusesWrites},
	{"NotFound", NotFound},
	{"PendingInLaneOrder", PendingInLaneOrder},
	{"PendingByTarget", PendingByTarget},
	{"ClaimsShowInFlight", ClaimsShowInFlight},
	{"TriggeredKeys", TriggeredKeys},
	{"ListingsPageSizeAndCursor", ListingsPageSizeAndCursor},
	{"ListingFilters", ListingFilters},
	{"EachWalksEveryRecord", EachWalksEveryRecord},
	{"ReplaySelectorsDryRunAndForce", ReplaySelectorsDryRunAndForce},
	{"ReplayDeadAndRetry", ReplayDeadAndRetry},
	{"RedecideUnmapped", RedecideUnmapped},
	{"SweepKeepsPendingAndDropsDedup", SweepKeepsPendingAndDropsDedup},
	{"DeliveryRoundTrip", DeliveryRoundTrip},
	{"DoneRetryResolvesTheDead", DoneRetryResolvesTheDead},
	{"StatusFilter", StatusFilter},
	{"CountersFollowEveryStateChange", CountersFollowEveryStateChange},
	{"CountersUnderConcurrentWrites", CountersUnderConcurrentWrites},
	{"JobsAndActions", JobsAndActions},
	{"ChangesFeed", ChangesFeed},
}

// Run runs every conformance test as a subtest of t.
func Run(t *testing.T, f Factory) {
	for _, tc := range Tests {
		t.Run(tc.Name, func(t *testing.T) { tc.Fn(t, f) })
	}
}

// Status ids of Table's mapping.
const (
	Confirmed = "yqdwrbka7kz69v8e" // "paid" for expertsender
	Awaiting  = "x9q3wrlv0m7vzea8" // "placed"
)

// Table is a mapping with one target, expertsender (disabled when apiKey is
// empty: its deliveries are skipped), order ids with "ORDER-" stripped.
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

// Incoming decodes raw as the receiver does (a body of the wrong shape is
// stored as invalid), received now.
func Incoming(t testing.TB, raw []byte) bridge.Incoming {
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

// IngestAt ingests an update of order to status (Digishare timestamp at,
// "" for none), received at received.
func IngestAt(t testing.TB, b bridge.Backend, tb bridge.Decider, ticket, order, status, at string, received time.Time) bridge.IngestResult {
	t.Helper()
	in := Incoming(t, fake.Update{TicketID: ticket, OrderID: order, StatusID: status, DateStatus: at}.Payload())
	in.ReceivedAt = received
	res, err := bridge.Ingest(context.Background(), b, in, tb)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func stats(t *testing.T, b bridge.Backend) bridge.Stats {
	t.Helper()
	st, err := b.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func pending(t *testing.T, b bridge.Backend) []bridge.Delivery {
	t.Helper()
	p, err := b.PendingAfter(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func record(t *testing.T, b bridge.Backend, id string, r bridge.AttemptResult) {
	t.Helper()
	if err := b.Record(context.Background(), id, r, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func getDelivery(t *testing.T, b bridge.Backend, id string) *bridge.Delivery {
	t.Helper()
	d, err := b.GetDelivery(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
