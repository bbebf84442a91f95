package store

import (
	"fmt"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Bucket names. Keys are chosen so cursors iterate in time order.
var (
	bucketMeta       = []byte("meta")       // "schema" → schemaVersion
	bucketEvents     = []byte("events")     // event id (16-byte UUIDv7) → Event JSON
	bucketPayloads   = []byte("payloads")   // event id → raw webhook body, byte for byte
	bucketDedup      = []byte("dedup")      // sha256 dedup key → event id
	bucketOrders     = []byte("orders")     // order id → mapping.OrderState JSON
	bucketDeliveries = []byte("deliveries") // delivery id (16-byte UUIDv7) → Delivery JSON
	bucketPending    = []byte("pending")    // delivery id → nothing: deliveries not yet finished
	bucketOnce       = []byte("once")       // no-repeat key (e.g. Everlytic order+status+workflow) → delivery id

	allBuckets = [][]byte{bucketMeta, bucketEvents, bucketPayloads, bucketDedup, bucketOrders, bucketDeliveries, bucketPending, bucketOnce}
)

const (
	metaSchemaKey = "schema"
	schemaVersion = "statusbridge/1"
)

// newID returns a time-ordered id: UUIDv7 is monotonic within the process, so
// new keys append to the end of their bucket.
func newID() (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("store: new id: %w", err)
	}
	return id, nil
}

// idKey parses a textual id into its 16-byte key.
func idKey(id string) ([]byte, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return u[:], nil
}

func idString(key []byte) string {
	var u uuid.UUID
	copy(u[:], key)
	return u.String()
}

// fillAppendOnly packs the pages of buckets whose keys only grow (time-ordered
// ids): a split then leaves full pages behind instead of half-empty ones.
func fillAppendOnly(tx *bolt.Tx) {
	for _, name := range [][]byte{bucketEvents, bucketPayloads, bucketDeliveries} {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = 0.95
		}
	}
}
