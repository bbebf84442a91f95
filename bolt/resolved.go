package bolt

import (
	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

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
		if found && string(d.State) == state && bridge.ListedDead(&d, state, includeResolved) {
			return true, nil
		}
	}
	return false, nil
}
