package bolt

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/mapping"
)

func ingestAt(t *testing.T, db *DB, tb *mapping.Table, ticket, order, status, at string, received time.Time) bridge.IngestResult {
	t.Helper()
	in := incoming(t, fake.Update{TicketID: ticket, OrderID: order, StatusID: status, DateStatus: at}.Payload())
	in.ReceivedAt = received
	res, err := bridge.Ingest(context.Background(), db, in, tb)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestReplaySelectorsDryRunAndForce(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	now := time.Now()
	a := ingestAt(t, db, tb, "a", "1", confirmed, "2026-01-13 10:00:00", now.Add(-3*time.Hour))
	ingestAt(t, db, tb, "b", "2", confirmed, "2026-01-13 10:00:00", now.Add(-2*time.Hour))
	ingestAt(t, db, tb, "c", "2", "x9q3wrlv0m7vzea8", "2026-01-13 11:00:00", now.Add(-1*time.Hour))
	before, _ := db.Stats(context.Background())

	// Dry run: decisions reported, nothing written.
	sum, err := bridge.Replay(context.Background(), db, bridge.ReplaySelector{OrderID: "2"}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	// Order 2 already has "placed" (event c) live: replaying b (older) is superseded, c unchanged.
	if sum.Matched != 2 || sum.Superseded != 1 || sum.Unchanged != 1 || len(sum.Requests) != 0 || !sum.DryRun {
		t.Errorf("dry run by order = %+v", sum)
	}
	if after, _ := db.Stats(context.Background()); after != before {
		t.Errorf("dry run wrote: %+v → %+v", before, after)
	}
	// Force: both dispatched again, in event order.
	sum, err = bridge.Replay(context.Background(), db, bridge.ReplaySelector{OrderID: "2"}, tb, bridge.ReplayOptions{DryRun: true, Force: true}, now)
	if err != nil || sum.Dispatched != 2 || len(sum.Requests) != 2 || sum.Requests[0].Status != "paid" || sum.Requests[1].Status != "placed" {
		t.Errorf("forced dry run = %+v, %v", sum, err)
	}
	sum, err = bridge.Replay(context.Background(), db, bridge.ReplaySelector{OrderID: "2"}, tb, bridge.ReplayOptions{Force: true}, now)
	if err != nil || sum.Dispatched != 2 {
		t.Fatalf("forced replay = %+v, %v", sum, err)
	}
	ev, _, _ := db.GetEvent(context.Background(), a.EventID)
	if len(ev.Decisions) != 1 {
		t.Errorf("event of another order was replayed: %+v", ev.Decisions)
	}
	st, _ := db.Stats(context.Background())
	if st.Deliveries != before.Deliveries+2 {
		t.Errorf("deliveries %d, want %d", st.Deliveries, before.Deliveries+2)
	}
	// By time range (received), by ids, and the selector is required.
	sum, _ = bridge.Replay(context.Background(), db, bridge.ReplaySelector{Since: now.Add(-150 * time.Minute), Until: now.Add(-90 * time.Minute)}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 1 {
		t.Errorf("by time range matched %d, want 1", sum.Matched)
	}
	sum, _ = bridge.Replay(context.Background(), db, bridge.ReplaySelector{EventIDs: []string{a.EventID, "01a20000-0000-7000-8000-000000000000"}}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 2 || sum.Failed != 1 || sum.Unchanged != 1 {
		t.Errorf("by ids = %+v", sum)
	}
	sum, _ = bridge.Replay(context.Background(), db, bridge.ReplaySelector{State: string(bridge.EventUnchanged)}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 0 {
		t.Errorf("by state unchanged matched %d, want 0", sum.Matched)
	}
	sum, _ = bridge.Replay(context.Background(), db, bridge.ReplaySelector{State: string(bridge.EventDispatched), OrderID: "1"}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 1 || sum.Unchanged != 1 {
		t.Errorf("by state dispatched and order 1 = %+v", sum)
	}
	if _, err := bridge.Replay(context.Background(), db, bridge.ReplaySelector{}, tb, bridge.ReplayOptions{}, now); !errors.Is(err, bridge.ErrNoSelector) {
		t.Errorf("no selector: %v", err)
	}
	// Each replay appended a decision; the original is kept first, and the
	// rewritten event still has its payload byte for byte.
	evs, _, _ := db.ListEvents(context.Background(), bridge.EventFilter{OrderID: "2"})
	for _, ev := range evs {
		if len(ev.Decisions) != 2 || ev.Decisions[0].Outcome != bridge.EventDispatched {
			t.Errorf("event %s decisions = %+v", ev.ID, ev.Decisions)
		}
		_, payload, err := db.GetEvent(context.Background(), ev.ID)
		want := fake.Update{TicketID: ev.TicketID, OrderID: "2", StatusID: ev.Decisions[0].StatusID, DateStatus: ev.Decisions[0].ChangedAtText}.Payload()
		if err != nil || string(payload) != string(want) {
			t.Errorf("event %s payload after replay: %q (%v), want %q", ev.ID, payload, err, want)
		}
	}
}

func TestReplayDeadAndRetry(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	res := ingestAt(t, db, tb, "a", "1", confirmed, "2026-01-13 10:00:00", time.Now())
	id := res.Deliveries[0].ID
	if _, err := bridge.RetryDelivery(context.Background(), db, id, time.Now()); !errors.Is(err, bridge.ErrConflict) {
		t.Errorf("retry of a pending delivery: %v, want bridge.ErrConflict", err)
	}
	if err := db.Record(context.Background(), id, bridge.AttemptResult{State: bridge.Dead, Reason: "test"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	sum, err := bridge.Replay(context.Background(), db, bridge.ReplaySelector{Dead: true}, tb, bridge.ReplayOptions{}, time.Now())
	if err != nil || sum.Matched != 1 || sum.Dispatched != 1 || len(sum.Requests) != 1 {
		t.Fatalf("replay dead = %+v, %v", sum, err)
	}
	// The dead delivery was replaced by the replay: retrying it would send an
	// older delivery over the newer one.
	if _, err := bridge.RetryDelivery(context.Background(), db, id, time.Now()); !errors.Is(err, bridge.ErrConflict) {
		t.Errorf("retry of a replaced delivery: %v, want bridge.ErrConflict", err)
	}
	pending, _ := db.PendingAfter(context.Background(), "", 10)
	if len(pending) != 1 {
		t.Fatalf("pending = %v", pending)
	}
	if err := db.Record(context.Background(), pending[0].ID, bridge.AttemptResult{State: bridge.Dead}, time.Now()); err != nil {
		t.Fatal(err)
	}
	d, err := bridge.RetryDelivery(context.Background(), db, pending[0].ID, time.Now())
	if err != nil || d.State != bridge.Pending || d.Status != "paid" || d.ID == pending[0].ID {
		t.Fatalf("retry = %+v, %v", d, err)
	}
	ev, _, _ := db.GetEvent(context.Background(), res.EventID)
	if len(ev.DeliveryIDs) != 3 {
		t.Errorf("event delivery ids = %v, want the original, the replay's and the retry's", ev.DeliveryIDs)
	}
	if _, err := bridge.RetryDelivery(context.Background(), db, "01a20000-0000-7000-8000-000000000000", time.Now()); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("retry unknown: %v", err)
	}
}

func TestRedecideUnmapped(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	held := ingestAt(t, db, tb, "a", "1", "newstatus0000000", "2026-01-13 10:00:00", time.Now())
	other := ingestAt(t, db, tb, "b", "2", "otherstatus00000", "2026-01-13 10:00:00", time.Now())
	if held.State != bridge.EventUnmapped {
		t.Fatalf("state = %s", held.State)
	}
	cfg, err := config.Parse([]byte(`
targets: { expertsender: { api_key: k } }
mapping: { statuses: { newstatus0000000: { name: New, expertsender: shipped } } }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := bridge.RedecideUnmapped(context.Background(), db, []string{"newstatus0000000"}, mapping.New(cfg), time.Now())
	if err != nil || sum.Dispatched != 1 || sum.Matched != 1 {
		t.Fatalf("redecide = %+v, %v", sum, err)
	}
	ev, _, _ := db.GetEvent(context.Background(), held.EventID)
	if ev.State != bridge.EventDispatched || len(ev.Decisions) != 2 || ev.Decisions[0].Outcome != bridge.EventUnmapped {
		t.Errorf("held event after reload: %+v", ev)
	}
	if ev, _, _ := db.GetEvent(context.Background(), other.EventID); ev.State != bridge.EventUnmapped {
		t.Errorf("an event whose status is still unmapped was re-decided: %s", ev.State)
	}
}

func TestSweepKeepsPendingAndDropsDedup(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	old := time.Now().Add(-100 * 24 * time.Hour)
	var doneIDs []string
	for i := range 5 {
		r := ingestAt(t, db, tb, fmt.Sprint("old", i), fmt.Sprint(i), confirmed, "", old)
		if i > 0 { // the first stays pending
			if err := db.Record(context.Background(), r.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done}, time.Now()); err != nil {
				t.Fatal(err)
			}
			doneIDs = append(doneIDs, r.EventID)
		}
	}
	recent := ingestAt(t, db, tb, "new", "9", confirmed, "", time.Now())
	n, err := bridge.Sweep(context.Background(), db, time.Now().Add(-90*24*time.Hour))
	if err != nil || n != 4 {
		t.Fatalf("Sweep = %d, %v; want 4", n, err)
	}
	st, _ := db.Stats(context.Background())
	if st.Events != 2 || st.Deliveries != 2 || st.Pending != 2 {
		t.Errorf("after sweep: %+v (want the pending old event and the recent one)", st)
	}
	if _, _, err := db.GetEvent(context.Background(), doneIDs[0]); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("swept event still there: %v", err)
	}
	if _, _, err := db.GetEvent(context.Background(), recent.EventID); err != nil {
		t.Errorf("recent event swept: %v", err)
	}
	// The dedup key went with its event: the same payload is new again.
	again := ingestAt(t, db, tb, "old1", "1", confirmed, "", time.Now())
	if again.Duplicate {
		t.Error("dedup key outlived its event")
	}
}

func TestCompact(t *testing.T) {
	db, path := openTemp(t)
	tb := testTable(t, "k")
	for i := range 300 {
		ingestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), confirmed, "", time.Now().Add(-200*24*time.Hour))
	}
	if _, _, err := Compact(path, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("compact while open: %v, want ErrLocked", err)
	}
	pending, _ := db.PendingAfter(context.Background(), "", 1000)
	for _, d := range pending {
		_ = db.Record(context.Background(), d.ID, bridge.AttemptResult{State: bridge.Done}, time.Now())
	}
	if _, err := bridge.Sweep(context.Background(), db, time.Now()); err != nil {
		t.Fatal(err)
	}
	ingestAt(t, db, tb, "keep", "k", confirmed, "", time.Now())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, after, err := Compact(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Errorf("compact: %d → %d bytes, want smaller", before, after)
	}
	db2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if st, _ := db2.Stats(context.Background()); st.Events != 1 || st.Pending != 1 {
		t.Errorf("after compact: %+v", st)
	}
}
