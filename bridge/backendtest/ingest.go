package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// IngestDispatchesAndKeepsPayload: a mapped update is stored with its
// payload byte for byte and one pending delivery, and wakes the worker.
func IngestDispatchesAndKeepsPayload(t *testing.T, f Factory) {
	b, _ := f(t)
	select { // a wake left by opening does not count
	case <-b.Wake():
	default:
	}
	raw := fake.Update{TicketID: "t1", OrderID: "ORDER-1", StatusID: Confirmed, DateStatus: "2026-01-13 16:29:51"}.Payload()
	res, err := bridge.Ingest(context.Background(), b, Incoming(t, raw), Table(t, "k"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicate || res.State != bridge.EventDispatched || len(res.Deliveries) != 1 {
		t.Fatalf("result = %+v", res)
	}
	select {
	case <-b.Wake():
	default:
		t.Error("a commit that created a delivery must wake the worker before Ingest returns")
	}
	ev, payload, err := b.GetEvent(context.Background(), res.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(payload, raw) {
		t.Error("payload not kept byte for byte")
	}
	if ev.OrderID != "1" || ev.TicketID != "t1" || ev.Name != "ticket.updated" || ev.State != bridge.EventDispatched ||
		len(ev.Decisions) != 1 || len(ev.DeliveryIDs) != 1 || ev.DeliveryIDs[0] != res.Deliveries[0].ID || len(ev.DedupKey) == 0 {
		t.Errorf("event = %+v", ev)
	}
	if d := ev.Decisions[0]; d.Outcome != bridge.EventDispatched || d.StatusID != Confirmed || d.StatusName != "Order Confirmed" ||
		d.ChangedAtText != "2026-01-13 16:29:51" || !d.ChangedAt.Equal(time.Date(2026, 1, 13, 16, 29, 51, 0, time.UTC)) {
		t.Errorf("decision = %+v", d)
	}
	p, err := b.PendingAfter(context.Background(), "", 10)
	if err != nil || len(p) != 1 || p[0].ID != res.Deliveries[0].ID || p[0].Status != "paid" || p[0].OrderID != "1" ||
		p[0].Target != "expertsender" || p[0].EventID != res.EventID || p[0].State != bridge.Pending || p[0].StatusID != Confirmed {
		t.Fatalf("pending = %+v, %v", p, err)
	}
	if more, err := b.PendingAfter(context.Background(), p[0].ID, 10); err != nil || len(more) != 0 {
		t.Errorf("PendingAfter(last) = %v, %v; want nothing", more, err)
	}
}

// IngestDuplicateStoresNothing: a repeat answers the first event's id and
// state and stores nothing new.
func IngestDuplicateStoresNothing(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	raw := fake.Update{TicketID: "t1", OrderID: "1", StatusID: Confirmed, DateStatus: "2026-01-13 16:29:51"}.Payload()
	first, err := bridge.Ingest(context.Background(), b, Incoming(t, raw), tb)
	if err != nil {
		t.Fatal(err)
	}
	again, err := bridge.Ingest(context.Background(), b, Incoming(t, raw), tb)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.EventID != first.EventID || again.State != bridge.EventDispatched || len(again.Deliveries) != 0 {
		t.Errorf("repeat = %+v, want duplicate of %s", again, first.EventID)
	}
	if st := stats(t, b); st.Events != 1 || st.Deliveries != 1 || st.Pending != 1 || st.Orders != 1 {
		t.Errorf("stats = %+v, want 1 event, 1 delivery pending, 1 order", st)
	}
}

// IngestInvalidAndSkipped: a body of the wrong shape is stored as invalid
// with the reason; a disabled target's delivery is recorded as skipped, not
// queued.
func IngestInvalidAndSkipped(t *testing.T, f Factory) {
	b, _ := f(t)
	raw := []byte(`{"event":"ticket.updated","data":{"id":5}}`)
	res, err := bridge.Ingest(context.Background(), b, Incoming(t, raw), Table(t, "k"))
	if err != nil || res.State != bridge.EventInvalid || res.Decision != nil {
		t.Fatalf("invalid: %+v, %v", res, err)
	}
	ev, payload, err := b.GetEvent(context.Background(), res.EventID)
	if err != nil || ev.Error == "" || ev.State != bridge.EventInvalid || string(payload) != string(raw) {
		t.Errorf("stored invalid event = %+v, %q, %v", ev, payload, err)
	}
	res, err = bridge.Ingest(context.Background(), b, Incoming(t, fake.Update{TicketID: "t", OrderID: "9", StatusID: Confirmed}.Payload()), Table(t, ""))
	if err != nil || len(res.Deliveries) != 1 || res.Deliveries[0].State != bridge.Skipped || res.Deliveries[0].Reason == "" {
		t.Fatalf("skipped: %+v, %v", res, err)
	}
	if d := getDelivery(t, b, res.Deliveries[0].ID); d.State != bridge.Skipped || d.Reason != res.Deliveries[0].Reason {
		t.Errorf("stored skipped delivery = %+v", d)
	}
	if p := pending(t, b); len(p) != 0 {
		t.Errorf("skipped delivery queued: %v", p)
	}
}

// IngestOrderStateAcrossEvents: the watermark makes an older update
// superseded, the same status again unchanged; a dead last delivery lets the
// same status be sent again.
func IngestOrderStateAcrossEvents(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	now := time.Now()
	if r := IngestAt(t, b, tb, "a", "7", Confirmed, "2026-01-13 10:00:00", now); r.State != bridge.EventDispatched {
		t.Fatalf("first = %v", r.State)
	}
	if r := IngestAt(t, b, tb, "b", "7", Confirmed, "2026-01-13 11:00:00", now); r.State != bridge.EventUnchanged {
		t.Errorf("same status again = %v, want unchanged", r.State)
	}
	if r := IngestAt(t, b, tb, "c", "7", Awaiting, "2026-01-13 09:00:00", now); r.State != bridge.EventSuperseded {
		t.Errorf("older update = %v, want superseded", r.State)
	}
	// The watermark moved to 11:00 with the unchanged update: 10:30 is older.
	if r := IngestAt(t, b, tb, "d", "7", Awaiting, "2026-01-13 10:30:00", now); r.State != bridge.EventSuperseded {
		t.Errorf("update older than the unchanged one = %v, want superseded", r.State)
	}
	// Equal timestamps are not superseded.
	if r := IngestAt(t, b, tb, "e", "7", Awaiting, "2026-01-13 11:00:00", now); r.State != bridge.EventDispatched {
		t.Errorf("update as new as the watermark = %v, want dispatched", r.State)
	}
	// Its delivery dies: the same status is sent again by a fresh update.
	p := pending(t, b)
	if len(p) != 2 || p[1].Status != "placed" {
		t.Fatalf("pending = %+v, want paid then placed", p)
	}
	record(t, b, p[1].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "test"})
	if r := IngestAt(t, b, tb, "f", "7", Awaiting, "2026-01-13 12:00:00", now); r.State != bridge.EventDispatched {
		t.Errorf("after dead delivery = %v, want dispatched", r.State)
	}
	if r := IngestAt(t, b, tb, "g", "7", Awaiting, "2026-01-13 12:30:00", now); r.State != bridge.EventUnchanged {
		t.Errorf("while the new delivery is pending = %v, want unchanged", r.State)
	}
}

// ConcurrentIngestsAreAllStored: concurrent ingests are each stored once,
// and what was acknowledged is there after reopening.
func ConcurrentIngestsAreAllStored(t *testing.T, f Factory) {
	b, reopen := f(t)
	tb := Table(t, "k")
	const n, orders = 100, 10 // below the default ingest queue of 128
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i % orders), StatusID: Confirmed,
				DateStatus: "2026-01-13 16:29:51"}.Payload()
			r, err := bridge.Ingest(context.Background(), b, Incoming(t, raw), tb)
			ids[i], errs[i] = r.EventID, err
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ingest %d: %v", i, errs[i])
		}
		seen[ids[i]] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct event ids, want %d", len(seen), n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = reopen(t)
	// Each order: the first event decided dispatched, the others unchanged.
	if st := stats(t, b); st.Events != n || st.Deliveries != orders || st.Pending != orders || st.Orders != orders {
		t.Errorf("after reopen: %+v", st)
	}
	dispatched := 0
	err := bridge.EachEvent(context.Background(), b, bridge.EventFilter{State: string(bridge.EventDispatched)}, func(*bridge.Event) { dispatched++ })
	if err != nil || dispatched != orders {
		t.Errorf("%d dispatched events (%v), want one per order (%d)", dispatched, err, orders)
	}
}

