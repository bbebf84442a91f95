package bolt

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	bbolt "go.etcd.io/bbolt"
)

const replayChunk = 200

// Replay re-decides the selected events, oldest first, under dec (the
// mapping in force). Each replay appends a decision to its event; the
// original is kept. Superseded and unchanged still hold unless forced.
func (db *DB) Replay(sel bridge.ReplaySelector, dec bridge.Decider, opt bridge.ReplayOptions, now time.Time) (bridge.ReplaySummary, error) {
	if sel.Empty() {
		return bridge.ReplaySummary{}, bridge.ErrNoSelector
	}
	ids, missing, err := db.selectEvents(sel, opt.Targets)
	if err != nil {
		return bridge.ReplaySummary{}, err
	}
	sum := bridge.ReplaySummary{Matched: len(ids) + len(missing), Failed: len(missing), DryRun: opt.DryRun, Requests: []bridge.ReplayedDelivery{}}
	for _, id := range missing {
		sum.Errors = append(sum.Errors, fmt.Sprintf("event %s: not found", id))
	}
	return sum, db.redecide(ids, dec, bridge.DecideOptions{Force: opt.Force, Targets: opt.Targets}, opt, now, &sum)
}

// RedecideUnmapped decides again, under dec, the events held as unmapped
// whose status id is in statusIDs (after a mapping reload gave them an
// entry), oldest first.
func (db *DB) RedecideUnmapped(statusIDs []string, dec bridge.Decider, now time.Time) (bridge.ReplaySummary, error) {
	var ids []string
	err := db.eachEvent(bridge.EventFilter{State: string(bridge.EventUnmapped)}, func(ev *bridge.Event) {
		if len(ev.Decisions) > 0 && slices.Contains(statusIDs, ev.Decisions[len(ev.Decisions)-1].StatusID) {
			ids = append(ids, ev.ID)
		}
	})
	if err != nil {
		return bridge.ReplaySummary{}, err
	}
	slices.Reverse(ids)
	sum := bridge.ReplaySummary{Matched: len(ids), Requests: []bridge.ReplayedDelivery{}}
	return sum, db.redecide(ids, dec, bridge.DecideOptions{}, bridge.ReplayOptions{}, now, &sum)
}

// eachEvent calls fn for every event matching f, newest first, one page (one
// short read transaction) at a time.
func (db *DB) eachEvent(f bridge.EventFilter, fn func(ev *bridge.Event)) error {
	f.Limit = 1000
	return eachPage(func(cursor string) ([]bridge.Event, string, error) {
		f.Cursor = cursor
		return db.ListEvents(f)
	}, fn)
}

// eachDelivery is eachEvent for deliveries.
func (db *DB) eachDelivery(f bridge.DeliveryFilter, fn func(d *bridge.Delivery)) error {
	f.Limit = 1000
	return eachPage(func(cursor string) ([]bridge.Delivery, string, error) {
		f.Cursor = cursor
		return db.ListDeliveries(f)
	}, fn)
}

