package backendtest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// DoneRetryResolvesTheDead: a dead delivery retried by hand, or whose
// event is replayed, is marked resolved_by its successor once that is done,
// and leaves the default listings of dead deliveries and of events with a
// dead delivery.
func DoneRetryResolvesTheDead(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	ctx := context.Background()
	dead := func(id string) {
		t.Helper()
		record(t, b, id, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: HTTP 400"})
	}
	done := func(id string) {
		t.Helper()
		record(t, b, id, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200}})
	}
	listDead := func(all bool) []string {
		t.Helper()
		ds, _, err := b.ListDeliveries(ctx, bridge.DeliveryFilter{State: string(bridge.Dead), IncludeResolved: all})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.ID)
		}
		return ids
	}
	deadEvents := func(all bool) int {
		t.Helper()
		evs, _, err := b.ListEvents(ctx, bridge.EventFilter{DeliveryState: string(bridge.Dead), IncludeResolved: all})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	a := IngestAt(t, b, tb, "a", "1", Confirmed, "", time.Now())
	e := IngestAt(t, b, tb, "b", "2", Confirmed, "", time.Now())
	da, de := a.Deliveries[0].ID, e.Deliveries[0].ID
	dead(da)
	dead(de)
	if got := listDead(false); len(got) != 2 || deadEvents(false) != 2 {
		t.Fatalf("dead deliveries %v, events with one %d; want 2 and 2", got, deadEvents(false))
	}
	// a: retried by hand; the retry fails, is retried again, and that one is done.
	r1, err := bridge.RetryDelivery(ctx, b, da, time.Now())
	if err != nil || r1.RetryOf != da {
		t.Fatalf("retry = %+v %v", r1, err)
	}
	if got := getDelivery(t, b, r1.ID); got.RetryOf != da {
		t.Fatalf("the retry as stored: retry_of %q, want %s", got.RetryOf, da)
	}
	dead(r1.ID)
	r2, err := bridge.RetryDelivery(ctx, b, r1.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	done(r2.ID)
	for _, id := range []string{da, r1.ID} {
		if d := getDelivery(t, b, id); d.ResolvedBy != r2.ID {
			t.Errorf("delivery %s resolved_by %q, want %s", id, d.ResolvedBy, r2.ID)
		}
	}
	// e: its event is replayed; the replay's delivery is done.
	sum, err := bridge.Replay(ctx, b, bridge.ReplaySelector{EventIDs: []string{e.EventID}}, tb, bridge.ReplayOptions{}, time.Now())
	if err != nil || sum.Dispatched != 1 {
		t.Fatalf("replay = %+v %v", sum, err)
	}
	if got := listDead(false); len(got) != 1 || got[0] != de {
		t.Errorf("dead deliveries before the replay's is done = %v, want [%s]", got, de)
	}
	p := pending(t, b)
	if len(p) != 1 || p[0].RetryOf != de {
		t.Fatalf("the replay's delivery = %+v, want retry_of %s", p, de)
	}
	done(p[0].ID)
	if got := listDead(false); len(got) != 0 || deadEvents(false) != 0 {
		t.Errorf("after the successes: dead deliveries %v, events with one %d; want none", got, deadEvents(false))
	}
	if got := listDead(true); len(got) != 3 || deadEvents(true) != 2 {
		t.Errorf("with the resolved ones: %v and %d events, want 3 deliveries and 2 events", got, deadEvents(true))
	}
	if ds, _, _ := b.ListDeliveries(ctx, bridge.DeliveryFilter{OrderID: "2"}); len(ds) != 2 {
		t.Errorf("deliveries of order 2: %d, want 2", len(ds))
	}
	// The other delivery-state filters of events.
	for _, st := range []bridge.DeliveryState{bridge.Done, bridge.Pending, bridge.InFlight, bridge.Skipped} {
		want := map[bridge.DeliveryState]int{bridge.Done: 2}[st]
		evs, _, err := b.ListEvents(ctx, bridge.EventFilter{DeliveryState: string(st)})
		if err != nil || len(evs) != want {
			t.Errorf("events with a %s delivery: %d, %v; want %d", st, len(evs), err, want)
		}
	}
}

// DeliveryRoundTrip: a delivery with every stored field set (an attempt
// with the request it sent included) reads back equal, in a transaction
// and outside one, and after a record appends an attempt.
func DeliveryRoundTrip(t *testing.T, f Factory) {
	b, reopen := f(t)
	ctx := context.Background()
	ids := make([]string, 5)
	for i := range ids {
		id, err := bridge.NewID()
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	want := bridge.Delivery{
		ID: ids[0], EventID: ids[1], OrderID: "O-1", Target: "expertsender", Kind: bridge.KindStatus, IntakeID: ids[2],
		Status: "paid", StatusID: Confirmed, CreatedAt: at.Add(-time.Hour), State: bridge.Dead,
		Reason: "permanent failure: HTTP 400", Result: "already_active", Force: true,
		NextAttemptAt: at.Add(time.Minute), UpdatedAt: at,
		Attempts: []bridge.Attempt{
			{At: at.Add(-time.Minute), StatusCode: 503, Duration: 1234567 * time.Nanosecond, Error: "HTTP 503", Excerpt: "busy",
				Request: &bridge.SentRequest{Method: "POST", URL: "https://api.example/v2/orders?x=1",
					Headers: map[string]string{"Content-Type": "application/json", "Authorization": "[redacted]"},
					Body:    `{"order":"O-1"}`, BodySize: 9000}},
			{At: at, StatusCode: 400, Duration: time.Second, Error: "HTTP 400", Excerpt: "bad"},
		},
		RetryOf: ids[3], ResolvedBy: ids[4],
	}
	err := b.Update(ctx, bridge.UpdateOptions{}, func(tx bridge.Tx) error { return tx.PutDelivery(&want) })
	if err != nil {
		t.Fatal(err)
	}
	same := func(what string, got *bridge.Delivery) {
		t.Helper()
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", what, *got, want)
		}
	}
	same("GetDelivery", getDelivery(t, b, want.ID))
	var inTx *bridge.Delivery
	if err := b.View(ctx, func(tx bridge.Tx) error {
		var err error
		inTx, err = tx.Delivery(want.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	same("Tx.Delivery", inTx)
	ds, _, err := b.ListDeliveries(ctx, bridge.DeliveryFilter{State: string(bridge.Dead), IncludeResolved: true})
	if err != nil || len(ds) != 1 {
		t.Fatalf("listed: %v, %v", ds, err)
	}
	same("ListDeliveries", &ds[0])
	if ds, _, _ := b.ListDeliveries(ctx, bridge.DeliveryFilter{State: string(bridge.Dead)}); len(ds) != 0 {
		t.Errorf("a resolved dead delivery listed by default: %v", ds)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = reopen(t)
	same("after reopening", getDelivery(t, b, want.ID))

	// A record appends an attempt (its request too) and keeps the rest.
	next := bridge.Attempt{At: at.Add(time.Second), StatusCode: 200, Duration: 5 * time.Millisecond,
		Request: &bridge.SentRequest{Method: "PUT", URL: "https://api.example/x", Body: "b"}}
	want.State, want.Result, want.NextAttemptAt, want.UpdatedAt = bridge.Pending, "already_active", at.Add(time.Hour), at.Add(time.Second)
	if err := b.Record(ctx, want.ID, bridge.AttemptResult{Attempt: &next, State: bridge.Pending, NextAttemptAt: want.NextAttemptAt}, want.UpdatedAt); err != nil {
		t.Fatal(err)
	}
	want.Attempts = append(want.Attempts, next)
	same("after a record", getDelivery(t, b, want.ID))
}