// ClosedStoreRefusesWrites: after Close, Ingest fails with ErrClosed.
func ClosedStoreRefusesWrites(t *testing.T, f Factory) {
	b, _ := f(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := bridge.Ingest(context.Background(), b, Incoming(t, fake.Update{TicketID: "t", OrderID: "1", StatusID: Confirmed}.Payload()), Table(t, "k"))
	if !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("Ingest after Close = %v, want bridge.ErrClosed", err)
	}
}

// NotFound: unknown and malformed ids are ErrNotFound.
func NotFound(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	for _, id := range []string{"01a20000-0000-7000-8000-000000000000", "not-an-id", ""} {
		if _, _, err := b.GetEvent(ctx, id); !errors.Is(err, bridge.ErrNotFound) {
			t.Errorf("GetEvent(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := b.GetDelivery(ctx, id); !errors.Is(err, bridge.ErrNotFound) {
			t.Errorf("GetDelivery(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := bridge.RetryDelivery(ctx, b, id, time.Now()); !errors.Is(err, bridge.ErrNotFound) {
			t.Errorf("RetryDelivery(%q) = %v, want ErrNotFound", id, err)
		}
	}
	err := b.View(ctx, func(tx bridge.Tx) error {
		if _, err := tx.Event("01a20000-0000-7000-8000-000000000000"); !errors.Is(err, bridge.ErrNotFound) {
			t.Errorf("tx.Event(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := tx.Delivery("01a20000-0000-7000-8000-000000000000"); !errors.Is(err, bridge.ErrNotFound) {
			t.Errorf("tx.Delivery(unknown) = %v, want ErrNotFound", err)
		}
		st, err := tx.OrderState("no-such-order")
		if err != nil || !st.Watermark.IsZero() || len(st.Targets) != 0 {
			t.Errorf("tx.OrderState(unknown) = %+v, %v; want the zero state", st, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