// eachPage calls fn for every item of a listing, page after page from its
// start.
func eachPage[T any](list func(cursor string) ([]T, string, error), fn func(*T)) error {
	cursor := ""
	for {
		items, next, err := list(cursor)
		if err != nil {
			return err
		}
		for i := range items {
			fn(&items[i])
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// selectEvents returns the ids to replay, oldest first, and the requested
// ids that do not exist.
func (db *DB) selectEvents(sel bridge.ReplaySelector, targets []string) (ids, missing []string, err error) {
	switch {
	case len(sel.EventIDs) > 0:
		for _, id := range sel.EventIDs {
			if _, _, err := db.GetEvent(id); errors.Is(err, bridge.ErrNotFound) {
				missing = append(missing, id)
			} else if err != nil {
				return nil, nil, err
			} else if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids) // time-ordered ids: oldest first
		return ids, missing, nil
	case sel.Dead:
		seen := map[string]bool{}
		err := db.eachDelivery(bridge.DeliveryFilter{State: string(bridge.Dead)}, func(d *bridge.Delivery) {
			if (len(targets) == 0 || slices.Contains(targets, d.Target)) && !seen[d.EventID] {
				seen[d.EventID] = true
				ids = append(ids, d.EventID)
			}
		})
		slices.Sort(ids) // time-ordered ids: oldest first
		return ids, nil, err
	}
	err = db.eachEvent(bridge.EventFilter{OrderID: sel.OrderID, Since: sel.Since, Until: sel.Until, State: sel.State},
		func(ev *bridge.Event) { ids = append(ids, ev.ID) })
	slices.Reverse(ids) // listed newest first
	return ids, nil, err
}

// redecide decides the events in chunks: each chunk is one group commit (or,
// dry, one read transaction with the order states simulated in memory).
func (db *DB) redecide(ids []string, dec bridge.Decider, mopt bridge.DecideOptions, opt bridge.ReplayOptions, now time.Time, sum *bridge.ReplaySummary) error {
	sim := map[string]bridge.OrderState{} // dry run: order states as the replay would leave them
	for start := 0; start < len(ids); start += replayChunk {
		chunk := ids[start:min(start+replayChunk, len(ids))]
		var part bridge.ReplaySummary
		fn := func(tx *bbolt.Tx) error {
			part = bridge.ReplaySummary{}
			for _, id := range chunk {
				if err := replayOneTx(tx, id, dec, mopt, opt.DryRun, sim, now, &part); err != nil {
					return err
				}
			}
			return nil
		}
		var err error
		if opt.DryRun {
			err = db.view(fn)
		} else {
			err = db.submit(fn, false, true)
		}
		if err != nil {
			sum.Failed += len(chunk)
			sum.Errors = append(sum.Errors, err.Error())
			return fmt.Errorf("store: replay: %w", err)
		}
		sum.Dispatched += part.Dispatched
		sum.Superseded += part.Superseded
		sum.Unchanged += part.Unchanged
		sum.Skipped += part.Skipped
		sum.Failed += part.Failed
		sum.Errors = append(sum.Errors, part.Errors...)
		sum.Requests = append(sum.Requests, part.Requests...)
		if opt.Progress != nil {
			opt.Progress(start+len(chunk), len(ids))
		}
	}
	return nil
}

func replayOneTx(tx *bbolt.Tx, id string, dec bridge.Decider, mopt bridge.DecideOptions, dry bool, sim map[string]bridge.OrderState, now time.Time, sum *bridge.ReplaySummary) error {
	key, err := idKey(id)
	if err != nil {
		return err
	}
	var ev bridge.Event
	found, err := getRecord(tx.Bucket(bucketEvents), key, &ev)
	if err != nil {
		return err
	}
	if !found {
		sum.Failed++
		sum.Errors = append(sum.Errors, fmt.Sprintf("event %s: not found", id))
		return nil
	}
	if ev.State == bridge.EventInvalid {
		sum.Skipped++
		return nil
	}
	raw, err := decompress(storedPayload(tx, key))
	if err != nil {
		return err
	}
	dev, err := digishare.Decode(raw)
	if err != nil {
		sum.Skipped++
		return nil
	}
	orderID, _ := dec.OrderID(dev)
	st, ok := sim[orderID]
	if !ok {
		if st, err = orderStateTx(tx, orderID); err != nil {
			return err
		}
	}
	d := dec.Decide(dev, st, mopt)
	switch d.Outcome {
	case bridge.EventDispatched:
		sum.Dispatched++
	case bridge.EventSuperseded:
		sum.Superseded++
	case bridge.EventUnchanged:
		sum.Unchanged++
	default:
		sum.Skipped++
	}
	if dry {
		for _, p := range d.Deliveries {
			sum.Requests = append(sum.Requests, bridge.ReplayedDelivery{EventID: id, OrderID: d.OrderID, Target: p.Target, Status: p.Status, Skip: p.Skip})
		}
		if d.Outcome == bridge.EventDispatched || d.Outcome == bridge.EventUnchanged {
			next := bridge.Advance(st, d)
			next.Targets = maps(st.Targets)
			for _, p := range d.Deliveries {
				next.Targets[p.Target] = bridge.TargetState{Status: p.Status, Live: p.Skip == ""}
			}
			sim[orderID] = next
		}
		return nil
	}
	created, err := applyTx(tx, &ev, st, d, mopt.Force, now)
	if err != nil {
		return err
	}
	for _, c := range created {
		sum.Requests = append(sum.Requests, bridge.ReplayedDelivery{EventID: id, OrderID: c.OrderID, Target: c.Target, Status: c.Status, Skip: c.Reason})
	}
	return putRecord(tx.Bucket(bucketEvents), key, &ev)
}

func maps(m map[string]bridge.TargetState) map[string]bridge.TargetState {
	out := make(map[string]bridge.TargetState, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// RetryDelivery queues a dead delivery again, as a new delivery with the same
// order, target and status. It refuses (ErrConflict) a delivery that is not
// dead, or one a newer delivery for the same order and target replaced:
// sending it would put an older status over a newer one.
func (db *DB) RetryDelivery(id string, now time.Time) (*bridge.Delivery, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	var out bridge.Delivery
	err = db.submit(func(tx *bbolt.Tx) error {
		var old bridge.Delivery
		found, err := getRecord(tx.Bucket(bucketDeliveries), key, &old)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
		}
		if old.State != bridge.Dead {
			return &bridge.ConflictError{Msg: fmt.Sprintf("delivery %s is %s; only dead deliveries can be retried", id, old.State)}
		}
		st, err := orderStateTx(tx, old.OrderID)
		if err != nil {
			return err
		}
		if st.Targets[old.Target].DeliveryID != id {
			return &bridge.ConflictError{Msg: fmt.Sprintf("a newer delivery (%s) for order %s and target %s exists; retrying this one would send an older status",
				st.Targets[old.Target].DeliveryID, old.OrderID, old.Target)}
		}
		nid, err := newID()
		if err != nil {
			return err
		}
		out = bridge.Delivery{ID: nid.String(), EventID: old.EventID, OrderID: old.OrderID, Target: old.Target,
			Status: old.Status, StatusID: old.StatusID, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
			State: bridge.Pending, Force: old.Force, Reason: "retry of " + id, RetryOf: id}
		if err := putRecord(tx.Bucket(bucketDeliveries), nid[:], &out); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPending).Put(nid[:], nil); err != nil {
			return err
		}
		ts := st.Targets[old.Target]
		ts.DeliveryID = out.ID
		st.Targets[old.Target] = ts
		if err := putRecord(tx.Bucket(bucketOrders), []byte(old.OrderID), &st); err != nil {
			return err
		}
		evKey, err := idKey(old.EventID)
		if err != nil {
			return err
		}
		var ev bridge.Event
		if found, err := getRecord(tx.Bucket(bucketEvents), evKey, &ev); err != nil || !found {
			return err
		}
		ev.DeliveryIDs = append(ev.DeliveryIDs, out.ID)
		return putRecord(tx.Bucket(bucketEvents), evKey, &ev)
	}, false, true)
	if err != nil {
		return nil, err
	}
	return &out, nil
}
