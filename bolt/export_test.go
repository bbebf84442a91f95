package bolt

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// TestExportedBucketNames: the names a copy declares are the buckets the
// store creates, one for one.
func TestExportedBucketNames(t *testing.T) {
	exported := []string{BucketMeta, BucketEvents, BucketPayloads, BucketDedup, BucketOrders, BucketDeliveries,
		BucketPending, BucketOnce, BucketClaims, string(bucketChanges), BucketIntakes, BucketOrderIntakes}
	if len(exported) != len(allBuckets) {
		t.Fatalf("%d exported bucket names, %d buckets", len(exported), len(allBuckets))
	}
	for i, b := range allBuckets {
		if exported[i] != string(b) {
			t.Errorf("bucket %d: exported %q, created %q", i, exported[i], b)
		}
	}
}

// TestExportLockedAndPaged: an export cannot open a file a server holds;
// Each returns every record in key order, a page at a time.
func TestExportLockedAndPaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenExport(path, 50*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("export of a held file: %v, want ErrLocked", err)
	}
	if err := db.bolt.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOrders)
		for i := range 2*exportPage + 3 {
			if err := b.Put([]byte{byte(i >> 8), byte(i)}, []byte{recordV1, 0, 0}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	x, err := OpenExport(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	var pages, n int
	var last []byte
	err = x.Each(BucketOrders, func(page []Record) error {
		pages++
		for _, r := range page {
			if last != nil && string(r.Key) <= string(last) {
				t.Fatalf("key %x after %x", r.Key, last)
			}
			last = r.Key
			n++
		}
		return nil
	})
	if err != nil || n != 2*exportPage+3 || pages != 3 {
		t.Errorf("Each: %d records in %d pages, %v; want %d in 3", n, pages, err, 2*exportPage+3)
	}
	if c, _ := x.Count(BucketOrders); c != n {
		t.Errorf("Count = %d, want %d", c, n)
	}
}
