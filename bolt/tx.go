package bolt

import (
	"context"
	"fmt"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Compile-time checks: DB is a bridge.Backend, tx a bridge.Tx.
var (
	_ bridge.Backend = (*DB)(nil)
	_ bridge.Tx      = (*tx)(nil)
)

// tx is a bbolt transaction seen through bridge.Tx.
type tx struct {
	db *DB
	tx *bbolt.Tx
	// recorded lists the deliveries whose attempts RecordAttempt recorded:
	// their in-memory claims are dropped once the commit is over.
	recorded []string
}

// Update runs fn in the next group commit and returns once that commit is on
// disk. fn runs once, or again alone when a neighbour in its group commit
// failed.
func (db *DB) Update(ctx context.Context, opt bridge.UpdateOptions, fn func(bridge.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var last *tx
	err := db.submit(func(btx *bbolt.Tx) error { last = &tx{db: db, tx: btx}; return fn(last) }, opt.Refusable, opt.Wake)
	if last != nil {
		for _, id := range last.recorded {
			db.dropClaim(id) // as Record does, whether or not the commit succeeded
		}
	}
	return err
}

// RecordAttempt records an attempt result (as Record does) inside the
// transaction; the delivery's durable claim goes in the same commit, its
// in-memory claim once the commit is over.
func (t *tx) RecordAttempt(id string, o bridge.AttemptResult, now time.Time) error {
	key, err := idKey(id)
	if err != nil {
		return err
	}
	if t.db != nil {
		t.recorded = append(t.recorded, id)
	}
	return recordTx(t.tx, key, id, o, now)
}

// View runs fn in a read-only transaction.
func (db *DB) View(ctx context.Context, fn func(bridge.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.view(func(btx *bbolt.Tx) error { return fn(&tx{db: db, tx: btx}) })
}

// StoredPayload compresses a body for PutEvent (outside the committer).
func (db *DB) StoredPayload(raw []byte) []byte { return compress(raw) }

func (t *tx) ClaimDedup(key bridge.DedupKey, eventID string) ([]byte, string, error) {
	dedup := t.tx.Bucket(bucketDedup)
	dkey := dedupIndexKey(key)
	if id, ok := t.db.recent.get(idBytes(dkey)); ok {
		return dkey, idString(id[:]), nil
	}
	first := dedup.Get(dkey)
	if first == nil && t.db.dedup.hashBefore != 0 && (key.At.IsZero() || key.At.Unix() < t.db.dedup.hashBefore) {
		// Maybe a repeat of an event stored before statusbridge/4.
		if first = dedup.Get(key.Hash[:dedupKeyLen]); first == nil && t.db.dedup.legacy32 {
			first = dedup.Get(key.Hash[:])
		}
	}
	if first != nil {
		return dkey, idString(first), nil
	}
	k, err := idKey(eventID)
	if err != nil {
		return nil, "", err
	}
	if err := t.db.recent.claim(dedup, idBytes(dkey), idBytes(k)); err != nil {
		return nil, "", fmt.Errorf("store: put dedup key for %s: %w", eventID, err)
	}
	return dkey, "", nil
}

func (t *tx) Event(id string) (*bridge.Event, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	var ev bridge.Event
	found, err := getRecord(t.tx.Bucket(bucketEvents), key, &ev)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: event %s", bridge.ErrNotFound, id)
	}
	return &ev, nil
}

func (t *tx) Payload(id string) ([]byte, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	return decompress(storedPayload(t.tx, key))
}

func (t *tx) PutEvent(ev *bridge.Event, stored []byte) error {
	key, err := idKey(ev.ID)
	if err != nil {
		return err
	}
	var was bridge.Event // the counters move from the record it replaces (none: zero)
	found, err := getRecord(t.tx.Bucket(bucketEvents), key, &was)
	if err != nil {
		return err
	}
	if !found && t.db != nil {
		t.db.stage.events = append(t.db.stage.events, tailOf(key))
	}
	if err := countEvent(t.tx, eventCountOf(&was), eventCountOf(ev)); err != nil {
		return err
	}
	var v any = ev
	if stored != nil {
		v = eventPayload{ev, stored}
	}
	return putRecord(t.tx.Bucket(bucketEvents), key, v)
}

func (t *tx) EventsFrom(after string, limit int) ([]bridge.Event, error) {
	c := t.tx.Bucket(bucketEvents).Cursor()
	var k, v []byte
	if after == "" {
		k, v = c.First()
	} else {
		start, err := idKey(after)
		if err != nil {
			return nil, err
		}
		if k, v = c.Seek(start); k != nil && string(k) == string(start) {
			k, v = c.Next()
		}
	}
	var out []bridge.Event
	for ; k != nil && len(out) < limit; k, v = c.Next() {
		var ev bridge.Event
		if err := decodeRecord(k, v, &ev); err != nil {
			return nil, fmt.Errorf("store: decode event %s: %w", idString(k), err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func (t *tx) DeleteEvent(ev *bridge.Event) error {
	key, err := idKey(ev.ID)
	if err != nil {
		return err
	}
	if err := uncountEventTx(t.tx, ev); err != nil {
		return err
	}
	for _, id := range ev.DeliveryIDs {
		if k, err := idKey(id); err == nil {
			if err := t.tx.Bucket(bucketDeliveries).Delete(k); err != nil {
				return err
			}
			if err := t.tx.Bucket(bucketPending).Delete(k); err != nil {
				return err
			}
		}
	}
	if len(ev.DedupKey) > 0 {
		if t.db != nil && t.db.recent != nil {
			t.db.recent.forget(ev.DedupKey)
		}
		if err := t.tx.Bucket(bucketDedup).Delete(ev.DedupKey); err != nil {
			return err
		}
	}
	if err := t.tx.Bucket(bucketPayloads).Delete(key); err != nil {
		return err
	}
	return t.tx.Bucket(bucketEvents).Delete(key)
}

func (t *tx) OrderState(orderID string) (bridge.OrderState, error) {
	st := bridge.OrderState{}
	if orderID == "" {
		return st, nil
	}
	if _, err := getRecord(t.tx.Bucket(bucketOrders), []byte(orderID), &st); err != nil {
		return st, err
	}
	for target, ts := range st.Targets {
		ts.Live = true
		if key, err := idKey(ts.DeliveryID); err == nil {
			if raw := t.tx.Bucket(bucketDeliveries).Get(key); raw != nil {
				state, err := deliveryState(key, raw)
				if err != nil {
					return st, fmt.Errorf("store: decode delivery %s: %w", ts.DeliveryID, err)
				}
				ts.Live = (&bridge.Delivery{State: state}).Live()
			}
		}
		st.Targets[target] = ts
	}
	return st, nil
}

// LockOrder is OrderState: one committer writes the file, so every
// decision is already serialised.
func (t *tx) LockOrder(orderID string) (bridge.OrderState, error) { return t.OrderState(orderID) }

func (t *tx) PutOrder(orderID string, st bridge.OrderState) error {
	return putRecord(t.tx.Bucket(bucketOrders), []byte(orderID), &st)
}

func (t *tx) Delivery(id string) (*bridge.Delivery, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	var d bridge.Delivery
	found, err := getRecord(t.tx.Bucket(bucketDeliveries), key, &d)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
	}
	return &d, nil
}

func (t *tx) PutDelivery(d *bridge.Delivery) error {
	key, err := idKey(d.ID)
	if err != nil {
		return err
	}
	if d.State.Terminal() {
		if err := t.tx.Bucket(bucketPending).Delete(key); err != nil {
			return err
		}
	} else if err := t.tx.Bucket(bucketPending).Put(key, nil); err != nil {
		return fmt.Errorf("store: queue delivery %s: %w", d.ID, err)
	}
	stored := *d
	if stored.State == bridge.InFlight {
		stored.State = bridge.Pending // a claim is not a state on disk
	}
	var was bridge.Delivery // the counters move from the record it replaces (none: "")
	found, err := getRecord(t.tx.Bucket(bucketDeliveries), key, &was)
	if err != nil {
		return err
	}
	if !found && t.db != nil {
		t.db.stage.deliveries = append(t.db.stage.deliveries, tailOf(key))
	}
	if err := countDelivery(t.tx, stored.Target, key, was.State, stored.State); err != nil {
		return err
	}
	return putRecord(t.tx.Bucket(bucketDeliveries), key, &stored)
}
