package bolt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	bbolt "go.etcd.io/bbolt"
)

// TestCountersRebuilt: a store without counters (an earlier build's) gets
// them built when opened, in several transactions. (How the counters follow
// each state change is the conformance suite's CountersFollowEveryStateChange.)
func TestCountersRebuilt(t *testing.T) {
	db, path := openTemp(t)
	tb := testTable(t, "k")
	now := time.Now()
	check := func(what string) {
		t.Helper()
		got, err := db.Counters(context.Background(), now)
		if err != nil {
			t.Fatal(err)
		}
		backendtest.SameCounters(t, what, got, backendtest.ScanCounters(t, db, now))
	}
	a := ingestAt(t, db, tb, "a", "1", confirmed, "2026-01-13 10:00:00", now.Add(-10*time.Minute))
	ingestAt(t, db, tb, "b", "2", "newstatus0000000", "2026-01-13 10:00:00", now.Add(-3*time.Hour))
	ingestAt(t, db, tb, "c", "3", "newstatus0000000", "2026-01-13 10:00:00", now.Add(-30*time.Hour))
	if err := db.Record(context.Background(), a.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "x"}, now); err != nil {
		t.Fatal(err)
	}
	check("before")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketCounters); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete([]byte(metaCountersKey))
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()
	defer func(n int) { buildChunk = n }(buildChunk)
	buildChunk = 2 // several transactions for the few records here
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	check("after rebuilding")
	if got, want := orderEvents(t, db, bridge.EventFilter{OrderID: "1"}), scanOrder(t, db, "1", func(*bridge.Event) bool { return true }); len(want) != 1 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("order index after rebuilding: %v, want %v", got, want)
	}
}

func TestTimeBucketsArePruned(t *testing.T) {
	db, _ := openTemp(t)
	err := db.submit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCounters)
		for _, age := range []time.Duration{72 * time.Hour, 50 * time.Hour, time.Hour} {
			if err := addCounter(b, timeKey(time.Now().Add(-age), "dispatched"), 1); err != nil {
				return err
			}
		}
		return pruneTimeBuckets(b, time.Now().Add(-counterHorizon))
	}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = db.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketCounters).Cursor()
		for k, _ := c.Seek([]byte{'e'}); k != nil && k[0] == 'e'; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Errorf("%d time buckets left, want 1 (only the one inside the horizon)", n)
	}
}

func TestOrderState(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	r := ingestAt(t, db, tb, "a", "77", confirmed, "2026-01-13 10:00:00", time.Now())
	ingestAt(t, db, tb, "b", "78", "x9q3wrlv0m7vzea8", "2026-01-13 10:00:00", time.Now())
	var st bridge.OrderState
	err := db.View(context.Background(), func(tx bridge.Tx) error {
		var err error
		st, err = tx.OrderState("77")
		return err
	})
	if err != nil || st.Targets["expertsender"].DeliveryID != r.Deliveries[0].ID || !st.Targets["expertsender"].Live {
		t.Fatalf("order state = %+v, %v", st, err)
	}
}

// orderEvents lists an order's events page by page (limit 2) through the index.
func orderEvents(t *testing.T, db *DB, f bridge.EventFilter) []string {
	t.Helper()
	var ids []string
	f.Limit = 2
	for {
		evs, next, err := db.ListEvents(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
		if next == "" {
			return ids
		}
		f.Cursor = next
	}
}

// scanOrder is what the index must find: every event of the order, newest first.
func scanOrder(t *testing.T, db *DB, order string, keep func(*bridge.Event) bool) []string {
	t.Helper()
	var ids []string
	eachEvent(t, db, func(ev *bridge.Event) {
		if ev.OrderID == order && keep(ev) {
			ids = append(ids, ev.ID)
		}
	})
	return ids
}

func TestOrderIndex(t *testing.T) {
	db, path := openTemp(t)
	tb := testTable(t, "k")
	now := time.Now()
	old := ingestAt(t, db, tb, "old", "7", confirmed, "", now.Add(-100*24*time.Hour))
	if err := db.Record(context.Background(), old.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done}, now); err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		status := confirmed
		if i%3 == 0 {
			status = "x9q3wrlv0m7vzea8"
		}
		ingestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(7+i%2), status, fmt.Sprintf("2026-01-13 10:00:0%d", i), now.Add(time.Duration(i)*time.Second))
	}
	all := func(*bridge.Event) bool { return true }
	check := func(what string) {
		t.Helper()
		for _, order := range []string{"7", "8", "9"} {
			got, want := orderEvents(t, db, bridge.EventFilter{OrderID: order}), scanOrder(t, db, order, all)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: order %s: index %v, scan %v", what, order, got, want)
			}
		}
		got := orderEvents(t, db, bridge.EventFilter{OrderID: "7", State: "unchanged"})
		want := scanOrder(t, db, "7", func(ev *bridge.Event) bool { return ev.State == "unchanged" })
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: order 7 unchanged: index %v, scan %v", what, got, want)
		}
	}
	check("after ingest")
	if len(scanOrder(t, db, "7", all)) != 6 {
		t.Fatalf("fixture: %d events of order 7", len(scanOrder(t, db, "7", all)))
	}
	if _, err := bridge.Sweep(context.Background(), db, now.Add(-90*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("after retention")
	_ = path
}

// eachEvent and eachDelivery walk a whole listing, newest first.
func eachEvent(t *testing.T, db *DB, fn func(*bridge.Event)) {
	t.Helper()
	f := bridge.EventFilter{Limit: 1000}
	for {
		evs, next, err := db.ListEvents(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			fn(&evs[i])
		}
		if next == "" {
			return
		}
		f.Cursor = next
	}
}

func eachDelivery(t *testing.T, db *DB, fn func(*bridge.Delivery)) {
	t.Helper()
	f := bridge.DeliveryFilter{Limit: 1000, IncludeResolved: true}
	for {
		ds, next, err := db.ListDeliveries(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ds {
			fn(&ds[i])
		}
		if next == "" {
			return
		}
		f.Cursor = next
	}
}
