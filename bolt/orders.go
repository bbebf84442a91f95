package bolt

import (
	"bytes"
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// hasOrderIndex reports whether the file has the order index (a read-only
// store written by an earlier build may not).
func (db *DB) hasOrderIndex() bool {
	found := false
	_ = db.view(func(tx *bbolt.Tx) error {
		found = tx.Bucket(bucketOrderEvents) != nil
		return nil
	})
	return found
}

// listOrderEvents is ListEvents for a filter with an order id: it walks
// that order's entries of the order index, newest first, from just before
// start (nil: the newest), so it reads only the order's own events.
func (db *DB) listOrderEvents(f bridge.EventFilter, limit int, start []byte) ([]bridge.Event, string, error) {
	out := []bridge.Event{}
	next := ""
	prefix := append([]byte(f.OrderID), 0)
	upper := append(append([]byte(nil), prefix...), start...)
	if start == nil {
		upper = append(upper, bytes.Repeat([]byte{0xff}, 17)...)
	}
	err := db.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketOrderEvents).Cursor()
		events := tx.Bucket(bucketEvents)
		k, _ := c.Seek(upper)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			key := k[len(prefix):]
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			var ev bridge.Event
			found, err := getRecord(events, key, &ev)
			if err != nil {
				return fmt.Errorf("store: decode event %s: %w", idString(key), err)
			}
			if !found || ev.OrderID != f.OrderID {
				continue
			}
			if !f.Since.IsZero() && ev.ReceivedAt.Before(f.Since) {
				return nil
			}
			if (!f.Until.IsZero() && !ev.ReceivedAt.Before(f.Until)) ||
				(f.State != "" && string(ev.State) != f.State) ||
				(f.TicketID != "" && ev.TicketID != f.TicketID) ||
				(f.StatusID != "" && lastStatusID(&ev) != f.StatusID) {
				continue
			}
			if f.DeliveryState != "" {
				if ok, err := hasDeliveryInState(tx, &ev, f.DeliveryState, f.IncludeResolved); err != nil {
					return err
				} else if !ok {
					continue
				}
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
