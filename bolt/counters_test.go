package bolt

import (
	"context"
	"errors"
	"fmt"
	stdmaps "maps"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// scanCounters computes by brute force what Counters should say.
func scanCounters(t *testing.T, db *DB, now time.Time) bridge.Counters {
	t.Helper()
	want := bridge.Counters{LastHour: map[bridge.EventState]int{}, LastDay: map[bridge.EventState]int{},
		Targets: map[string]bridge.TargetCounters{}, Unmapped: map[string]int{}, StatusIDs: map[string]int{}}
	cur := bucketStart(now)
	eachEvent(t, db, func(ev *bridge.Event) {
		b := bucketStart(ev.ReceivedAt)
		if !b.Before(cur.Add(-287*counterWidth)) && !b.After(cur) {
			want.LastDay[ev.State]++
			if !b.Before(cur.Add(-11 * counterWidth)) {
				want.LastHour[ev.State]++
			}
		}
		if id := lastStatusID(ev); id != "" {
			want.StatusIDs[id]++
			if ev.State == bridge.EventUnmapped {
				want.Unmapped[id]++
			}
		}
	})
	// Listed newest first: the last pending one seen is the first committed
	// (ids are in commit order; tests back-date some events' creation).
	eachDelivery(t, db, func(d *bridge.Delivery) {
		tc := want.Targets[d.Target]
		if tc.States == nil {
			tc.States = map[bridge.DeliveryState]int{}
		}
		tc.States[d.State]++
		if d.State == bridge.Pending {
			tc.OldestPending = d.CreatedAt
		}
		want.Targets[d.Target] = tc
	})
	return want
}

func sameCounters(t *testing.T, what string, got, want bridge.Counters) {
	t.Helper()
	if !stdmaps.Equal(got.LastHour, want.LastHour) || !stdmaps.Equal(got.LastDay, want.LastDay) ||
		!stdmaps.Equal(got.Unmapped, want.Unmapped) || !stdmaps.Equal(got.StatusIDs, want.StatusIDs) ||
		len(got.Targets) != len(want.Targets) {
		t.Fatalf("%s: counters\n got %+v\nwant %+v", what, got, want)
	}
	for name, w := range want.Targets {
		g := got.Targets[name]
		if !stdmaps.Equal(g.States, w.States) || !g.OldestPending.Equal(w.OldestPending) {
			t.Fatalf("%s: target %s: got %+v, want %+v", what, name, g, w)
		}
	}
}

// TestCountersFollowEveryStateChange drives every write that changes a
// counted state and compares the counters with a scan after each.
func TestCountersFollowEveryStateChange(t *testing.T) {
	db, path := openTemp(t)
	tb := testTable(t, "k")
	now := time.Now()
	check := func(what string) {
		t.Helper()
		got, err := db.Counters(context.Background(), now)
		if err != nil {
			t.Fatal(err)
		}
		sameCounters(t, what, got, scanCounters(t, db, now))
	}
	check("empty store")
	old := ingestAt(t, db, tb, "d", "4", confirmed, "", now.Add(-100*24*time.Hour)) // first: retention sweeps in id order
	a := ingestAt(t, db, tb, "a", "1", confirmed, "2026-01-13 10:00:00", now.Add(-10*time.Minute))
	ingestAt(t, db, tb, "b", "2", "newstatus0000000", "2026-01-13 10:00:00", now.Add(-3*time.Hour))
	ingestAt(t, db, tb, "c", "3", "newstatus0000000", "2026-01-13 10:00:00", now.Add(-30*time.Hour))
	if _, err := bridge.Ingest(context.Background(), db, incoming(t, []byte(`{"event":"ticket.updated","data":{"id":5}}`)), tb); err != nil {
		t.Fatal(err)
	}
	check("after ingest")
	got, _ := db.Counters(context.Background(), now)
	if got.LastHour[bridge.EventDispatched] != 1 || got.LastDay[bridge.EventUnmapped] != 1 || got.Unmapped["newstatus0000000"] != 2 {
		t.Errorf("counters after ingest = %+v", got)
	}
	if got.Targets["expertsender"].States[bridge.Pending] != 2 || got.Targets["expertsender"].OldestPending.IsZero() {
		t.Errorf("pending = %+v", got.Targets["expertsender"])
	}

	if err := db.Record(context.Background(), a.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "x"}, now); err != nil {
		t.Fatal(err)
	}
	check("after a delivery died")
	if _, err := bridge.RetryDelivery(context.Background(), db, a.Deliveries[0].ID, now); err != nil {
		t.Fatal(err)
	}
	check("after a retry")
	if _, err := bridge.Replay(context.Background(), db, bridge.ReplaySelector{OrderID: "1"}, tb, bridge.ReplayOptions{Force: true}, now); err != nil {
		t.Fatal(err)
	}
	check("after a replay")
	if err := db.Record(context.Background(), old.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done}, now); err != nil {
		t.Fatal(err)
	}
	if n, err := bridge.Sweep(context.Background(), db, now.Add(-90*24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	check("after retention")

	// A store without counters (an earlier build's) gets them built when opened.
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

func TestJobsAndActions(t *testing.T) {
	defer func(j, a int) { maxFinishedJobs, maxActions = j, a }(maxFinishedJobs, maxActions)
	maxFinishedJobs, maxActions = 4, 5
	db, _ := openTemp(t)
	j, err := db.CreateJob(context.Background(), bridge.Job{Kind: bridge.JobRetry, State: bridge.JobQueued, Total: 3})
	if err != nil || j.ID == "" {
		t.Fatalf("create = %+v, %v", j, err)
	}
	j.State, j.Done, j.Cursor = bridge.JobRunning, 2, "x"
	if err := db.SaveJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetJob(context.Background(), j.ID)
	if err != nil || got.State != bridge.JobRunning || got.Done != 2 {
		t.Fatalf("get = %+v, %v", got, err)
	}
	if un, _ := db.UnfinishedJobs(context.Background()); len(un) != 1 {
		t.Errorf("unfinished = %v", un)
	}
	if _, err := db.GetJob(context.Background(), "01a20000-0000-7000-8000-000000000000"); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	if err := db.SaveJob(context.Background(), bridge.Job{ID: "01a20000-0000-7000-8000-000000000000"}); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("saving an unknown job: %v", err)
	}
	for i := range maxFinishedJobs + 5 {
		if _, err := db.CreateJob(context.Background(), bridge.Job{Kind: bridge.JobRetry, State: bridge.JobDone, Total: i}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := db.ListJobs(context.Background(), 1000)
	if len(all) != maxFinishedJobs+1 || all[0].Total != maxFinishedJobs+4 {
		t.Errorf("%d jobs kept (newest total %d), want %d finished and the running one", len(all), all[0].Total, maxFinishedJobs)
	}

	for i := range maxActions + 3 {
		if err := db.RecordAction(context.Background(), bridge.Action{Kind: "retry", What: fmt.Sprint(i), At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	acts, err := db.Actions(context.Background(), 1000)
	if err != nil || len(acts) != maxActions || acts[0].What != fmt.Sprint(maxActions+2) {
		t.Errorf("actions: %d (newest %+v), %v", len(acts), acts[0], err)
	}
}

func TestOrderStateAndStatusFilter(t *testing.T) {
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
	evs, _, err := db.ListEvents(context.Background(), bridge.EventFilter{StatusID: confirmed})
	if err != nil || len(evs) != 1 || evs[0].ID != r.EventID {
		t.Errorf("status filter = %v, %v", evs, err)
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
