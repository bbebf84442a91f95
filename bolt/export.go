package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
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
	form, err := checkSchema(bdb, true)
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Export{bolt: bdb, LegacyDedup: form.legacy32}, nil
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
// (nil when there is none). Its DedupKey is the hash-only form every
// backend looks up (the first 16 bytes of the sha256), also for an event
// whose key here is led by its time (statusbridge/5).
func (x *Export) Event(r Record) (*bridge.Event, []byte, error) {
	var ev bridge.Event
	if err := decodeRecord(r.Key, r.Value, &ev); err != nil {
		return nil, nil, fmt.Errorf("store: decode event %s: %w", idString(r.Key), err)
	}
	stored := bytes.Clone(inlinePayload(r.Value))
	if stored == nil {
		err := x.bolt.View(func(tx *bbolt.Tx) error {
			if b := tx.Bucket(bucketPayloads); b != nil {
				stored = bytes.Clone(b.Get(r.Key))
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if key, ok := hashDedupKey(ev.DedupKey, stored); ok {
		ev.DedupKey = key
	}
	return &ev, stored, nil
}

// DedupKey returns the key of a record of the dedup bucket as every backend
// looks it up (the first 16 bytes of the sha256 dedup key, or all 32 of a
// statusbridge/1 key) and the event it names: a time-led key (statusbridge/5)
// is turned into its hash-only form from its event's payload.
func (x *Export) DedupKey(r Record) ([]byte, string, error) {
	id, err := ID(r.Value)
	if err != nil {
		return nil, "", fmt.Errorf("dedup key %x: event id: %w", r.Key, err)
	}
	var raw []byte
	err = x.bolt.View(func(tx *bbolt.Tx) error {
		raw = bytes.Clone(tx.Bucket(bucketEvents).Get(r.Value))
		return nil
	})
	if err != nil || raw == nil {
		return r.Key, id, err // no event: nothing to repeat (retention will drop the key)
	}
	_, stored, err := x.Event(Record{Key: r.Value, Value: raw})
	if err != nil {
		return nil, "", err
	}
	if key, ok := hashDedupKey(r.Key, stored); ok {
		return key, id, nil
	}
	return r.Key, id, nil
}

// hashDedupKey returns the hash-only form of key when key is the time-led
// key (dedupIndexKey) of the webhook stored as stored.
func hashDedupKey(key, stored []byte) ([]byte, bool) {
	if len(key) != 16 || stored == nil {
		return nil, false
	}
	raw, err := decompress(stored)
	if err != nil {
		return nil, false
	}
	u, _ := digishare.Decode(raw)
	if u == nil {
		return nil, false
	}
	if k := bridge.DedupKeyOf(u); bytes.Equal(key, dedupIndexKey(k)) {
		return bytes.Clone(k.Hash[:dedupKeyLen]), true
	}
	return nil, false
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
var MetaKeys = []string{metaSchemaKey, metaLegacyDedupKey, metaCountersKey, metaHashDedupKey, metaDedupMergedKey}
