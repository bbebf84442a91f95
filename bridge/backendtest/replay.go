package backendtest

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

// ReplaySelectorsDryRunAndForce: a dry run decides and writes nothing; a
// forced replay dispatches again in event order; every selector selects
// what it says; a replay appends a decision and keeps the payload.
func ReplaySelectorsDryRunAndForce(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	tb := Table(t, "k")
	now := time.Now()
	a := IngestAt(t, b, tb, "a", "1", Confirmed, "2026-01-13 10:00:00", now.Add(-3*time.Hour))
	IngestAt(t, b, tb, "b", "2", Confirmed, "2026-01-13 10:00:00", now.Add(-2*time.Hour))
	IngestAt(t, b, tb, "c", "2", Awaiting, "2026-01-13 11:00:00", now.Add(-1*time.Hour))
	before := stats(t, b)

	// Dry run: decisions reported, nothing written.
	sum, err := bridge.Replay(ctx, b, bridge.ReplaySelector{OrderID: "2"}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	// Order 2 already has "placed" (event c) live: replaying b (older) is superseded, c unchanged.
	if sum.Matched != 2 || sum.Superseded != 1 || sum.Unchanged != 1 || len(sum.Requests) != 0 || !sum.DryRun {
		t.Errorf("dry run by order = %+v", sum)
	}
	if after := stats(t, b); after != before {
		t.Errorf("dry run wrote: %+v → %+v", before, after)
	}
	// Force: both dispatched again, in event order.
	sum, err = bridge.Replay(ctx, b, bridge.ReplaySelector{OrderID: "2"}, tb, bridge.ReplayOptions{DryRun: true, Force: true}, now)
	if err != nil || sum.Dispatched != 2 || len(sum.Requests) != 2 || sum.Requests[0].Status != "paid" || sum.Requests[1].Status != "placed" {
		t.Errorf("forced dry run = %+v, %v", sum, err)
	}
	sum, err = bridge.Replay(ctx, b, bridge.ReplaySelector{OrderID: "2"}, tb, bridge.ReplayOptions{Force: true}, now)
	if err != nil || sum.Dispatched != 2 || len(sum.Requests) != 2 || sum.Requests[0].Status != "paid" || sum.Requests[1].Status != "placed" {
		t.Fatalf("forced replay = %+v, %v", sum, err)
	}
	if ev, _, _ := b.GetEvent(ctx, a.EventID); len(ev.Decisions) != 1 {
		t.Errorf("event of another order was replayed: %+v", ev.Decisions)
	}
	if st := stats(t, b); st.Deliveries != before.Deliveries+2 {
		t.Errorf("deliveries %d, want %d", st.Deliveries, before.Deliveries+2)
	}
	// The forced deliveries are queued in the replay's order, forced.
	p := pending(t, b)
	var forced []string
	for _, d := range p {
		if d.Force {
			forced = append(forced, d.Status)
		}
	}
	if fmt.Sprint(forced) != "[paid placed]" {
		t.Errorf("forced pending deliveries = %v, want [paid placed]", forced)
	}
	// By time range (received), by ids, by state, and the selector is required.
	sum, _ = bridge.Replay(ctx, b, bridge.ReplaySelector{Since: now.Add(-150 * time.Minute), Until: now.Add(-90 * time.Minute)}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 1 {
		t.Errorf("by time range matched %d, want 1", sum.Matched)
	}
	sum, _ = bridge.Replay(ctx, b, bridge.ReplaySelector{EventIDs: []string{a.EventID, "01a20000-0000-7000-8000-000000000000"}}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 2 || sum.Failed != 1 || sum.Unchanged != 1 {
		t.Errorf("by ids = %+v", sum)
	}
	sum, _ = bridge.Replay(ctx, b, bridge.ReplaySelector{State: string(bridge.EventUnchanged)}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 0 {
		t.Errorf("by state unchanged matched %d, want 0", sum.Matched)
	}
	sum, _ = bridge.Replay(ctx, b, bridge.ReplaySelector{State: string(bridge.EventDispatched), OrderID: "1"}, tb, bridge.ReplayOptions{DryRun: true}, now)
	if sum.Matched != 1 || sum.Unchanged != 1 {
		t.Errorf("by state dispatched and order 1 = %+v", sum)
	}
	if _, err := bridge.Replay(ctx, b, bridge.ReplaySelector{}, tb, bridge.ReplayOptions{}, now); !errors.Is(err, bridge.ErrNoSelector) {
		t.Errorf("no selector: %v", err)
	}
	// Each replay appended a decision; the original is kept first, and the
	// rewritten event still has its payload byte for byte.
	evs, _, _ := b.ListEvents(ctx, bridge.EventFilter{OrderID: "2"})
	if len(evs) != 2 {
		t.Fatalf("events of order 2: %d", len(evs))
	}
	for _, ev := range evs {
		if len(ev.Decisions) != 2 || ev.Decisions[0].Outcome != bridge.EventDispatched || len(ev.DeliveryIDs) != 2 {
			t.Errorf("event %s decisions = %+v, deliveries %v", ev.ID, ev.Decisions, ev.DeliveryIDs)
		}
		_, payload, err := b.GetEvent(ctx, ev.ID)
		want := fake.Update{TicketID: ev.TicketID, OrderID: "2", StatusID: ev.Decisions[0].StatusID, DateStatus: ev.Decisions[0].ChangedAtText}.Payload()
		if err != nil || string(payload) != string(want) {
			t.Errorf("event %s payload after replay: %q (%v), want %q", ev.ID, payload, err, want)
		}
	}
}

// ReplayDeadAndRetry: a dead delivery is replayed by --dead and retried
// only while it is the last of its lane (409 otherwise).
func ReplayDeadAndRetry(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	tb := Table(t, "k")
	res := IngestAt(t, b, tb, "a", "1", Confirmed, "2026-01-13 10:00:00", time.Now())
	id := res.Deliveries[0].ID
	if _, err := bridge.RetryDelivery(ctx, b, id, time.Now()); !errors.Is(err, bridge.ErrConflict) {
		t.Errorf("retry of a pending delivery: %v, want bridge.ErrConflict", err)
	}
	record(t, b, id, bridge.AttemptResult{State: bridge.Dead, Reason: "test"})
	sum, err := bridge.Replay(ctx, b, bridge.ReplaySelector{Dead: true}, tb, bridge.ReplayOptions{}, time.Now())
	if err != nil || sum.Matched != 1 || sum.Dispatched != 1 || len(sum.Requests) != 1 {
		t.Fatalf("replay dead = %+v, %v", sum, err)
	}
	// The dead delivery was replaced by the replay: retrying it would send an
	// older delivery over the newer one.
	if _, err := bridge.RetryDelivery(ctx, b, id, time.Now()); !errors.Is(err, bridge.ErrConflict) {
		t.Errorf("retry of a replaced delivery: %v, want bridge.ErrConflict", err)
	}
	p := pending(t, b)
	if len(p) != 1 {
		t.Fatalf("pending = %v", p)
	}
	record(t, b, p[0].ID, bridge.AttemptResult{State: bridge.Dead})
	d, err := bridge.RetryDelivery(ctx, b, p[0].ID, time.Now())
	if err != nil || d.State != bridge.Pending || d.Status != "paid" || d.ID == p[0].ID || d.Reason != "retry of "+p[0].ID {
		t.Fatalf("retry = %+v, %v", d, err)
	}
	if p := pending(t, b); len(p) != 1 || p[0].ID != d.ID {
		t.Errorf("pending after retry = %v, want the retry %s", p, d.ID)
	}
	ev, _, _ := b.GetEvent(ctx, res.EventID)
	if len(ev.DeliveryIDs) != 3 || ev.DeliveryIDs[2] != d.ID {
		t.Errorf("event delivery ids = %v, want the original, the replay's and the retry's", ev.DeliveryIDs)
	}
	// The order now names the retry: a fresh update with the same status is unchanged.
	if r := IngestAt(t, b, tb, "b", "1", Confirmed, "2026-01-13 11:00:00", time.Now()); r.State != bridge.EventUnchanged {
		t.Errorf("update after the retry = %s, want unchanged", r.State)
	}
}

// RedecideUnmapped: after a mapping reload, events held unmapped whose
// status gained an entry are decided again; the others stay held.
func RedecideUnmapped(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	held := IngestAt(t, b, tb, "a", "1", "newstatus0000000", "2026-01-13 10:00:00", time.Now())
	other := IngestAt(t, b, tb, "b", "2", "otherstatus00000", "2026-01-13 10:00:00", time.Now())
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
	next := mapping.New(cfg)
	sum, err := bridge.RedecideUnmapped(context.Background(), b, []string{"newstatus0000000"}, next, time.Now())
	if err != nil || sum.Dispatched != 1 || sum.Matched != 1 {
		t.Fatalf("redecide = %+v, %v", sum, err)
	}
	ev, _, _ := b.GetEvent(context.Background(), held.EventID)
	if ev.State != bridge.EventDispatched || len(ev.Decisions) != 2 || ev.Decisions[0].Outcome != bridge.EventUnmapped || len(ev.DeliveryIDs) != 1 {
		t.Errorf("held event after reload: %+v", ev)
	}
	if ev, _, _ := b.GetEvent(context.Background(), other.EventID); ev.State != bridge.EventUnmapped {
		t.Errorf("an event whose status is still unmapped was re-decided: %s", ev.State)
	}
	// A second reload of the same mapping (another replica's) decides nothing again.
	sum, err = bridge.RedecideUnmapped(context.Background(), b, []string{"newstatus0000000"}, next, time.Now())
	if err != nil || sum.Dispatched != 0 || sum.Matched != 0 {
		t.Errorf("second redecide = %+v, %v; want nothing", sum, err)
	}
}

// SweepKeepsPendingAndDropsDedup: retention deletes old finished events with
// their deliveries and dedup keys, keeps one with a pending delivery and
// recent ones, and keeps order states.
func SweepKeepsPendingAndDropsDedup(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	tb := Table(t, "k")
	old := time.Now().Add(-100 * 24 * time.Hour)
	var doneIDs []string
	var keptPending string
	for i := range 5 {
		r := IngestAt(t, b, tb, fmt.Sprint("old", i), fmt.Sprint(i), Confirmed, "", old)
		if i > 0 { // the first stays pending
			record(t, b, r.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done})
			doneIDs = append(doneIDs, r.EventID)
		} else {
			keptPending = r.EventID
		}
	}
	recent := IngestAt(t, b, tb, "new", "9", Confirmed, "", time.Now())
	n, err := bridge.Sweep(ctx, b, time.Now().Add(-90*24*time.Hour))
	if err != nil || n != 4 {
		t.Fatalf("Sweep = %d, %v; want 4", n, err)
	}
	if st := stats(t, b); st.Events != 2 || st.Deliveries != 2 || st.Pending != 2 || st.Orders != 6 {
		t.Errorf("after sweep: %+v (want the pending old event and the recent one; every order state)", st)
	}
	for _, id := range doneIDs {
		if _, _, err := b.GetEvent(ctx, id); !errors.Is(err, bridge.ErrNotFound) {
			t.Errorf("swept event %s still there: %v", id, err)
		}
	}
	for _, id := range []string{keptPending, recent.EventID} {
		if _, _, err := b.GetEvent(ctx, id); err != nil {
			t.Errorf("event %s swept: %v", id, err)
		}
	}
	// The dedup key went with its event: the same payload is new again.
	if again := IngestAt(t, b, tb, "old1", "1", Confirmed, "", time.Now()); again.Duplicate {
		t.Error("dedup key outlived its event")
	}
	// The kept one's key is still there.
	if again := IngestAt(t, b, tb, "old0", "0", Confirmed, "", time.Now()); !again.Duplicate || again.EventID != keptPending {
		t.Errorf("repeat of the kept event = %+v, want a duplicate of %s", again, keptPending)
	}
}
