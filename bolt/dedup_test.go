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
// order (each commit's keys land at the end of the index), and a repeat,
// which carries the same changes, finds its first event.
func TestDedupKeysAppend(t *testing.T) {
	db, _ := openTemp(t)
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

// TestOpenUpgradesSchema3DedupKeys: a statusbridge/3 store (hash-only dedup
// keys) opens as /4; repeats of its events are still recognised, new events
// get time-led keys, and a store made by /4 consults no old keys.
func TestOpenUpgradesSchema3DedupKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v3.db")
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
	// Make it the store a /3 build would have written: the hash-only key,
	// in the event too, and the /3 schema.
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
		return tx.Bucket(bucketMeta).Put([]byte(metaSchemaKey), []byte(schemaVersion3))
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
		t.Fatalf("repeat of a /3 event: %+v %v, want a duplicate of %s", res, err, first.EventID)
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
