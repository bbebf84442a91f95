package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
	bbolt "go.etcd.io/bbolt"
)

// TestDedupKeysAppend: the dedup index is keyed by the update's own time
// first, so updates stored in the order of their times have keys in that
// order (each merge's keys land at the end of the index), and a repeat,
// which carries the same changes, finds its first event.
func TestDedupKeysAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	tb := testTable(t, "k")
	base := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	var ids []string
	var raws [][]byte
	for i := range 50 {
		at := base.Add(time.Duration(i) * 1300 * time.Millisecond).Format(time.DateTime)
		raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: confirmed, DateStatus: at}.Payload()
		res, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb)
		if err != nil || res.Duplicate {
			t.Fatalf("ingest %d: %+v %v", i, res, err)
		}
		ids = append(ids, res.EventID)
		raws = append(raws, raw)
	}
	// Closing writes the keys held in memory to the bucket.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := db.recent.size(); n != 0 {
		t.Errorf("%d keys held in memory after a clean close and open, want 0", n)
	}
	var inIndex []string
	_ = db.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDedup).ForEach(func(k, v []byte) error {
			if len(k) != 16 {
				t.Errorf("dedup key %x: %d bytes, want 16", k, len(k))
			}
			inIndex = append(inIndex, idString(v))
			return nil
		})
	})
	if fmt.Sprint(inIndex) != fmt.Sprint(ids) {
		t.Errorf("dedup index order:\n%v\nwant the order of the updates' times:\n%v", inIndex, ids)
	}
	for i, raw := range raws {
		if res, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb); err != nil || !res.Duplicate || res.EventID != ids[i] {
			t.Fatalf("repeat %d: %+v %v, want a duplicate of %s", i, res, err, ids[i])
		}
	}
	// No time at all: still a key of its own, still recognised.
	raw := fake.Update{TicketID: "no-time", OrderID: "x", StatusID: confirmed}.Payload()
	first, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb); err != nil || !res.Duplicate || res.EventID != first.EventID {
		t.Fatalf("repeat of an update without a time: %+v %v", res, err)
	}
}

