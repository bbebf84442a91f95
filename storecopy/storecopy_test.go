package storecopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	bbolt "go.etcd.io/bbolt"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
	"github.com/statusbridge/statusbridge/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// newBolt creates a store file as serve does (every bucket the current
// bbolt backend has) and returns it open.
func newBolt(t *testing.T) (*bolt.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func openExport(t *testing.T, path string) *bolt.Export {
	t.Helper()
	x, err := bolt.OpenExport(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

func openPG(t *testing.T, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestEveryBucketIsCarried walks the buckets of a new store file and fails
// on one the copy does not declare: a bucket added to the bbolt backend
// needs its carrier here (and a target for its records) before a copy can
// run.
func TestEveryBucketIsCarried(t *testing.T) {
	db, path := newBolt(t)
	db.Close()
	buckets, err := openExport(t, path).Buckets()
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) < 9 {
		t.Fatalf("a new store has only the buckets %v", buckets)
	}
	for _, b := range buckets {
		if note, ok := Carried(b); !ok {
			t.Errorf("bucket %q of the bbolt store is not carried by store copy: add it to carriers", b)
		} else if note == "" {
			t.Errorf("bucket %q is carried without saying how", b)
		}
	}
	for b := range carriers {
		found := false
		for _, have := range buckets {
			found = found || have == b
		}
		if !found {
			t.Errorf("carriers declares %q, which the bbolt store does not have (renamed?)", b)
		}
		if !contains(copyOrder, b) {
			t.Errorf("bucket %q is declared but not in copyOrder: it would never be copied", b)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestUnknownBucketStopsTheCopy: a file with a bucket the copy does not
// know (written by a newer statusbridge) is refused before anything is
// written, and so is an unknown meta key.
func TestUnknownBucketStopsTheCopy(t *testing.T) {
	for name, add := range map[string]func(tx *bbolt.Tx) error{
		"bucket": func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("tickets")); return err },
		"meta key": func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("format_flags"), []byte("1"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			db, path := newBolt(t)
			backendtest.IngestAt(t, db, backendtest.Table(t, "k"), "t1", "ORDER-1", backendtest.Confirmed, "", time.Now())
			db.Close()
			raw, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := raw.Update(add); err != nil {
				t.Fatal(err)
			}
			raw.Close()
			dst := openPG(t, pgtest.NewDatabase(t))
			_, err = Copy(context.Background(), openExport(t, path), dst, nil)
			if err == nil || !(strings.Contains(err.Error(), "tickets") || strings.Contains(err.Error(), "format_flags")) {
				t.Fatalf("Copy = %v, want a refusal naming what it does not carry", err)
			}
			if empty, what, err := dst.Empty(context.Background()); err != nil || (name == "bucket" && !empty) {
				t.Errorf("after the refusal the target holds %s (%v)", what, err)
			}
		})
	}
}

// TestRefusesNonEmptyTarget: a target holding any record is refused and
// left as it was.
func TestRefusesNonEmptyTarget(t *testing.T) {
	db, path := newBolt(t)
	backendtest.IngestAt(t, db, backendtest.Table(t, "k"), "t1", "ORDER-1", backendtest.Confirmed, "", time.Now())
	db.Close()
	dsn := pgtest.NewDatabase(t)
	dst := openPG(t, dsn)
	backendtest.IngestAt(t, dst, backendtest.Table(t, "k"), "other", "ORDER-9", backendtest.Confirmed, "", time.Now())
	_, err := Copy(context.Background(), openExport(t, path), dst, nil)
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "1 events") {
		t.Fatalf("Copy into a non-empty target = %v, want ErrNotEmpty naming what it holds", err)
	}
	if st, _ := dst.Stats(context.Background()); st.Events != 1 || st.Deliveries != 1 {
		t.Errorf("the refused target changed: %+v", st)
	}
}

// notStored are fields the domain types document as never stored (set by
// listings).
var notStored = map[string]bool{"Delivery.ShortID": true}

// requireAllSet fails when a field of v (a struct, or a pointer to one),
// or of the first element of a slice of structs inside it, is zero: the
// fixture of TestCopyCarriesEveryField must set every field the domain
// types have, so a field added later is checked too.
func requireAllSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	for i := range v.NumField() {
		f, name := v.Field(i), path+"."+v.Type().Field(i).Name
		if !v.Type().Field(i).IsExported() || v.Type().Field(i).Tag.Get("json") == "-" || notStored[name] {
			continue
		}
		if f.IsZero() {
			t.Errorf("the fixture leaves %s zero: set it so the copy is checked to carry it", name)
			continue
		}
		switch {
		case f.Kind() == reflect.Struct && f.Type() != reflect.TypeOf(time.Time{}):
			requireAllSet(t, name, f)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			requireAllSet(t, name+"[0]", f.Index(0))
		case f.Kind() == reflect.Pointer && f.Elem().Kind() == reflect.Struct:
			requireAllSet(t, name, f)
		}
	}
}

// TestCopyCarriesEveryField: an event, a delivery (retry links included)
// and an order state with every field set, a legacy 32-byte dedup key, a
// no-repeat key, a durable claim, the order intake's records, a finished
// bulk job and the operator-action log read back from PostgreSQL as bbolt
// held them (times at PostgreSQL's microseconds; jobs and actions with
// their ids, times and order); a repeat of the legacy-keyed webhook is a
// duplicate on the copy.
func TestCopyCarriesEveryField(t *testing.T) {
	ctx := context.Background()
	db, path := newBolt(t)
	tb := backendtest.Table(t, "k")
	at := time.Date(2026, 1, 13, 10, 0, 0, 123456000, time.UTC)
	raw := []byte(`{"event":"ticket.updated","data":{"id":"t-full"}}`)
	fullUpdate, _ := digishare.Decode(raw) // a shape error: stored invalid, with its dedup key
	fullKey := fullUpdate.DedupKey
	ev := bridge.Event{ID: mustID(t), ReceivedAt: at, Name: "ticket.updated", TicketID: "t-full", OrderID: "full-1",
		State: bridge.EventDispatched, Error: "an error text",
		Decisions: []bridge.Decision{{Outcome: bridge.EventDispatched, Reason: "why", OrderID: "full-1", StatusID: "s1",
			StatusName: "Paid ✓", ChangedAt: at, ChangedAtText: "2026-01-13 10:00:00",
			Deliveries: []bridge.Planned{{Target: "expertsender", Status: "paid", Skip: "a skip reason"}}, MappingVersion: "abcdef012345"}},
		DedupKey: fullKey[:16]}
	del := bridge.Delivery{ID: mustID(t), EventID: ev.ID, OrderID: "full-1", Target: "expertsender", Kind: bridge.KindOrder,
		IntakeID: mustID(t), Status: "paid", StatusID: "s1",
		CreatedAt: at, State: bridge.Dead, Reason: "permanent failure: 400", Result: "already_active", Force: true,
		NextAttemptAt: at.Add(time.Minute), UpdatedAt: at.Add(time.Second),
		Attempts: []bridge.Attempt{{At: at, StatusCode: 400, Duration: 1500 * time.Microsecond, Error: "HTTP 400", Excerpt: `{"errors":["x"]}`,
			Request: &bridge.SentRequest{Method: "PUT", URL: "https://api.example/orders", Headers: map[string]string{"x-api-key": "xxxxx"},
				Body: `{"orderId":"full-1"}`, BodySize: 4096}}},
		RetryOf: mustID(t), ResolvedBy: mustID(t)}
	ev.DeliveryIDs = []string{del.ID}
	order := bridge.OrderState{Watermark: at, Targets: map[string]bridge.TargetState{"expertsender": {Status: "paid", DeliveryID: del.ID}}}
	requireAllSet(t, "Event", reflect.ValueOf(ev))
	requireAllSet(t, "Delivery", reflect.ValueOf(del))
	requireAllSet(t, "OrderState", reflect.ValueOf(order))
	err := db.Update(ctx, bridge.UpdateOptions{}, func(tx bridge.Tx) error {
		if _, _, err := tx.ClaimDedup(bridge.DedupKeyOf(fullUpdate), ev.ID); err != nil {
			return err
		}
		if err := tx.PutEvent(&ev, db.StoredPayload(raw)); err != nil {
			return err
		}
		if err := tx.PutDelivery(&del); err != nil {
			return err
		}
		return tx.PutOrder("full-1", order)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A pending delivery done with a no-repeat key, one left pending with a
	// durable claim, and a webhook whose dedup key is made legacy below.
	once := backendtest.IngestAt(t, db, tb, "t-once", "ORDER-2", backendtest.Confirmed, "", time.Now())
	if err := db.Record(ctx, once.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done, OnceKey: "everlytic:2:s:7",
		Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	claimed := backendtest.IngestAt(t, db, tb, "t-claim", "ORDER-3", backendtest.Confirmed, "", time.Now())
	if err := db.Claim(ctx, &claimed.Deliveries[0], true); err != nil {
		t.Fatal(err)
	}
	legacyBody := fake.Update{TicketID: "t-legacy", OrderID: "ORDER-4", StatusID: backendtest.Confirmed, DateStatus: "2026-01-13 09:00:00"}.Payload()
	legacy := backendtest.IngestAt(t, db, tb, "t-legacy", "ORDER-4", backendtest.Confirmed, "2026-01-13 09:00:00", time.Now())
	// A webhook with a time: bbolt leads its dedup key with it
	// (statusbridge/5); the copy gives PostgreSQL the hash-only key.
	timed := backendtest.IngestAt(t, db, tb, "t-timed", "ORDER-5", backendtest.Confirmed, "2026-12-01 10:00:00", time.Now())
	// The order intake's records: an order taken in (intake, order intake
	// record, ticket and upsert deliveries) and one by its id alone (fetch).
	backendtest.Take(t, db, backendtest.Order("I1", `"total": 3`), backendtest.FullPlan)
	backendtest.Take(t, db, backendtest.Order("I2", ""), backendtest.FullPlan)
	// A finished bulk job and the operator-action log, every field set.
	job, err := db.CreateJob(ctx, bridge.Job{Kind: bridge.JobRetry, Filter: bridge.JobFilter{State: "dead", Target: "expertsender"},
		IncludeUnknown: true, State: bridge.JobQueued, CreatedAt: at, UpdatedAt: at, From: "10.0.0.7", Total: 3})
	if err != nil {
		t.Fatal(err)
	}
	job.State, job.UpdatedAt, job.FinishedAt = bridge.JobFailed, at.Add(time.Minute), at.Add(time.Minute+time.Nanosecond)
	job.Done, job.Skipped, job.Failed, job.Cursor, job.Error = 1, map[string]int{bridge.SkipNewerExists: 1}, 1, del.ID, "an error text"
	if err := db.SaveJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	requireAllSet(t, "Job", reflect.ValueOf(job))
	for i := range 3 {
		if err := db.RecordAction(ctx, bridge.Action{At: at.Add(time.Duration(i) * time.Second), Kind: "retry",
			What: fmt.Sprintf("retry delivery %d", i), From: "10.0.0.7", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	wantJobs, err := db.ListJobs(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	wantActions, err := db.Actions(ctx, 1000)
	if err != nil || len(wantActions) != 3 {
		t.Fatalf("actions on bbolt: %v %v", wantActions, err)
	}
	requireAllSet(t, "Action", reflect.ValueOf(wantActions[0]))
	db.Close()
	u, err := digishare.Decode(legacyBody)
	if err != nil {
		t.Fatal(err)
	}
	makeLegacy(t, path, u.DedupKey, legacy.EventID)

	dsn := pgtest.NewDatabase(t)
	dst := openPG(t, dsn)
	src := openExport(t, path)
	if !src.LegacyDedup {
		t.Fatal("the file is not marked as holding 32-byte dedup keys")
	}
	var calls int
	sum, err := Copy(ctx, src, dst, func(bucket string, done, total int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Mismatch || calls == 0 {
		t.Errorf("summary %+v (%d progress calls)", sum, calls)
	}
	for _, c := range sum.Checks {
		if c.Source == 0 && c.Kind != postgres.CountPending {
			t.Errorf("check %s counted nothing in the source: the fixture does not cover it", c.Kind)
		}
	}

	gotEv, gotRaw, err := dst.GetEvent(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(gotRaw) != string(raw) {
		t.Errorf("payload %q, want %q", gotRaw, raw)
	}
	if !reflect.DeepEqual(*gotEv, ev) {
		t.Errorf("event on PostgreSQL\n%+v\nwant\n%+v", *gotEv, ev)
	}
	gotDel, err := dst.GetDelivery(ctx, del.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Its retry links too (RetryOf, ResolvedBy).
	if !reflect.DeepEqual(*gotDel, del) {
		t.Errorf("delivery on PostgreSQL\n%+v\nwant\n%+v", *gotDel, del)
	}
	if sum.RetryLinks != 1 {
		t.Errorf("summary counts %d deliveries copied with retry links, want 1", sum.RetryLinks)
	}
	// The finished job and the actions, with their ids, times and order.
	if got, err := dst.ListJobs(ctx, 1000); err != nil || !reflect.DeepEqual(got, wantJobs) {
		t.Errorf("jobs on PostgreSQL %+v (%v), want %+v", got, err, wantJobs)
	}
	if got, err := dst.UnfinishedJobs(ctx); err != nil || len(got) != 0 {
		t.Errorf("unfinished jobs on PostgreSQL %+v (%v), want none", got, err)
	}
	if got, err := dst.Actions(ctx, 1000); err != nil || !reflect.DeepEqual(got, wantActions) {
		t.Errorf("actions on PostgreSQL %+v (%v), want %+v", got, err, wantActions)
	}
	var gotOrder bridge.OrderState
	if err := dst.View(ctx, func(tx bridge.Tx) error { gotOrder, err = tx.OrderState("full-1"); return err }); err != nil {
		t.Fatal(err)
	}
	order.Targets["expertsender"] = bridge.TargetState{Status: "paid", DeliveryID: del.ID, Live: false} // its delivery is dead
	if !reflect.DeepEqual(gotOrder, order) {
		t.Errorf("order state on PostgreSQL %+v, want %+v", gotOrder, order)
	}
	if ok, err := dst.Triggered(ctx, "everlytic:2:s:7"); err != nil || !ok {
		t.Errorf("no-repeat key not carried: %v %v", ok, err)
	}
	if c, _ := dst.CopyCounts(ctx); c[postgres.CountClaims] != 1 || c[postgres.CountIntakes] != 2 {
		t.Errorf("counts %v: want one durable claim and two intakes", c)
	}
	// Repeats of old webhooks are duplicates on the copy, the legacy-keyed one included.
	for _, r := range []struct {
		first string
		body  []byte
	}{
		{legacy.EventID, legacyBody},
		{once.EventID, fake.Update{TicketID: "t-once", OrderID: "ORDER-2", StatusID: backendtest.Confirmed}.Payload()},
		{timed.EventID, fake.Update{TicketID: "t-timed", OrderID: "ORDER-5", StatusID: backendtest.Confirmed, DateStatus: "2026-12-01 10:00:00"}.Payload()},
	} {
		res, err := bridge.Ingest(ctx, dst, backendtest.Incoming(t, r.body), tb)
		if err != nil || !res.Duplicate || res.EventID != r.first {
			t.Errorf("repeat on the copy: %+v, %v; want a duplicate of %s", res, err, r.first)
		}
	}
	// The copied durable claim stays one: the next sender finds the
	// delivery Claimed (its request may have gone out), as the bbolt store's
	// next start would.
	pend, err := dst.PendingAfter(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range pend {
		if d.ID == claimed.Deliveries[0].ID {
			found = true
			if !d.Claimed {
				t.Error("the copied durably-claimed delivery is not Claimed on PostgreSQL: it would be sent again blindly")
			}
		} else if d.Claimed {
			t.Errorf("delivery %s is Claimed on PostgreSQL, but only one was claimed durably", d.ID)
		}
	}
	if !found {
		t.Error("the copied durably-claimed delivery is not pending on PostgreSQL")
	}
}

// TestUnfinishedJobStopsTheCopy: a store with a bulk job still to run is
// refused before anything is written, its finished jobs included.
func TestUnfinishedJobStopsTheCopy(t *testing.T) {
	ctx := context.Background()
	db, path := newBolt(t)
	backendtest.IngestAt(t, db, backendtest.Table(t, "k"), "t1", "ORDER-1", backendtest.Confirmed, "", time.Now())
	for _, st := range []bridge.JobState{bridge.JobDone, bridge.JobRunning} {
		if _, err := db.CreateJob(ctx, bridge.Job{Kind: bridge.JobRetry, State: st, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	dst := openPG(t, pgtest.NewDatabase(t))
	sum, err := Copy(ctx, openExport(t, path), dst, nil)
	if !errors.Is(err, ErrUnfinishedJob) || sum.Batches != 0 {
		t.Fatalf("Copy = %v after %d batches, want ErrUnfinishedJob before any", err, sum.Batches)
	}
	if empty, what, err := dst.Empty(ctx); err != nil || !empty {
		t.Errorf("after the refusal the target holds %s (%v)", what, err)
	}
}

// makeLegacy turns eventID's dedup key into the full 32-byte key of a
// statusbridge/1 store.
func makeLegacy(t *testing.T, path string, key [32]byte, eventID string) {
	t.Helper()
	raw, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	id, err := uuid.Parse(eventID)
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bbolt.Tx) error {
		d := tx.Bucket([]byte("dedup"))
		var k, v []byte // the event's key, whatever its form (statusbridge/5 leads it with the update's time)
		_ = d.ForEach(func(dk, dv []byte) error {
			if bytes.Equal(dv, id[:]) {
				k, v = append([]byte(nil), dk...), append([]byte(nil), dv...)
			}
			return nil
		})
		if v == nil {
			return fmt.Errorf("no 16-byte dedup key for %s", eventID)
		}
		if err := d.Delete(k); err != nil {
			return err
		}
		if err := d.Put(key[:], v); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("legacy_dedup"), []byte("32"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustID(t *testing.T) string {
	t.Helper()
	id, err := bridge.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
