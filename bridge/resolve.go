package bridge

import (
	"errors"
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
func deadDeliveryOf(tx Tx, ev *Event, target string) (string, error) {
	for i := len(ev.DeliveryIDs) - 1; i >= 0; i-- {
		d, err := tx.Delivery(ev.DeliveryIDs[i])
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		if d.Target == target && d.State == Dead {
			return d.ID, nil
		}
	}
	return "", nil
}

// ResolveRetried marks the dead delivery d retries (and the ones that one
// retried in turn) resolved by d, which is done. A backend calls it in the
// transaction that records d done.
func ResolveRetried(tx Tx, d *Delivery) error {
	prev := d.RetryOf
	for range maxRetryChain {
		if prev == "" {
			return nil
		}
		p, err := tx.Delivery(prev)
		if errors.Is(err, ErrNotFound) {
			return nil // deleted by retention: the chain ends here
		}
		if err != nil {
			return err
		}
		if p.State == Dead && p.ResolvedBy == "" {
			p.ResolvedBy = d.ID
			if err := tx.PutDelivery(p); err != nil {
				return err
			}
		}
		prev = p.RetryOf
	}
	return nil
}

// ListedDead reports whether a delivery belongs in a listing of state: a dead
// delivery resolved by a done retry is listed only when asked for.
func ListedDead(d *Delivery, state string, includeResolved bool) bool {
	return state != string(Dead) || includeResolved || d.ResolvedBy == ""
}
