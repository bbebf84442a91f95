package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// The console's overview reads counters instead of scanning: countEvent and
// countDelivery change them inside the very transactions that change what
// they count (ingest, replay, delivery records, retries, retention), so they
// are always in step with the records. A store that has none yet (written by
// an earlier build) gets them built once, by one scan, when it is opened for
// writing.
var (
	// bucketCounters holds, each value a big-endian uint64 (a zero count is
	// deleted):
	//   'e' + 8-byte bucket start (unix seconds) + event state → events received in that 5-minute bucket, by state now
	//   's' + status id → stored events whose last decision has that status id
	//   'u' + status id → events held as unmapped with that status id
	//   'd' + target + 0x00 + delivery state → the target's deliveries in that state
	bucketCounters = []byte("counters")
	// bucketPendingByTarget indexes unfinished deliveries by target (target +
	// 0x00 + delivery id → nothing): the first key of a target is its oldest.
	bucketPendingByTarget = []byte("pending_by_target")
	// bucketOrderEvents indexes events by order id (order id + 0x00 + event
	// id → nothing), so an order's events are found without a scan.
	bucketOrderEvents = []byte("order_events")
)

const (
	// counterWidth is the width of a time bucket of event counts.
	counterWidth = 5 * time.Minute
	// counterHorizon is how long time buckets are kept: an event received
	// earlier changes only the status id counters.
	counterHorizon = 48 * time.Hour
	// metaCountersKey is set in meta once the counters and the indexes of
	// this file were built.
	metaCountersKey = "console_indexes"
)

// initConsole creates the console's buckets and, the first time, builds the
// counters and indexes from the records: one scan, in transactions of
// buildChunk records so memory stays bounded on a large store. It runs
// before the committer starts, so no write races it; an interrupted build
// starts again at the next open (the meta key is set last).
func initConsole(bdb *bbolt.DB, log *slog.Logger) error {
	built := false
	err := bdb.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketJobs, bucketActions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("store: create bucket %s: %w", b, err)
			}
		}
		if tx.Bucket(bucketMeta).Get([]byte(metaCountersKey)) != nil {
			built = true
			return nil
		}
		for _, b := range [][]byte{bucketCounters, bucketPendingByTarget, bucketOrderEvents} {
			if tx.Bucket(b) != nil {
				if err := tx.DeleteBucket(b); err != nil {
					return fmt.Errorf("store: reset bucket %s: %w", b, err)
				}
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return fmt.Errorf("store: create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil || built {
		return err
	}
	t0 := time.Now()
	events, err := eachChunk(bdb, bucketEvents, func(tx *bbolt.Tx, k, v []byte) error {
		var ev bridge.Event
		if err := decodeRecord(k, v, &ev); err != nil {
			return fmt.Errorf("store: decode event %s: %w", idString(k), err)
		}
		return countEvent(tx, eventCount{}, eventCountOf(&ev))
	})
	if err != nil {
		return err
	}
	deliveries, err := eachChunk(bdb, bucketDeliveries, func(tx *bbolt.Tx, k, v []byte) error {
		var d bridge.Delivery
		if err := decodeRecord(k, v, &d); err != nil {
			return fmt.Errorf("store: decode delivery %s: %w", idString(k), err)
		}
		return countDelivery(tx, d.Target, k, "", d.State)
	})
	if err != nil {
		return err
	}
	if events > 0 || deliveries > 0 {
		log.Info("store: console counters and indexes built", "events", events, "deliveries", deliveries, "duration", time.Since(t0))
	}
	return bdb.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte(metaCountersKey), []byte("1")) })
}

// buildChunk is how many records one transaction of the first build reads.
var buildChunk = 10000

// eachChunk calls fn for every record of bucket b, buildChunk records a
// write transaction, and returns how many there were.
func eachChunk(bdb *bbolt.DB, b []byte, fn func(tx *bbolt.Tx, k, v []byte) error) (int, error) {
	total := 0
	var after []byte
	for {
		n := 0
		err := bdb.Update(func(tx *bbolt.Tx) error {
			setFill(tx)
			c := tx.Bucket(b).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && n < buildChunk; k, v = c.Next() {
				if err := fn(tx, k, v); err != nil {
					return err
				}
				after = append(after[:0], k...)
				n++
			}
			return nil
		})
		total += n
		if err != nil || n < buildChunk {
			return total, err
		}
	}
}

