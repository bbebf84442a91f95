package postgres

import (
	"context"
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
)

// Copying a bbolt store in (statusbridge store copy): the records are
// written with the same statements as the service's own writes (PutEvent,
// PutDelivery, PutOrder; CopyIntakes for the order intake's records and
// durable claims), so every field they store is carried (a delivery's retry
// links too); CopyConsole writes the console's jobs and actions with their
// own ids; dedup keys, which
// live in the events' rows here, and no-repeat keys, which the service
// writes only as side effects, have statements of their own.

// CopyBatch is a batch of records copied from another store, written in one
// transaction. Deliveries must come in the order the source committed them
// (their ids' order): each one's place in its (order, target) lane is the
// order it is written in.
type CopyBatch struct {
	Events     []CopiedEvent
	Deliveries []bridge.Delivery
	Orders     []CopiedOrder
	// Dedup keys of events copied before: each is set on its event's row
	// (where the event itself did not carry it).
	Dedup []CopiedDedup
	Once  []CopiedOnce
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

// Len returns how many records the batch holds.
func (b *CopyBatch) Len() int {
	return len(b.Events) + len(b.Deliveries) + len(b.Orders) + len(b.Dedup) + len(b.Once)
}

// CopyIn writes a batch in one transaction and returns once it is
// committed. A record already in the store is overwritten (events,
// deliveries, orders, dedup keys) or kept (no-repeat keys).
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
		for _, d := range b.Dedup {
			uid, err := parseID("event", d.EventID)
			if err != nil {
				return fmt.Errorf("postgres: copy dedup key: %w", err)
			}
			key := d.Key[:min(len(d.Key), dedupKeyLen)]
			if err := t.write("copy the dedup key of event "+d.EventID, []string{"events:" + d.EventID},
				`UPDATE events SET dedup_key = $2 WHERE id = $1 AND dedup_key IS DISTINCT FROM $2`, uid, key); err != nil {
				return err
			}
		}
		for _, o := range b.Once {
			uid, err := parseID("delivery", o.DeliveryID)
			if err != nil {
				return fmt.Errorf("postgres: copy no-repeat key %q: %w", o.Key, err)
			}
			if err := t.write("copy no-repeat key", []string{"once:" + o.Key},
				`INSERT INTO once (key, delivery_id) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, text(o.Key), uid); err != nil {
				return err
			}
		}
		return nil
	})
}

// Copy counts, by kind: what CopyCounts returns.
const (
	CountEvents       = "events"
	CountPayloads     = "events with a payload"
	CountDeliveries   = "deliveries"
	CountPending      = "pending deliveries"
	CountOrders       = "order states"
	CountDedup        = "dedup keys"
	CountOnce         = "no-repeat keys"
	CountClaims       = "durable claims"
	CountIntakes      = "order intakes"
	CountOrderIntakes = "orders' intake records"
	CountJobs         = "jobs"
	CountActions      = "operator actions"
)

// CopyCounts counts the records of each kind, exactly (for the check at the
// end of a copy, and to refuse a target that is not empty).
func (db *DB) CopyCounts(ctx context.Context) (map[string]int, error) {
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	var ev, pl, del, pend, ord, dd, once int
	err = db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM events WHERE payload IS NOT NULL),
		(SELECT count(*) FROM deliveries), (SELECT count(*) FROM deliveries WHERE state = 'pending'),
		(SELECT count(*) FROM orders), (SELECT count(*) FROM events WHERE dedup_key IS NOT NULL), (SELECT count(*) FROM once)`).
		Scan(&ev, &pl, &del, &pend, &ord, &dd, &once)
	release() // IntakeCounts enters on its own
	if err != nil {
		return nil, db.fail(ctx, "count records", err)
	}
	intakes, orderIntakes, claims, err := db.IntakeCounts(ctx)
	if err != nil {
		return nil, err
	}
	jobs, actions, err := db.ConsoleCounts(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]int{CountEvents: ev, CountPayloads: pl, CountDeliveries: del, CountPending: pend,
		CountOrders: ord, CountDedup: dd, CountOnce: once, CountClaims: claims,
		CountIntakes: intakes, CountOrderIntakes: orderIntakes, CountJobs: jobs, CountActions: actions}, nil
}

// Empty reports whether the store holds no record of any kind (a copy's
// target must be empty); when it does, what names the first kind found.
func (db *DB) Empty(ctx context.Context) (empty bool, what string, err error) {
	n, err := db.CopyCounts(ctx)
	if err != nil {
		return false, "", err
	}
	for _, k := range []string{CountEvents, CountDeliveries, CountOrders, CountOnce, CountIntakes, CountOrderIntakes, CountClaims, CountJobs, CountActions} {
		if n[k] > 0 {
			return false, fmt.Sprintf("%d %s", n[k], k), nil
		}
	}
	return true, "", nil
}
