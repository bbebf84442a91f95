package bolt

import (
	"context"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// TestChangesFeedPruned: entries older than the feed keeps are dropped as
// new ones come (the feed's order is the conformance suite's ChangesFeed).
func TestChangesFeedPruned(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	a := ingestAt(t, db, tb, "a", "1", confirmed, "", time.Now()).Deliveries[0].ID
	b := ingestAt(t, db, tb, "b", "2", confirmed, "", time.Now()).Deliveries[0].ID
	pos, err := db.ChangesPosition()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	record := func(id string, st bridge.DeliveryState, at time.Time) {
		t.Helper()
		if err := db.Record(context.Background(), id, bridge.AttemptResult{State: st, Attempt: &bridge.Attempt{At: at, StatusCode: 503}, NextAttemptAt: at.Add(time.Second)}, at); err != nil {
			t.Fatal(err)
		}
	}
	record(a, bridge.Pending, now)
	record(b, bridge.Pending, now)
	record(a, bridge.Done, now)
	got, next, err := db.ChangesAfter(pos, 100)
	if err != nil || len(got) != 2 || got[0].ID != b || got[1].ID != a || got[1].State != bridge.Done || len(got[1].Attempts) != 2 {
		t.Fatalf("changes = %+v, %v; want b then a (done, 2 attempts)", got, err)
	}
	if more, _, _ := db.ChangesAfter(next, 100); len(more) != 0 {
		t.Errorf("changes after the last position: %+v", more)
	}
	// Much later, a new result drops the old entries.
	record(b, bridge.Done, now.Add(2*feedKeep))
	var entries int
	_ = db.view(func(tx *bbolt.Tx) error { entries = tx.Bucket(bucketChanges).Stats().KeyN; return nil })
	if entries != 1 {
		t.Errorf("%d feed entries after pruning, want 1", entries)
	}
	if got, _, _ := db.ChangesAfter(next, 100); len(got) != 1 || got[0].ID != b || got[0].State != bridge.Done {
		t.Errorf("changes = %+v", got)
	}
}
