package store

import (
	"fmt"
	"time"

	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/mapping"
	bolt "go.etcd.io/bbolt"
)

// Decider is what Ingest needs from a mapping: *mapping.Table implements it.
type Decider interface {
	OrderID(ev *digishare.Event) (string, bool)
	Decide(ev *digishare.Event, st mapping.OrderState, opt mapping.Options) mapping.Decision
}

var _ Decider = (*mapping.Table)(nil)

// Incoming is a webhook call to store.
type Incoming struct {
	Raw        []byte           // the body, stored byte for byte
	Event      *digishare.Event // decoded (never nil; may be partial when Invalid is set)
	Invalid    string           // non-empty: JSON of the wrong shape, stored as invalid with this reason
	ReceivedAt time.Time
}

// IngestResult says what Ingest stored.
type IngestResult struct {
	EventID    string
	Duplicate  bool // a repeat: EventID is the first event's id; nothing new stored
	State      mapping.Outcome
	Decision   *mapping.Decision // nil for duplicates and invalid events
	Deliveries []Delivery        // created by this event
}

// Ingest deduplicates, decides and stores one webhook call — the event, its
// payload, its dedup key, the order's new state and the deliveries it causes —
// in one transaction, and returns only after that transaction is on disk.
// It returns ErrOverloaded when the commit queue is full, ErrClosed during
// shutdown and a wrapped bbolt error when the commit failed; in every error
// case nothing was stored.
func (db *DB) Ingest(in Incoming, dec Decider) (IngestResult, error) {
	var res IngestResult
	stored := compress(in.Raw) // here, in parallel, not in the single committer
	err := db.submit(func(tx *bolt.Tx) error {
		res = IngestResult{}
		return db.ingestTx(tx, in, stored, dec, &res)
	}, true, true)
	if err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

func (db *DB) ingestTx(tx *bolt.Tx, in Incoming, stored []byte, dec Decider, res *IngestResult) error {
	dedup := tx.Bucket(bucketDedup)
	dkey := in.Event.DedupKey[:dedupKeyLen]
	first := dedup.Get(dkey)
	if first == nil && db.legacyDedup {
		first = dedup.Get(in.Event.DedupKey[:])
	}
	if first != nil {
		res.EventID, res.Duplicate = idString(first), true
		var ev Event
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
	ev := &Event{
		ID:         id.String(),
		ReceivedAt: in.ReceivedAt.UTC(),
		Name:       in.Event.Name,
		TicketID:   in.Event.TicketID,
		DedupKey:   dkey,
		payload:    stored,
	}
	if in.Invalid != "" {
		ev.State, ev.Error = mapping.Invalid, in.Invalid
	} else {
		d, created, err := decideTx(tx, ev, in.Event, dec, mapping.Options{}, in.ReceivedAt)
		if err != nil {
			return err
		}
		res.Decision, res.Deliveries = &d, created
	}
	if err := putRecord(tx.Bucket(bucketEvents), id[:], ev); err != nil {
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
func orderStateTx(tx *bolt.Tx, orderID string) (mapping.OrderState, error) {
	st := mapping.OrderState{}
	if orderID == "" {
		return st, nil
	}
	if _, err := getRecord(tx.Bucket(bucketOrders), []byte(orderID), &st); err != nil {
		return st, err
	}
	for target, ts := range st.Targets {
		ts.Live = true
		if key, err := idKey(ts.DeliveryID); err == nil {
			var d Delivery
			if found, err := getRecord(tx.Bucket(bucketDeliveries), key, &d); err != nil {
				return st, err
			} else if found {
				ts.Live = d.live()
			}
		}
		st.Targets[target] = ts
	}
	return st, nil
}

// decideTx decides ev under dec with the order's current state, records the
// decision on ev, creates its deliveries and advances the order's state.
func decideTx(tx *bolt.Tx, ev *Event, dev *digishare.Event, dec Decider, opt mapping.Options, now time.Time) (mapping.Decision, []Delivery, error) {
	orderID, _ := dec.OrderID(dev)
	st, err := orderStateTx(tx, orderID)
	if err != nil {
		return mapping.Decision{}, nil, err
	}
	d := dec.Decide(dev, st, opt)
	created, err := applyTx(tx, ev, st, d, opt.Force, now)
	return d, created, err
}

// applyTx records decision d on ev, creates its deliveries and advances the
// order's state.
func applyTx(tx *bolt.Tx, ev *Event, st mapping.OrderState, d mapping.Decision, force bool, now time.Time) ([]Delivery, error) {
	ev.State, ev.OrderID = d.Outcome, d.OrderID
	ev.Decisions = append(ev.Decisions, d)
	if d.Outcome != mapping.Dispatched && d.Outcome != mapping.Unchanged {
		return nil, nil
	}
	var created []Delivery
	if d.Outcome == mapping.Dispatched {
		if st.Targets == nil {
			st.Targets = map[string]mapping.TargetState{}
		}
		for _, p := range d.Deliveries {
			id, err := newID()
			if err != nil {
				return nil, err
			}
			del := Delivery{
				ID: id.String(), EventID: ev.ID, OrderID: d.OrderID, Target: p.Target,
				Status: p.Status, StatusID: d.StatusID, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
				State: Pending, Force: force,
			}
			if p.Skip != "" {
				del.State, del.Reason = Skipped, p.Skip
			} else if err := tx.Bucket(bucketPending).Put(id[:], nil); err != nil {
				return nil, fmt.Errorf("store: queue delivery %s: %w", del.ID, err)
			}
			if err := putRecord(tx.Bucket(bucketDeliveries), id[:], &del); err != nil {
				return nil, fmt.Errorf("store: put delivery %s: %w", del.ID, err)
			}
			st.Targets[p.Target] = mapping.TargetState{Status: p.Status, DeliveryID: del.ID}
			ev.DeliveryIDs = append(ev.DeliveryIDs, del.ID)
			created = append(created, del)
		}
	}
	st = mapping.Advance(st, d)
	if err := putRecord(tx.Bucket(bucketOrders), []byte(d.OrderID), &st); err != nil {
		return nil, fmt.Errorf("store: put order %s: %w", d.OrderID, err)
	}
	return created, nil
}