// eventCount is what the counters and the order index know of an event;
// the zero value is no event (before it is stored, after it is deleted).
type eventCount struct {
	id         string
	state      bridge.EventState
	statusID   string
	orderID    string
	receivedAt time.Time
}

func eventCountOf(ev *bridge.Event) eventCount {
	return eventCount{id: ev.ID, state: ev.State, statusID: lastStatusID(ev), orderID: ev.OrderID, receivedAt: ev.ReceivedAt}
}

// orderKey is an event's key in the order index (nil: not indexed).
func (c eventCount) orderKey() []byte {
	if c.state == "" || c.orderID == "" {
		return nil
	}
	k, err := idKey(c.id)
	if err != nil {
		return nil
	}
	return append(append([]byte(c.orderID), 0), k...)
}

// lastStatusID is the status id of the event's last decision ("" without one).
func lastStatusID(ev *bridge.Event) string {
	if n := len(ev.Decisions); n > 0 {
		return ev.Decisions[n-1].StatusID
	}
	return ""
}

// countEvent moves one event from the counters (and the order index) of
// from to those of to.
func countEvent(tx *bbolt.Tx, from, to eventCount) error {
	if from.state == to.state && from.statusID == to.statusID && from.orderID == to.orderID && from.receivedAt.Equal(to.receivedAt) {
		return nil
	}
	if fk, tk := from.orderKey(), to.orderKey(); !bytes.Equal(fk, tk) {
		idx := tx.Bucket(bucketOrderEvents)
		if fk != nil {
			if err := idx.Delete(fk); err != nil {
				return err
			}
		}
		if tk != nil {
			if err := idx.Put(tk, nil); err != nil {
				return err
			}
		}
	}
	b := tx.Bucket(bucketCounters)
	cutoff := time.Now().Add(-counterHorizon)
	for _, c := range []struct {
		ev    eventCount
		delta int64
	}{{from, -1}, {to, 1}} {
		if c.ev.state == "" {
			continue
		}
		if !c.ev.receivedAt.Before(cutoff) {
			if err := addCounter(b, timeKey(c.ev.receivedAt, string(c.ev.state)), c.delta); err != nil {
				return err
			}
		}
		if c.ev.statusID != "" {
			if err := addCounter(b, append([]byte{'s'}, c.ev.statusID...), c.delta); err != nil {
				return err
			}
			if c.ev.state == bridge.EventUnmapped {
				if err := addCounter(b, append([]byte{'u'}, c.ev.statusID...), c.delta); err != nil {
					return err
				}
			}
		}
	}
	return pruneTimeBuckets(b, cutoff)
}

// countDelivery moves one delivery of target (key: its id) from state from
// to state to ("" = not stored), and keeps the pending-by-target index.
func countDelivery(tx *bbolt.Tx, target string, key []byte, from, to bridge.DeliveryState) error {
	if from == to {
		return nil
	}
	b := tx.Bucket(bucketCounters)
	if from != "" {
		if err := addCounter(b, deliveryKey(target, from), -1); err != nil {
			return err
		}
	}
	if to != "" {
		if err := addCounter(b, deliveryKey(target, to), 1); err != nil {
			return err
		}
	}
	idx := tx.Bucket(bucketPendingByTarget)
	k := append(append([]byte(target), 0), key...)
	switch {
	case to == bridge.Pending:
		return idx.Put(k, nil)
	case from == bridge.Pending:
		return idx.Delete(k)
	}
	return nil
}

func deliveryKey(target string, state bridge.DeliveryState) []byte {
	k := append([]byte{'d'}, target...)
	return append(append(k, 0), state...)
}

func timeKey(t time.Time, state string) []byte {
	k := make([]byte, 9, 9+len(state))
	k[0] = 'e'
	binary.BigEndian.PutUint64(k[1:], uint64(bucketStart(t).Unix()))
	return append(k, state...)
}

func bucketStart(t time.Time) time.Time { return t.UTC().Truncate(counterWidth) }