// TestOpenUpgradesSchema4DedupKeys: a statusbridge/4 store (hash-only dedup
// keys, as every version before /5 wrote them) opens as /5; repeats of its
// events are still recognised, new events get time-led keys, and a store
// made by /5 consults no old keys.
func TestOpenUpgradesSchema4DedupKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v4.db")
	tb := testTable(t, "") // deliveries skipped: retention may delete the events
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var hashBefore []byte
	_ = db.view(func(tx *bbolt.Tx) error { hashBefore = tx.Bucket(bucketMeta).Get([]byte(metaHashDedupKey)); return nil })
	if hashBefore != nil || db.dedup.hashBefore != 0 {
		t.Errorf("a new store consults old keys: meta %x, %d", hashBefore, db.dedup.hashBefore)
	}
	old := fake.Update{TicketID: "t-old", OrderID: "ORDER-1", StatusID: confirmed, DateStatus: "2026-11-30 10:00:00"}.Payload()
	in := incoming(t, old)
	first, err := bridge.Ingest(context.Background(), db, in, tb)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Make it the store a /4 build would have written: the hash-only key,
	// in the event too, and the /4 schema.
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		key := bridge.DedupKeyOf(in.Update)
		if err := tx.Bucket(bucketDedup).Delete(dedupIndexKey(key)); err != nil {
			return err
		}
		evKey, _ := idKey(first.EventID)
		if err := tx.Bucket(bucketDedup).Put(key.Hash[:dedupKeyLen], evKey); err != nil {
			return err
		}
		var ev bridge.Event
		if _, err := getRecord(tx.Bucket(bucketEvents), evKey, &ev); err != nil {
			return err
		}
		ev.DedupKey = key.Hash[:dedupKeyLen]
		if err := putRecord(tx.Bucket(bucketEvents), evKey, &ev); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Delete([]byte(metaDedupMergedKey)); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte(metaSchemaKey), []byte(schemaVersion4))
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}

	opened := time.Now()
	if db, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	var schema string
	_ = db.view(func(tx *bbolt.Tx) error {
		schema = string(tx.Bucket(bucketMeta).Get([]byte(metaSchemaKey)))
		hashBefore = append([]byte(nil), tx.Bucket(bucketMeta).Get([]byte(metaHashDedupKey))...)
		return nil
	})
	if schema != schemaVersion || len(hashBefore) != 8 {
		t.Fatalf("after opening: schema %q, %s %x", schema, metaHashDedupKey, hashBefore)
	}
	if got := time.Unix(int64(binary.BigEndian.Uint64(hashBefore)), 0); got.Before(opened.Add(hashDedupSlack-time.Minute)) || got.After(opened.Add(hashDedupSlack+time.Minute)) {
		t.Errorf("old keys consulted for updates before %v, want the upgrade + %v", got, hashDedupSlack)
	}
	if res, err := bridge.Ingest(context.Background(), db, incoming(t, old), tb); err != nil || !res.Duplicate || res.EventID != first.EventID {
		t.Fatalf("repeat of a /4 event: %+v %v, want a duplicate of %s", res, err, first.EventID)
	}
	now := time.Now().UTC().Truncate(time.Second)
	fresh := fake.Update{TicketID: "t-new", OrderID: "ORDER-2", StatusID: confirmed, DateStatus: now.Format(time.DateTime)}.Payload()
	res, err := bridge.Ingest(context.Background(), db, incoming(t, fresh), tb)
	if err != nil || res.Duplicate {
		t.Fatalf("new event: %+v %v", res, err)
	}
	got, _, err := db.GetEvent(context.Background(), res.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if want := binary.BigEndian.AppendUint32(nil, uint32(now.Unix())); !bytes.HasPrefix(got.DedupKey, want) {
		t.Errorf("new event's dedup key %x, want it led by its time %x", got.DedupKey, want)
	}
	// Reopened, it keeps the same rule.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		raw []byte
		id  string
	}{{old, first.EventID}, {fresh, res.EventID}} {
		if r, err := bridge.Ingest(context.Background(), db, incoming(t, c.raw), tb); err != nil || !r.Duplicate || r.EventID != c.id {
			t.Errorf("repeat after reopening: %+v %v, want a duplicate of %s", r, err, c.id)
		}
	}
	// Retention deletes the old event's key as it was stored.
	if n, err := bridge.Sweep(context.Background(), db, time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	_ = db.view(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketDedup).Stats().KeyN; n != 0 {
			t.Errorf("%d dedup keys left after every event was swept", n)
		}
		return nil
	})
}

