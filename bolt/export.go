package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Export reads a store file record by record, to copy it into another
// store (statusbridge store copy). It holds the file open read-only: while
// it is open no server can open the file, and it cannot open a file a
// server holds (ErrLocked).
type Export struct {
	bolt *bbolt.DB
	// LegacyDedup: the store began as statusbridge/1, so its dedup index may
	// hold full 32-byte keys beside 16-byte ones (the first 16 bytes of a
	// 32-byte key are its 16-byte form).
	LegacyDedup bool
}

// Record is one key and value of a bucket, copied out of its transaction.
type Record struct{ Key, Value []byte }

// exportPage is how many records one read transaction returns.
const exportPage = 500

// OpenExport opens the store file at path for export, failing after
// lockTimeout (default 1s) with ErrLocked when a server holds it, and with
// ErrForeign for a file that is not a statusbridge store.
func OpenExport(path string, lockTimeout time.Duration) (*Export, error) {
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("%w (or it is corrupt): %s: %v", ErrForeign, path, err)
	}
	legacy, err := checkSchema(bdb, true)
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Export{bolt: bdb, LegacyDedup: legacy}, nil
}

// Close releases the file.
func (x *Export) Close() error { return x.bolt.Close() }

// Path returns the file's path.
func (x *Export) Path() string { return x.bolt.Path() }

// Buckets lists the file's top-level buckets by name, sorted.
func (x *Export) Buckets() ([]string, error) {
	var out []string
	err := x.bolt.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			out = append(out, string(name))
			return nil
		})
	})
	sort.Strings(out)
	return out, err
}

// Count returns how many keys a bucket holds (0 when it does not exist).
func (x *Export) Count(bucket string) (int, error) {
	n := 0
	err := x.bolt.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// Each calls fn with the records of bucket in key order, a page at a time:
// each page is read in a short read transaction and fn runs outside it, so
// fn may take its time (write elsewhere). A nested bucket is an error: no
// statusbridge store has one, and a copy must not skip it silently.
func (x *Export) Each(bucket string, fn func(page []Record) error) error {
	var after []byte
	for {
		var page []Record
		err := x.bolt.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(bucket))
			if b == nil {
				return nil
			}
			c := b.Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for ; k != nil && len(page) < exportPage; k, v = c.Next() {
				if v == nil {
					return fmt.Errorf("store: bucket %s holds a nested bucket %q", bucket, k)
				}
				page = append(page, Record{Key: bytes.Clone(k), Value: bytes.Clone(v)})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: read bucket %s: %w", bucket, err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(page) < exportPage {
			return nil
		}
		after = page[len(page)-1].Key
	}
}

// Event decodes a record of the events bucket and returns it with its
// stored payload (as internal/payload wrote it): inline in the record, or
// in the payloads bucket for an event written before payloads were inline
// (nil when there is none).
func (x *Export) Event(r Record) (*bridge.Event, []byte, error) {
	var ev bridge.Event
	if err := decodeRecord(r.Key, r.Value, &ev); err != nil {
		return nil, nil, fmt.Errorf("store: decode event %s: %w", idString(r.Key), err)
	}
	if p := inlinePayload(r.Value); p != nil {
		return &ev, bytes.Clone(p), nil
	}
	var stored []byte
	err := x.bolt.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketPayloads); b != nil {
			stored = bytes.Clone(b.Get(r.Key))
		}
		return nil
	})
	return &ev, stored, err
}

// Delivery decodes a record of the deliveries bucket.
func (x *Export) Delivery(r Record) (*bridge.Delivery, error) {
	var d bridge.Delivery
	if err := decodeRecord(r.Key, r.Value, &d); err != nil {
		return nil, fmt.Errorf("store: decode delivery %s: %w", idString(r.Key), err)
	}
	return &d, nil
}

// Order decodes a record of the orders bucket: the order id and its state.
func (x *Export) Order(r Record) (string, bridge.OrderState, error) {
	var st bridge.OrderState
	if err := decodeRecord(r.Key, r.Value, &st); err != nil {
		return "", st, fmt.Errorf("store: decode order %q: %w", r.Key, err)
	}
	return string(r.Key), st, nil
}

// ID returns the id a 16-byte key or value holds (event and delivery keys;
// the values of the dedup and once buckets).
func ID(key []byte) (string, error) {
	if len(key) != 16 {
		return "", fmt.Errorf("store: %d-byte id, want 16", len(key))
	}
	return idString(key), nil
}

// Bucket names, for a copy to say which it carries.
const (
	BucketMeta       = "meta"
	BucketEvents     = "events"
	BucketPayloads   = "payloads"
	BucketDedup      = "dedup"
	BucketOrders     = "orders"
	BucketDeliveries = "deliveries"
	BucketPending    = "pending"
	BucketOnce       = "once"
	BucketClaims     = "claims"
)

// MetaKeys are the keys the meta bucket may hold: a copy refuses a file
// with another (written by a later build).
var MetaKeys = []string{metaSchemaKey, metaLegacyDedupKey, metaCountersKey}
