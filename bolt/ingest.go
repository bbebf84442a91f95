package bolt

import (
	"fmt"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	bbolt "go.etcd.io/bbolt"
)

// Ingest deduplicates, decides and stores one webhook call — the event, its
// payload, its dedup key, the order's new state and the deliveries it causes —
// in one transaction, and returns only after that transaction is on disk.
// It returns ErrOverloaded when the commit queue is full, ErrClosed during
// shutdown and a wrapped bbolt error when the commit failed; in every error
// case nothing was stored.
func (db *DB) Ingest(in bridge.Incoming, dec bridge.Decider) (bridge.IngestResult, error) {
	var res bridge.IngestResult
	stored := compress(in.Raw) // here, in parallel, not in the single committer
	err := db.submit(func(tx *bbolt.Tx) error {
		res = bridge.IngestResult{}
		return db.ingestTx(tx, in, stored, dec, &res)
	}, true, true)
	if err != nil {
		return bridge.IngestResult{}, err
	}
	return res, nil
}

func (db *DB) ingestTx(tx *bbolt.Tx, in bridge.Incoming, stored []byte, dec bridge.Decider, res *bridge.IngestResult) error {
	dedup := tx.Bucket(bucketDedup)
	dkey := in.Update.DedupKey[:dedupKeyLen]
	first := dedup.Get(dkey)
	if first == nil && db.legacyDedup {
		first = dedup.Get(in.Update.DedupKey[:])
	}
	if first != nil {
		res.EventID, res.Duplicate = idString(first), true
		var ev bridge.Event
		if _, err := getRecord(tx.Bucket(bucketEvents), first, &ev); err != nil {
			return err
		}
		res.State = ev.State
		return nil
	}
	id, err := newID()
	if err != nil {
		return err
	}
	ev := &bridge.Event{
		ID:         id.String(),
		ReceivedAt: in.ReceivedAt.UTC(),
		Name:       in.Update.Name,
		TicketID:   in.Update.TicketID,
		DedupKey:   dkey,
	}
	if in.Invalid != "" {
		ev.State, ev.Error = bridge.EventInvalid, in.Invalid
	} else {
		d, created, err := decideTx(tx, ev, in.Update, dec, bridge.DecideOptions{}, in.ReceivedAt)
		if err != nil {
			return err
		}
		res.Decision, res.Deliveries = &d, created
	}
	if err := putRecord(tx.Bucket(bucketEvents), id[:], eventPayload{ev, stored}); err != nil {
		return fmt.Errorf("store: put event %s: %w", ev.ID, err)
	}
	if err := dedup.Put(dkey, id[:]); err != nil {
		return fmt.Errorf("store: put dedup key for %s: %w", ev.ID, err)
	}
	res.EventID, res.State = ev.ID, ev.State
	return nil
}

// orderStateTx reads an order's state, with each target's last delivery
// marked live or not. A delivery deleted by retention counts as live: only
// finished deliveries are ever deleted.
func orderStateTx(tx *bbolt.Tx, orderID string) (bridge.OrderState, error) {
	st := bridge.OrderState{}
	if orderID == "" {
		return st, nil
	}
	if _, err := getRecord(tx.Bucket(bucketOrders), []byte(orderID), &st); err != nil {
		return st, err
	}
	for target, ts := range st.Targets {
		ts.Live = true
		if key, err := idKey(ts.DeliveryID); err == nil {
			var d bridge.Delivery
			if found, err := getRecord(tx.Bucket(bucketDeliveries), key, &d); err != nil {
				return st, err
			} else if found {
				ts.Live = d.Live()
			}
		}
		st.Targets[target] = ts
	}
	return st, nil
}

// decideTx decides ev under dec with the order's current state, records the
// decision on ev, creates its deliveries and advances the order's state.
func decideTx(tx *bbolt.Tx, ev *bridge.Event, dev *digishare.Update, dec bridge.Decider, opt bridge.DecideOptions, now time.Time) (bridge.Decision, []bridge.Delivery, error) {
	orderID, _ := dec.OrderID(dev)
	st, err := orderStateTx(tx, orderID)
	if err != nil {
		return bridge.Decision{}, nil, err
	}
	d := dec.Decide(dev, st, opt)
	created, err := applyTx(tx, ev, st, d, opt.Force, now)
	return d, created, err
}

// applyTx records decision d on ev, creates its deliveries and advances the
// order's state.
func applyTx(tx *bbolt.Tx, ev *bridge.Event, st bridge.OrderState, d bridge.Decision, force bool, now time.Time) ([]bridge.Delivery, error) {
	ev.State, ev.OrderID = d.Outcome, d.OrderID
	ev.Decisions = append(ev.Decisions, d)
	if d.Outcome != bridge.EventDispatched && d.Outcome != bridge.EventUnchanged {
		return nil, nil
	}
	var created []bridge.Delivery
	if d.Outcome == bridge.EventDispatched {
		if st.Targets == nil {
			st.Targets = map[string]bridge.TargetState{}
		}
		for _, p := range d.Deliveries {
			id, err := newID()
			if err != nil {
				return nil, err
			}
			del := bridge.Delivery{
				ID: id.String(), EventID: ev.ID, OrderID: d.OrderID, Target: p.Target,
				Status: p.Status, StatusID: d.StatusID, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
				State: bridge.Pending, Force: force,
			}
			if del.RetryOf, err = deadDeliveryOf(tx, ev, p.Target); err != nil { // a replay of a dead delivery
				return nil, err
			}
			if p.Skip != "" {
				del.State, del.Reason = bridge.Skipped, p.Skip
			} else if err := tx.Bucket(bucketPending).Put(id[:], nil); err != nil {
				return nil, fmt.Errorf("store: queue delivery %s: %w", del.ID, err)
			}
			if err := putRecord(tx.Bucket(bucketDeliveries), id[:], &del); err != nil {
				return nil, fmt.Errorf("store: put delivery %s: %w", del.ID, err)
			}
			st.Targets[p.Target] = bridge.TargetState{Status: p.Status, DeliveryID: del.ID}
			ev.DeliveryIDs = append(ev.DeliveryIDs, del.ID)
			created = append(created, del)
		}
	}
	st = bridge.Advance(st, d)
	if err := putRecord(tx.Bucket(bucketOrders), []byte(d.OrderID), &st); err != nil {
		return nil, fmt.Errorf("store: put order %s: %w", d.OrderID, err)
	}
	return created, nil
}