// crash stops db as a kill would leave it: the committer stopped, the file
// closed, and nothing done at close (the dedup keys held in memory are
// not written).
func crash(t *testing.T, db *DB) {
	t.Helper()
	db.mu.Lock()
	db.closed = true
	close(db.ingest)
	close(db.writes)
	db.mu.Unlock()
	<-db.done
	if err := db.bolt.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRecentDedupKeysSurviveACrash: the newest dedup keys live in memory
// until a merge writes them to the bucket; a crash loses none (they are
// reloaded from the events after the merged mark), a merge keeps every
// repeat recognised, an update that waited across a merge has its key put
// in the bucket at once, and retention forgets keys wherever they are.
func TestRecentDedupKeysSurviveACrash(t *testing.T) {
	defer func(n int) { mergeDedupAt = n }(mergeDedupAt)
	mergeDedupAt = 16
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tb := testTable(t, "") // deliveries skipped: retention may delete the events
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	raw := func(i int) []byte {
		return fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: confirmed,
			DateStatus: base.Add(time.Duration(i) * time.Second).Format(time.DateTime)}.Payload()
	}
	ids := map[int]string{}
	ingest := func(i int) {
		t.Helper()
		res, err := bridge.Ingest(context.Background(), db, incoming(t, raw(i)), tb)
		if err != nil || res.Duplicate {
			t.Fatalf("ingest %d: %+v %v", i, res, err)
		}
		ids[i] = res.EventID
	}
	repeats := func(when string) {
		t.Helper()
		for i, id := range ids {
			if res, err := bridge.Ingest(context.Background(), db, incoming(t, raw(i)), tb); err != nil || !res.Duplicate || res.EventID != id {
				t.Fatalf("%s: repeat of %d: %+v %v, want a duplicate of %s", when, i, res, err, id)
			}
		}
	}
	for i := range 40 {
		ingest(i)
	}
	if n := db.recent.size(); n == 0 || n >= 16 {
		t.Errorf("%d keys in memory after 40 ingests with merges at 16", n)
	}
	repeats("before the crash")

	// An ingest whose id was made before the last merge (it waited in the
	// queue meanwhile) has its key put in the bucket at once.
	early, _ := bridge.NewID()
	earlyKey, _ := idKey(early)
	for i := 40; bytes.Compare(db.recent.mark[:], earlyKey) <= 0; i++ {
		ingest(i)
	}
	// What a merge leaves in memory is the newest second's keys only:
	// written later together, they append whole pages.
	for k := range db.recent.keys {
		if want := uint32(base.Add(time.Duration(len(ids)-1) * time.Second).Unix()); binary.BigEndian.Uint32(k[:4]) != want {
			t.Errorf("held after a merge: a key of %d, want only the newest second's (%d)", binary.BigEndian.Uint32(k[:4]), want)
		}
	}
	heldBefore := db.recent.size()
	in := incoming(t, raw(1000))
	err = db.Update(context.Background(), bridge.UpdateOptions{Refusable: true}, func(tx bridge.Tx) error {
		_, first, err := tx.ClaimDedup(bridge.DedupKeyOf(in.Update), early)
		if first != "" {
			t.Errorf("a new key found as a repeat of %s", first)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := db.recent.size(); n != heldBefore {
		t.Errorf("an id from before the merge went to memory (%d keys held, %d before)", n, heldBefore)
	}
	_ = db.view(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketDedup).Get(dedupIndexKey(bridge.DedupKeyOf(in.Update))); idString(v) != early {
			t.Errorf("bucket has %x for the early id %s", v, early)
		}
		return nil
	})
	for i := 60; i < 70; i++ {
		ingest(i)
	}
	held := db.recent.size()
	crash(t, db)

	if db, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	if n := db.recent.size(); n != held {
		t.Errorf("%d keys reloaded after the crash, want the %d held", n, held)
	}
	repeats("after the crash")
	// Retention deletes keys in memory and in the bucket alike.
	if n, err := bridge.Sweep(context.Background(), db, time.Now().Add(time.Hour)); err != nil || n != len(ids) {
		t.Fatalf("sweep: %d %v, want %d", n, err, len(ids))
	}
	if n := db.recent.size(); n != 0 {
		t.Errorf("%d keys held after every event was swept", n)
	}
	for i := range ids {
		if res, err := bridge.Ingest(context.Background(), db, incoming(t, raw(i)), tb); err != nil || res.Duplicate {
			t.Fatalf("after its event is swept, a repeat of %d is new again: %+v %v", i, res, err)
		}
	}
}

// TestRecentDedupRollsBackWithItsCommit: a group commit that fails (one bad
// write in it) keeps none of the dedup keys it staged; the writes committed
// one by one after it keep theirs, once.
func TestRecentDedupRollsBackWithItsCommit(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "sb.db"), Options{AsyncDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tb := testTable(t, "k")
	missing, _ := bridge.NewID()
	recorded := make(chan error, 1)
	// Waits (AsyncDelay) for the ingest, then fails the commit they share.
	if err := db.RecordAsync(context.Background(), missing, bridge.AttemptResult{State: bridge.Done}, time.Now(), func(err error) { recorded <- err }); err != nil {
		t.Fatal(err)
	}
	raw := fake.Update{TicketID: "t1", OrderID: "1", StatusID: confirmed, DateStatus: "2026-12-01 22:00:00"}.Payload()
	first, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-recorded; err == nil {
		t.Fatal("the record of a missing delivery succeeded")
	}
	if n := db.recent.size(); n != 1 {
		t.Errorf("%d dedup keys held, want the ingest's one", n)
	}
	if res, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb); err != nil || !res.Duplicate || res.EventID != first.EventID {
		t.Fatalf("repeat: %+v %v, want a duplicate of %s", res, err, first.EventID)
	}
}
