package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// Copying another store in (statusbridge store copy): the records are
// written with the same statements as the service's own writes (PutEvent,
// PutDelivery, PutOrder), so every field they store is carried; dedup keys,
// no-repeat keys and durable claims, which the service writes only as side
// effects, have statements of their own here.

// CopyBatch is a batch of records copied from another store, written in one
// transaction. Deliveries must come in the order the source committed them
// (their ids' order): each one's place in its (order, target) lane is the
// order it is written in.
type CopyBatch struct {
	Events     []CopiedEvent
	Deliveries []bridge.Delivery
	Orders     []CopiedOrder
	Dedup      []CopiedDedup
	Once       []CopiedOnce
	// Claims are deliveries a sender of the source had claimed durably (a
	// request sent, its outcome not recorded). They are written as claims
	// of CopiedClaimer whose lease has lapsed, so they stay visible while
	// the next sender sends them again, as the bbolt store does at its next
	// start (settling them otherwise is TakeOver's settleDurableClaims).
	Claims []string
}

// CopiedEvent is an event with its stored payload as internal/payload
// writes it (both stores keep payloads the same way).
type CopiedEvent struct {
	Event  bridge.Event
	Stored []byte
}

// CopiedOrder is an order's state.
type CopiedOrder struct {
	ID    string
	State bridge.OrderState
}

// CopiedDedup is a dedup key (its first 16 bytes are kept, as Tx.ClaimDedup
// does) and the event it belongs to.
type CopiedDedup struct {
	Key     []byte
	EventID string
}

// CopiedOnce is a no-repeat key and the done delivery that recorded it.
type CopiedOnce struct {
	Key        string
	DeliveryID string
}

// CopiedClaimer is the sender name of durable claims copied from another
// store.
const CopiedClaimer = "copied durable claim"

// Len returns how many records the batch holds.
func (b *CopyBatch) Len() int {
	return len(b.Events) + len(b.Deliveries) + len(b.Orders) + len(b.Dedup) + len(b.Once) + len(b.Claims)
}

// CopyIn writes a batch in one transaction and returns once it is
// committed. A record already in the store is overwritten (events,
// deliveries, orders) or kept (dedup and no-repeat keys).
func (db *DB) CopyIn(ctx context.Context, b *CopyBatch) error {
	return db.Update(ctx, bridge.UpdateOptions{}, func(btx bridge.Tx) error {
		t := btx.(*tx)
		for i := range b.Events {
			ev := b.Events[i].Event
			if len(ev.DedupKey) > dedupKeyLen {
				ev.DedupKey = ev.DedupKey[:dedupKeyLen]
			}
			if err := t.PutEvent(&ev, b.Events[i].Stored); err != nil {
				return err
			}
		}
		for i := range b.Deliveries {
			if err := t.PutDelivery(&b.Deliveries[i]); err != nil {
				return err
			}
		}
		for _, o := range b.Orders {
			if err := t.PutOrder(o.ID, o.State); err != nil {
				return err
			}
		}
		if len(b.Dedup) > 0 {
			keys := make([][]byte, len(b.Dedup))
			ids := make([]string, len(b.Dedup))
			for i, d := range b.Dedup {
				keys[i], ids[i] = d.Key[:min(len(d.Key), dedupKeyLen)], d.EventID
			}
			if err := t.write("copy dedup keys", `INSERT INTO dedup (key, event_id)
				SELECT * FROM unnest($1::bytea[], $2::uuid[]) ON CONFLICT (key) DO NOTHING`, keys, ids); err != nil {
				return err
			}
		}
		if len(b.Once) > 0 {
			keys := make([]string, len(b.Once))
			ids := make([]string, len(b.Once))
			for i, o := range b.Once {
				keys[i], ids[i] = text(o.Key), o.DeliveryID
			}
			if err := t.write("copy no-repeat keys", `INSERT INTO once (key, delivery_id)
				SELECT * FROM unnest($1::text[], $2::uuid[]) ON CONFLICT (key) DO NOTHING`, keys, ids); err != nil {
				return err
			}
		}
		if len(b.Claims) > 0 {
			if err := t.write("copy durable claims", `UPDATE deliveries SET claimed_by = $2, claimed_until = $3
				WHERE id = ANY($1::uuid[]) AND state = 'pending'`, b.Claims, CopiedClaimer, time.Now().UTC()); err != nil {
				return err
			}
		}
		return nil
	})
}

// Copy counts, by kind: what CopyCounts returns.
const (
	CountEvents     = "events"
	CountPayloads   = "events with a payload"
	CountDeliveries = "deliveries"
	CountPending    = "pending deliveries"
	CountOrders     = "order states"
	CountDedup      = "dedup keys"
	CountOnce       = "no-repeat keys"
	CountClaims     = "durable claims"
)

// CopyCounts counts the records of each kind, exactly (for the check at the
// end of a copy, and to refuse a target that is not empty).
func (db *DB) CopyCounts(ctx context.Context) (map[string]int, error) {
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	var ev, pl, del, pend, ord, dd, once, claims int
	err = db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM events WHERE payload IS NOT NULL),
		(SELECT count(*) FROM deliveries), (SELECT count(*) FROM deliveries WHERE state = 'pending'),
		(SELECT count(*) FROM orders), (SELECT count(*) FROM dedup), (SELECT count(*) FROM once),
		(SELECT count(*) FROM deliveries WHERE claimed_by = $1)`, CopiedClaimer).
		Scan(&ev, &pl, &del, &pend, &ord, &dd, &once, &claims)
	if err != nil {
		return nil, db.fail(ctx, "count records", err)
	}
	return map[string]int{CountEvents: ev, CountPayloads: pl, CountDeliveries: del, CountPending: pend,
		CountOrders: ord, CountDedup: dd, CountOnce: once, CountClaims: claims}, nil
}

// Empty reports whether the store holds no record of any kind (a copy's
// target must be empty); when it does, what names the first kind found.
func (db *DB) Empty(ctx context.Context) (empty bool, what string, err error) {
	n, err := db.CopyCounts(ctx)
	if err != nil {
		return false, "", err
	}
	for _, k := range []string{CountEvents, CountDeliveries, CountOrders, CountDedup, CountOnce} {
		if n[k] > 0 {
			return false, fmt.Sprintf("%d %s", n[k], k), nil
		}
	}
	return true, "", nil
}
