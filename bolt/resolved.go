package bolt

import (
	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// A dead delivery that a person retried, or whose event was replayed for its
// target, has a successor (Delivery.RetryOf). When the successor is done the
// dead one is marked resolved by it, so a listing of dead deliveries shows
// what still needs a person.

// maxRetryChain bounds the predecessors marked resolved by one success.
const maxRetryChain = 100

// deadDeliveryOf returns the newest dead delivery of ev for target, the one
// a replay creating a new delivery for that target retries ("" for none).
// At ingest an event has no deliveries yet: nothing is read.
func deadDeliveryOf(tx *bbolt.Tx, ev *bridge.Event, target string) (string, error) {
	b := tx.Bucket(bucketDeliveries)
	for i := len(ev.DeliveryIDs) - 1; i >= 0; i-- {
		key, err := idKey(ev.DeliveryIDs[i])
		if err != nil {
			continue
		}
		var d bridge.Delivery
		found, err := getRecord(b, key, &d)
		if err != nil {
			return "", err
		}
		if found && d.Target == target && d.State == bridge.Dead {
			return d.ID, nil
		}
	}
	return "", nil
}

// resolveDeadTx marks the dead delivery d retries (and the ones that one
// retried in turn) resolved by d, which is done.
func resolveDeadTx(tx *bbolt.Tx, d *bridge.Delivery) error {
	b := tx.Bucket(bucketDeliveries)
	prev := d.RetryOf
	for range maxRetryChain {
		key, err := idKey(prev)
		if err != nil {
			return nil
		}
		var p bridge.Delivery
		found, err := getRecord(b, key, &p)
		if err != nil || !found {
			return err // deleted by retention: the chain ends here
		}
		if p.State == bridge.Dead && p.ResolvedBy == "" {
			p.ResolvedBy = d.ID
			if err := putRecord(b, key, &p); err != nil {
				return err
			}
		}
		if p.RetryOf == "" {
			return nil
		}
		prev = p.RetryOf
	}
	return nil
}

// listedDead reports whether a delivery belongs in a listing of state: a
// dead delivery resolved by a done retry is listed only when asked for.
func listedDead(d *bridge.Delivery, state string, includeResolved bool) bool {
	return state != string(bridge.Dead) || includeResolved || d.ResolvedBy == ""
}

// hasDeliveryInState reports whether one of ev's deliveries is in state
// (in_flight: pending on disk; dead: not resolved, unless includeResolved).
func hasDeliveryInState(tx *bbolt.Tx, ev *bridge.Event, state string, includeResolved bool) (bool, error) {
	if state == string(bridge.InFlight) {
		state = string(bridge.Pending)
	}
	b := tx.Bucket(bucketDeliveries)
	for _, id := range ev.DeliveryIDs {
		key, err := idKey(id)
		if err != nil {
			continue
		}
		var d bridge.Delivery
		found, err := getRecord(b, key, &d)
		if err != nil {
			return false, err
		}
		if found && string(d.State) == state && listedDead(&d, state, includeResolved) {
			return true, nil
		}
	}
	return false, nil
}
