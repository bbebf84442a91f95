package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/mapping"
)

// TestTakeOverReleasesOtherSendersClaims: a delivery claimed by a sender
// that died (its lease still running) is refused to the next sender until
// it takes over; then it is claimable at once. The new sender's own claims
// are kept.
func TestTakeOverReleasesOtherSendersClaims(t *testing.T) {
	ctx := context.Background()
	dead, dsn := openTemp(t, Options{Name: "dead-sender", ClaimLease: time.Hour})
	next := openDSN(t, dsn, Options{Name: "next-sender", ClaimLease: time.Hour})
	tb := backendtest.Table(t, "k")
	a := backendtest.IngestAt(t, dead, tb, "t1", "ORDER-1", backendtest.Confirmed, "", time.Now())
	b := backendtest.IngestAt(t, dead, tb, "t2", "ORDER-2", backendtest.Confirmed, "", time.Now())
	if err := dead.Claim(ctx, &a.Deliveries[0], false); err != nil {
		t.Fatal(err)
	}
	if err := next.Claim(ctx, &b.Deliveries[0], false); err != nil {
		t.Fatal(err)
	}
	if err := next.Claim(ctx, &a.Deliveries[0], false); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Fatalf("claim of another sender's delivery before the takeover: %v, want refused", err)
	}
	if err := next.TakeOver(ctx); err != nil {
		t.Fatal(err)
	}
	if err := next.Claim(ctx, &a.Deliveries[0], false); err != nil {
		t.Fatalf("claim after the takeover: %v", err)
	}
	// The new sender's own claim survived its takeover: the dead one cannot take it.
	if err := dead.Claim(ctx, &b.Deliveries[0], false); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Errorf("the new sender's own claim was released by its takeover: %v", err)
	}
	// A durable claim of the dead sender (its request may have gone out) is
	// not released: the new sender finds its delivery Claimed.
	c := backendtest.IngestAt(t, dead, tb, "t3", "ORDER-3", backendtest.Confirmed, "", time.Now())
	if err := dead.Claim(ctx, &c.Deliveries[0], true); err != nil {
		t.Fatal(err)
	}
	if err := next.TakeOver(ctx); err != nil {
		t.Fatal(err)
	}
	pend, err := next.PendingAfter(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range pend {
		if d.ID == c.Deliveries[0].ID && !d.Claimed {
			t.Error("a durable claim of the dead sender was released by the takeover: its request would be sent again blindly")
		}
	}
}

// TestRedecideUnmappedOnTwoReplicasAtOnce: after a mapping reload every
// replica re-decides the held unmapped events; two doing it at once on one
// database decide each event once (one new decision, one delivery per
// event), and the summaries add up to the events.
func TestRedecideUnmappedOnTwoReplicasAtOnce(t *testing.T) {
	ctx := context.Background()
	a, dsn := openTemp(t, Options{Name: "replica-a"})
	b := openDSN(t, dsn, Options{Name: "replica-b"})
	tb := backendtest.Table(t, "k")
	const events = 300
	var ids []string
	for i := range events {
		// 30 orders, 10 updates each with increasing timestamps, so lanes and
		// the superseded rule are exercised as well.
		at := fmt.Sprintf("2026-01-13 10:%02d:00", i/30)
		r := backendtest.IngestAt(t, a, tb, fmt.Sprint("t", i), fmt.Sprint("ORDER-", i%30), "newstatus0000000", at, time.Now())
		if r.State != bridge.EventUnmapped {
			t.Fatalf("event %d: %s, want unmapped", i, r.State)
		}
		ids = append(ids, r.EventID)
	}
	cfg, err := config.Parse([]byte(`
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { api_key: k } }
mapping: { statuses: { newstatus0000000: { name: New, expertsender: shipped } } }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	next := mapping.New(cfg)
	var wg sync.WaitGroup
	sums := make([]bridge.ReplaySummary, 2)
	errs := make([]error, 2)
	for i, db := range []*DB{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i], errs[i] = bridge.RedecideUnmapped(ctx, db, []string{"newstatus0000000"}, next, time.Now())
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
	}
	t.Logf("replica a decided %d events, replica b %d", sums[0].Matched, sums[1].Matched)
	if got := sums[0].Matched + sums[1].Matched; got != events {
		t.Errorf("the replicas re-decided %d + %d = %d events, want %d in all", sums[0].Matched, sums[1].Matched, got, events)
	}
	deliveries := 0
	for _, id := range ids {
		ev, _, err := a.GetEvent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Decisions) != 2 || ev.Decisions[1].MappingVersion != next.Version() {
			t.Errorf("event %s has %d decisions, want the original and one under %s: %+v", id, len(ev.Decisions), next.Version(), ev.Decisions)
		}
		deliveries += len(ev.DeliveryIDs)
	}
	st, err := a.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each order's updates are re-decided oldest first: the first dispatches,
	// the nine after it find the status already sent (unchanged).
	const orders = 30
	if deliveries != orders || st.Deliveries != orders {
		t.Errorf("%d deliveries referenced by events, %d stored; want one per order, %d", deliveries, st.Deliveries, orders)
	}
	if d, u := sums[0].Dispatched+sums[1].Dispatched, sums[0].Unchanged+sums[1].Unchanged; d != orders || u != events-orders {
		t.Errorf("dispatched %d, unchanged %d; want %d and %d", d, u, orders, events-orders)
	}
}
