package bolt

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Bucket names. Keys are chosen so cursors iterate in time order.
var (
	bucketMeta         = []byte("meta")          // "schema" → schemaVersion; "legacy_dedup" when set
	bucketEvents       = []byte("events")        // event id (16-byte UUIDv7) → event record with its stored payload (codec.go)
	bucketPayloads     = []byte("payloads")      // event id → stored payload, for events written before payloads were inline
	bucketDedup        = []byte("dedup")         // first 16 bytes of the sha256 dedup key → event id
	bucketOrders       = []byte("orders")        // order id → mapping.OrderState record
	bucketDeliveries   = []byte("deliveries")    // delivery id (16-byte UUIDv7) → Delivery record
	bucketPending      = []byte("pending")       // delivery id → nothing: deliveries not yet finished
	bucketOnce         = []byte("once")          // no-repeat key (e.g. Everlytic order+status+workflow) → delivery id
	bucketClaims       = []byte("claims")        // delivery id → nothing: durable claims (sent, outcome not yet recorded)
	bucketChanges      = []byte("changes")       // sequence → delivery id + time: recent delivery results, for the live tail (feed.go)
	bucketIntakes      = []byte("intakes")       // intake id (16-byte UUIDv7) → intake record with its stored raw body (intake.go)
	bucketOrderIntakes = []byte("order_intakes") // order id → the order's intake record: latest content, ticket, media id (intake.go)

	allBuckets = [][]byte{bucketMeta, bucketEvents, bucketPayloads, bucketDedup, bucketOrders, bucketDeliveries, bucketPending, bucketOnce, bucketClaims, bucketChanges,
		bucketIntakes, bucketOrderIntakes}
)

// Schema versions. statusbridge/2 writes records in the binary form of
// codec.go and 16-byte dedup keys; a statusbridge/1 store (JSON records,
// 32-byte dedup keys) is upgraded in place when opened for writing: its old
// records stay readable and its old dedup keys are still consulted.
// statusbridge/3 adds to deliveries the request each attempt sent and their
// retry links (deliveryV2 records) and the changes feed (feed.go); a /2
// store is upgraded in place the same way. statusbridge/4 adds order
// intakes (the intakes and order_intakes buckets) and deliveries of other
// kinds than status (deliveryV3 records: the kind and the intake), which a
// /3 build would fail to read; a /3 store is upgraded in place (its records
// stay as they are). Binaries refuse a store of a version they do not know
// instead of misreading it (a /2 build refuses /3, a /3 build /4).
const (
	metaSchemaKey      = "schema"
	metaLegacyDedupKey = "legacy_dedup" // set: the dedup index may hold 32-byte keys
	schemaVersion      = "statusbridge/4"
	schemaVersion3     = "statusbridge/3"
	schemaVersion2     = "statusbridge/2"
	schemaVersion1     = "statusbridge/1"
)

// dedupKeyLen is how much of the sha256 dedup key the index keeps: 128 bits
// make an accidental collision as unlikely as a UUID's, at half the size.
const dedupKeyLen = 16

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
		return nil, fmt.Errorf("%w: %q", bridge.ErrNotFound, id)
	}
	return u[:], nil
}

func idString(key []byte) string {
	var u uuid.UUID
	copy(u[:], key)
	return u.String()
}

// fillPercent is how full a page is left when it splits. bbolt's default
// (50%) suits random inserts; keys that only grow (time-ordered ids) would
// leave every page half empty behind them. A page that does not overflow is
// never split, so records can grow in place up to the page size.
var fillPercent = []struct {
	bucket []byte
	fill   float64
}{
	// Written once (replays append a decision, rarely).
	{bucketEvents, 1.0},
	{bucketPayloads, 1.0},
	// A delivery is written pending (~75 bytes with its key) and rewritten
	// when done with its attempt (~95): pages left 80% full take that growth
	// without splitting and end ~97% full.
	{bucketDeliveries, 0.8},
	// Order ids often grow (shop order numbers); random ones still fill ~70%.
	{bucketOrders, 0.9},
	// Keyed by order id (then event id) and by target (then delivery id):
	// they grow like the orders bucket and like an append per target.
	{bucketOrderEvents, 0.9},
	{bucketPendingByTarget, 0.9},
}

// setFill applies fillPercent to a write transaction's buckets.
func setFill(tx *bbolt.Tx) {
	for _, f := range fillPercent {
		if b := tx.Bucket(f.bucket); b != nil {
			b.FillPercent = f.fill
		}
	}
}
