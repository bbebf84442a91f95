package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
)

// TestChangesFeedOutOfOrderCommit: a record whose transaction took its seq
// first but commits after a later one is still returned to a reader that
// read past the later one.
func TestChangesFeedOutOfOrderCommit(t *testing.T) {
	db, _ := openTemp(t, Options{})
	tb := backendtest.Table(t, "k")
	a := backendtest.IngestAt(t, db, tb, "a", "1", backendtest.Confirmed, "", time.Now()).Deliveries[0].ID
	b := backendtest.IngestAt(t, db, tb, "b", "2", backendtest.Confirmed, "", time.Now()).Deliveries[0].ID
	pos, err := db.ChangesPosition()
	if err != nil {
		t.Fatal(err)
	}
	recorded, release := make(chan struct{}), make(chan struct{})
	slow := make(chan error, 1)
	go func() {
		slow <- db.Update(context.Background(), bridge.UpdateOptions{}, func(tx bridge.Tx) error {
			if err := tx.RecordAttempt(a, bridge.AttemptResult{State: bridge.Done}, time.Now()); err != nil {
				return err
			}
			close(recorded)
			<-release
			return nil
		})
	}()
	<-recorded // a's change has the lower seq, uncommitted
	if err := db.Record(context.Background(), b, bridge.AttemptResult{State: bridge.Done}, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, next, err := db.ChangesAfter(pos, 100)
	if err != nil || len(got) != 1 || got[0].ID != b {
		t.Fatalf("changes = %+v, %v; want b alone", got, err)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	got, next, err = db.ChangesAfter(next, 100)
	if err != nil || len(got) != 1 || got[0].ID != a || got[0].State != bridge.Done {
		t.Fatalf("changes after a's commit = %+v, %v; want a", got, err)
	}
	if got, _, _ := db.ChangesAfter(next, 100); len(got) != 0 {
		t.Errorf("changes again: %+v", got)
	}
}

// TestFeedAndCountersPruned: changes older than the feed keeps, and time
// buckets past the counters' horizon, are deleted.
func TestFeedAndCountersPruned(t *testing.T) {
	db, _ := openTemp(t, Options{})
	ctx := context.Background()
	_, err := db.pool.Exec(ctx, `INSERT INTO changes (delivery_id, xid, at) VALUES (gen_random_uuid(), 1, now() - interval '11 minutes'),
		(gen_random_uuid(), 1, now() - interval '1 minute');
		INSERT INTO event_counts VALUES (now() - interval '50 hours', 'dispatched', 0, 1), (now() - interval '1 hour', 'dispatched', 0, 1)`)
	if err != nil {
		t.Fatal(err)
	}
	db.pruneFeed()
	var changes, buckets int
	if err := db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM changes), (SELECT count(*) FROM event_counts)`).Scan(&changes, &buckets); err != nil {
		t.Fatal(err)
	}
	if changes != 1 || buckets != 1 {
		t.Errorf("after pruning: %d changes, %d time buckets; want 1 and 1", changes, buckets)
	}
}

// TestCountersBuiltByTheMigration: a database from before migration 0004,
// with records, gets counters that count them.
func TestCountersBuiltByTheMigration(t *testing.T) {
	db, dsn := openTemp(t, Options{})
	tb := backendtest.Table(t, "k")
	now := time.Now()
	a := backendtest.IngestAt(t, db, tb, "a", "1", backendtest.Confirmed, "2026-01-13 10:00:00", now.Add(-10*time.Minute))
	backendtest.IngestAt(t, db, tb, "b", "2", "newstatus0000000", "2026-01-13 10:00:00", now.Add(-3*time.Hour))
	backendtest.IngestAt(t, db, tb, "c", "3", backendtest.Awaiting, "", now.Add(-60*time.Hour))
	if err := db.Record(context.Background(), a.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "x"}, now); err != nil {
		t.Fatal(err)
	}
	// Back to version 2.
	_, err := db.pool.Exec(context.Background(), `DROP TABLE event_counts, status_counts, delivery_counts, jobs, actions, changes;
		DROP FUNCTION count_event, count_delivery CASCADE;
		ALTER TABLE deliveries DROP COLUMN retry_of, DROP COLUMN resolved_by;
		DELETE FROM schema_version WHERE version >= 4`)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDSN(t, dsn, Options{})
	got, err := db.Counters(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	backendtest.SameCounters(t, "after migrating", got, backendtest.ScanCounters(t, db, now))
	if got.StatusIDs[backendtest.Awaiting] != 1 || got.Targets["expertsender"].States[bridge.Dead] != 1 {
		t.Errorf("counters = %+v", got)
	}
}
