package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// GetEvent returns a stored event and its raw payload.
func (db *DB) GetEvent(ctx context.Context, id string) (*bridge.Event, []byte, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, nil, err
	}
	var ev bridge.Event
	var raw []byte
	err = db.view(func(tx *bbolt.Tx) error {
		found, err := getRecord(tx.Bucket(bucketEvents), key, &ev)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: event %s", bridge.ErrNotFound, id)
		}
		raw, err = decompress(storedPayload(tx, key))
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return &ev, raw, nil
}

// storedPayload returns an event's stored payload: inline in its record, or
// in the payloads bucket for events written before payloads were inline. The
// bytes are valid only inside tx.
func storedPayload(tx *bbolt.Tx, key []byte) []byte {
	if p := inlinePayload(tx.Bucket(bucketEvents).Get(key)); p != nil {
		return p
	}
	return tx.Bucket(bucketPayloads).Get(key)
}

// GetDelivery returns one delivery, in_flight while this process sends it.
func (db *DB) GetDelivery(ctx context.Context, id string) (*bridge.Delivery, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	var d bridge.Delivery
	err = db.view(func(tx *bbolt.Tx) error {
		found, err := getRecord(tx.Bucket(bucketDeliveries), key, &d)
		if err == nil && !found {
			err = fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	db.overlayClaim(&d)
	return &d, nil
}

// errStopAll, returned by a page's visit function, ends the listing: no
// later page can match either.
var errStopAll = errors.New("store: stop listing")

// pageNewestFirst walks b from the newest key (or from just before start)
// towards the oldest, calling visit for each record. visit says whether it
// kept the record and whether the page is full; the walk also stops after
// maxScan records, so one page never holds a read transaction for long. It
// returns the cursor of the next page: the last kept key when the page is
// full, the first unexamined key (made exclusive) when the scan limit was
// reached, "" when the bucket or the listing is exhausted.
// pageArgs reads a listing's page size (default 50, at most 1,000) and the
// key its cursor starts from (nil: the newest).
func pageArgs(limit int, cursor string) (int, []byte, error) {
	if limit <= 0 {
		limit = 50
	}
	if cursor == "" {
		return min(limit, 1000), nil, nil
	}
	k, err := idKey(cursor)
	if err != nil {
		return 0, nil, fmt.Errorf("store: bad cursor: %w", err)
	}
	return min(limit, 1000), k, nil
}

func pageNewestFirst(b *bbolt.Bucket, start []byte, visit func(k, v []byte) (kept, full bool, err error)) (string, error) {
	c := b.Cursor()
	var k, v []byte
	if start == nil {
		k, v = c.Last()
	} else {
		k, v = c.Seek(start)
		if k == nil {
			k, v = c.Last()
		}
		for k != nil && bytes.Compare(k, start) >= 0 {
			k, v = c.Prev()
		}
	}
	var lastKept []byte
	for scanned := 0; k != nil; k, v = c.Prev() {
		if scanned == maxScan {
			return exclusiveAfter(k), nil
		}
		scanned++
		kept, full, err := visit(k, v)
		if errors.Is(err, errStopAll) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if full {
			return idString(lastKept), nil
		}
		if kept {
			lastKept = append(lastKept[:0], k...)
		}
	}
	return "", nil
}

// exclusiveAfter is the cursor that resumes a newest-first walk at k itself
// (cursors are exclusive: the walk starts just before them).
func exclusiveAfter(k []byte) string {
	next := append([]byte(nil), k...)
	for i := len(next) - 1; i >= 0; i-- {
		next[i]++
		if next[i] != 0 {
			break
		}
	}
	return idString(next)
}

// maxScan bounds the records one page examines, so a selective filter over a
// large store never holds a read transaction for long; the page then comes
// back short with a cursor to continue.
var maxScan = 20000

// ListEvents returns matching events newest first, and the cursor of the next
// page ("" when there is none).
func (db *DB) ListEvents(ctx context.Context, f bridge.EventFilter) ([]bridge.Event, string, error) {
	limit, start, err := pageArgs(f.Limit, f.Cursor)
	if err != nil {
		return nil, "", err
	}
	if f.OrderID != "" && db.hasOrderIndex() {
		return db.listOrderEvents(f, limit, start)
	}
	f.Limit = limit
	out := []bridge.Event{} // an empty page is [], not null
	var next string
	err = db.view(func(tx *bbolt.Tx) error {
		var err error
		next, err = pageNewestFirst(tx.Bucket(bucketEvents), start, func(k, v []byte) (bool, bool, error) {
			if len(out) == f.Limit {
				return false, true, nil
			}
			var ev bridge.Event
			if err := decodeRecord(k, v, &ev); err != nil {
				return false, false, fmt.Errorf("store: decode event %s: %w", idString(k), err)
			}
			if !f.Since.IsZero() && ev.ReceivedAt.Before(f.Since) {
				return false, true, errStopAll // newest first: everything further is older still
			}
			if (!f.Until.IsZero() && !ev.ReceivedAt.Before(f.Until)) ||
				(f.State != "" && string(ev.State) != f.State) ||
				(f.OrderID != "" && ev.OrderID != f.OrderID) ||
				(f.TicketID != "" && ev.TicketID != f.TicketID) ||
				(f.StatusID != "" && lastStatusID(&ev) != f.StatusID) {
				return false, false, nil
			}
			if f.DeliveryState != "" {
				if ok, err := hasDeliveryInState(tx, &ev, f.DeliveryState, f.IncludeResolved); err != nil || !ok {
					return false, false, err
				}
			}
			out = append(out, ev)
			return true, false, nil
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// ListDeliveries returns matching deliveries newest first, and the next cursor.
func (db *DB) ListDeliveries(ctx context.Context, f bridge.DeliveryFilter) ([]bridge.Delivery, string, error) {
	limit, start, err := pageArgs(f.Limit, f.Cursor)
	if err != nil {
		return nil, "", err
	}
	f.Limit = limit
	out := []bridge.Delivery{}
	var next string
	err = db.view(func(tx *bbolt.Tx) error {
		var err error
		next, err = pageNewestFirst(tx.Bucket(bucketDeliveries), start, func(k, v []byte) (bool, bool, error) {
			if len(out) == f.Limit {
				return false, true, nil
			}
			var d bridge.Delivery
			if err := decodeRecord(k, v, &d); err != nil {
				return false, false, fmt.Errorf("store: decode delivery %s: %w", idString(k), err)
			}
			db.overlayClaim(&d)
			if (f.State != "" && string(d.State) != f.State) || (f.Target != "" && d.Target != f.Target) ||
				(f.OrderID != "" && d.OrderID != f.OrderID) || !bridge.ListedDead(&d, f.State, f.IncludeResolved) {
				return false, false, nil
			}
			out = append(out, d)
			return true, false, nil
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