func addCounter(b *bbolt.Bucket, key []byte, delta int64) error {
	var n int64
	if v := b.Get(key); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	if n += delta; n <= 0 {
		return b.Delete(key)
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(n))
	return b.Put(key, buf[:])
}

func counterValue(v []byte) int {
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

// pruneTimeBuckets deletes a few time buckets older than cutoff (the oldest
// sort first, so this is one seek when there are none).
func pruneTimeBuckets(b *bbolt.Bucket, cutoff time.Time) error {
	limit := timeKey(cutoff.Add(-counterWidth), "")
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.Seek([]byte{'e'}); k != nil && k[0] == 'e' && bytes.Compare(k, limit) < 0 && len(old) < 64; k, _ = c.Next() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Counters returns the counted events and deliveries as of now: a read of
// a few hundred small keys, whatever the size of the store.
func (db *DB) Counters(ctx context.Context, now time.Time) (bridge.Counters, error) {
	if err := ctx.Err(); err != nil {
		return bridge.Counters{}, err
	}
	out := bridge.Counters{LastHour: map[bridge.EventState]int{}, LastDay: map[bridge.EventState]int{},
		Targets: map[string]bridge.TargetCounters{}, Unmapped: map[string]int{}, StatusIDs: map[string]int{}}
	err := db.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCounters)
		if b == nil {
			return nil // a read-only store from before the counters
		}
		cur := bucketStart(now)
		hour, day := cur.Add(-11*counterWidth), cur.Add(-287*counterWidth)
		c := b.Cursor()
		for k, v := c.Seek(timeKey(day, "")); k != nil && k[0] == 'e'; k, v = c.Next() {
			if len(k) < 9 {
				continue
			}
			t := time.Unix(int64(binary.BigEndian.Uint64(k[1:9])), 0)
			if t.After(cur) {
				break
			}
			state, n := bridge.EventState(k[9:]), counterValue(v)
			out.LastDay[state] += n
			if !t.Before(hour) {
				out.LastHour[state] += n
			}
		}
		for k, v := c.Seek([]byte{'d'}); k != nil && k[0] == 'd'; k, v = c.Next() {
			target, state, ok := bytes.Cut(k[1:], []byte{0})
			if !ok {
				continue
			}
			tc := out.Targets[string(target)]
			if tc.States == nil {
				tc.States = map[bridge.DeliveryState]int{}
			}
			tc.States[bridge.DeliveryState(state)] += counterValue(v)
			out.Targets[string(target)] = tc
		}
		for k, v := c.Seek([]byte{'s'}); k != nil && k[0] == 's'; k, v = c.Next() {
			out.StatusIDs[string(k[1:])] = counterValue(v)
		}
		for k, v := c.Seek([]byte{'u'}); k != nil && k[0] == 'u'; k, v = c.Next() {
			out.Unmapped[string(k[1:])] = counterValue(v)
		}
		idx := tx.Bucket(bucketPendingByTarget)
		for target, tc := range out.Targets {
			prefix := append([]byte(target), 0)
			k, _ := idx.Cursor().Seek(prefix)
			if k == nil || !bytes.HasPrefix(k, prefix) {
				continue
			}
			var d bridge.Delivery
			if found, err := getRecord(tx.Bucket(bucketDeliveries), k[len(prefix):], &d); err != nil {
				return err
			} else if found {
				tc.OldestPending = d.CreatedAt
				out.Targets[target] = tc
			}
		}
		return nil
	})
	if err != nil {
		return bridge.Counters{}, fmt.Errorf("store: read counters: %w", err)
	}
	return out, nil
}

// uncountEventTx takes an event about to be deleted, and its deliveries, out
// of the counters.
func uncountEventTx(tx *bbolt.Tx, ev *bridge.Event) error {
	if err := countEvent(tx, eventCountOf(ev), eventCount{}); err != nil {
		return err
	}
	for _, id := range ev.DeliveryIDs {
		k, err := idKey(id)
		if err != nil {
			continue
		}
		var d bridge.Delivery
		if found, err := getRecord(tx.Bucket(bucketDeliveries), k, &d); err != nil {
			return err
		} else if found {
			if err := countDelivery(tx, d.Target, k, d.State, ""); err != nil {
				return err
			}
		}
	}
	return nil
}
