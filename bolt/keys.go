package bolt

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Bucket names. Keys are chosen so cursors iterate in time order.
var (
	bucketMeta         = []byte("meta")          // "schema" → schemaVersion; "legacy_dedup" when set
	bucketEvents       = []byte("events")        // event id (16-byte UUIDv7) → event record with its stored payload (codec.go)
	bucketPayloads     = []byte("payloads")      // event id → stored payload, for events written before payloads were inline
	bucketDedup        = []byte("dedup")         // dedup key (dedupIndexKey: the update's time, then its hash) → event id
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
// stay as they are). statusbridge/5 leads dedup keys with the update's own
// time (dedupIndexKey), so new keys append to the index instead of each
// dirtying a random page of it, and stores payloads in a small form (S2 and
// a fixed Huffman table, internal/payload) that a /4 build would take for
// raw bytes; a /1–/4 store is upgraded in place: its keys (hash only) stay,
// and are still consulted for updates from before the upgrade
// (metaHashDedupKey). Binaries refuse a store of a version they do not know
// instead of misreading it (a /2 build refuses /3, a /3 build /4, a /4 build
// /5).
const (
	metaSchemaKey      = "schema"
	metaLegacyDedupKey = "legacy_dedup" // set: the dedup index may hold 32-byte keys
	// metaHashDedupKey, set when a store from before statusbridge/5 is
	// upgraded: 8 bytes, big-endian Unix seconds. An update whose time is
	// earlier (or that has none) may repeat an event stored under a hash-only
	// key (16 bytes, or 32 with legacy_dedup), so those are consulted too.
	metaHashDedupKey = "hash_dedup_before"
	schemaVersion    = "statusbridge/5"
	schemaVersion4   = "statusbridge/4"
	schemaVersion3   = "statusbridge/3"
	schemaVersion2   = "statusbridge/2"
	schemaVersion1   = "statusbridge/1"
)

// dedupKeyLen is how much of the sha256 dedup key a hash-only key (before
// statusbridge/5) keeps: 128 bits make an accidental collision as unlikely
// as a UUID's, at half the size.
const dedupKeyLen = 16

// hashDedupSlack is how long after an upgrade to statusbridge/5 an update's
// time may lie and still be looked up under the old hash-only keys too: a
// repeat of an event stored before the upgrade carries a time from before it,
// give or take Digishare's clock.
const hashDedupSlack = 7 * 24 * time.Hour

// dedupIndexKey is k's key in the dedup index (16 bytes): the update's time
// as big-endian Unix seconds (4 bytes; 0 without one, clamped to 1970–2106),
// then the first 12 bytes of its hash. Updates arrive roughly in the order
// of their time, so a group commit's new keys sort together at the end of
// the index: one or two leaf pages written instead of one per ingest. 96 bits
// of hash among the updates of one second make an accidental collision
// vanishingly unlikely.
func dedupIndexKey(k bridge.DedupKey) []byte {
	var sec uint32
	if s := k.At.Unix(); !k.At.IsZero() && s > 0 {
		sec = uint32(min(s, math.MaxUint32))
	}
	out := make([]byte, 16)
	binary.BigEndian.PutUint32(out, sec)
	copy(out[4:], k.Hash[:12])
	return out
}

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
	// Time-led keys, merged in sorted runs of thousands (dedupmem.go):
	// appended in full pages.
	{bucketDedup, 1.0},
	// Sequence keys, appended; pruned from the front.
	{bucketChanges, 1.0},
	{bucketPayloads, 1.0},
	// A delivery is written pending (~75 bytes with its key) and rewritten
	// when done with its attempt and the request it sent (~230): 80% left
	// the store smallest (BenchmarkIngestDeliver, 2026-12-01: 1,249–1,251
	// store bytes per event, against 1,264–1,268 at 95% and 100%).
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
