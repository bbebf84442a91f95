package bolt

import (
	"fmt"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// PendingAfter returns up to limit unfinished deliveries whose ids come after
// the id after ("" = from the start), in id order — which is commit order, so
// a delivery worker that keeps the last id it saw reads each one once.
func (db *DB) PendingAfter(after string, limit int) ([]bridge.Delivery, error) {
	var start []byte
	if after != "" {
		k, err := idKey(after)
		if err != nil {
			return nil, err
		}
		start = k
	}
	var out []bridge.Delivery
	err := db.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketPending).Cursor()
		deliveries := tx.Bucket(bucketDeliveries)
		var k []byte
		if start == nil {
			k, _ = c.First()
		} else if k, _ = c.Seek(start); k != nil && string(k) == string(start) {
			k, _ = c.Next()
		}
		for ; k != nil && len(out) < limit; k, _ = c.Next() {
			var d bridge.Delivery
			found, err := getRecord(deliveries, k, &d)
			if err != nil {
				return err
			}
			if found {
				out = append(out, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read pending deliveries: %w", err)
	}
	return out, nil
}

// Record appends an attempt and moves the delivery to its new state in the
// next group commit, and returns once that commit is on disk; a finished
// delivery leaves the pending index.
func (db *DB) Record(id string, o bridge.AttemptResult, now time.Time) error {
	fn, err := recordFn(id, o, now)
	if err == nil {
		err = db.submit(fn, false, false)
	}
	if err != nil {
		return fmt.Errorf("store: record delivery %s: %w", id, err)
	}
	return nil
}

// RecordAsync is Record without waiting: done is called (from the committer,
// it must not block) once the commit is on disk or has failed. It returns an
// error, and does not call done, when the record cannot even be queued.
func (db *DB) RecordAsync(id string, o bridge.AttemptResult, now time.Time, done func(error)) error {
	fn, err := recordFn(id, o, now)
	if err == nil {
		err = db.submitAsync(fn, func(err error) {
			if err != nil {
				err = fmt.Errorf("store: record delivery %s: %w", id, err)
			}
			done(err)
		})
	}
	if err != nil {
		return fmt.Errorf("store: record delivery %s: %w", id, err)
	}
	return nil
}

func recordFn(id string, o bridge.AttemptResult, now time.Time) (func(tx *bbolt.Tx) error, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	return func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		var d bridge.Delivery
		found, err := getRecord(b, key, &d)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
		}
		if o.Attempt != nil {
			d.Attempts = append(d.Attempts, *o.Attempt)
		}
		d.State, d.NextAttemptAt, d.UpdatedAt = o.State, o.NextAttemptAt, now.UTC()
		if o.Reason != "" || o.State.Terminal() {
			d.Reason = o.Reason
		}
		if o.Result != "" {
			d.Result = o.Result
		}
		if o.State == bridge.Done && d.RetryOf != "" {
			if err := resolveDeadTx(tx, &d); err != nil {
				return err
			}
		}
		if o.State == bridge.Done && o.OnceKey != "" {
			if err := tx.Bucket(bucketOnce).Put([]byte(o.OnceKey), key); err != nil {
				return err
			}
		}
		if o.State.Terminal() {
			d.NextAttemptAt = time.Time{}
			if err := tx.Bucket(bucketPending).Delete(key); err != nil {
				return err
			}
		}
		if err := noteChangeTx(tx, key, now); err != nil {
			return err
		}
		return putRecord(b, key, &d)
	}, nil
}

// Triggered reports whether a no-repeat key was recorded by a done delivery.
func (db *DB) Triggered(key string) (bool, error) {
	var found bool
	err := db.view(func(tx *bbolt.Tx) error {
		found = tx.Bucket(bucketOnce).Get([]byte(key)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: read no-repeat key: %w", err)
	}
	return found, nil
}

// Stats returns record counts.
func (db *DB) Stats() (bridge.Stats, error) {
	var s bridge.Stats
	err := db.view(func(tx *bbolt.Tx) error {
		s.Events = tx.Bucket(bucketEvents).Stats().KeyN
		s.Deliveries = tx.Bucket(bucketDeliveries).Stats().KeyN
		s.Pending = tx.Bucket(bucketPending).Stats().KeyN
		s.Orders = tx.Bucket(bucketOrders).Stats().KeyN
		return nil
	})
	return s, err
}

// PendingByTarget counts unfinished deliveries per target and the creation
// time of the oldest (for the outbox gauges).
func (db *DB) PendingByTarget() (map[string]bridge.PendingStat, error) {
	out := map[string]bridge.PendingStat{}
	err := db.view(func(tx *bbolt.Tx) error {
		deliveries := tx.Bucket(bucketDeliveries)
		return tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			var d bridge.Delivery
			if found, err := getRecord(deliveries, k, &d); err != nil || !found {
				return err
			}
			s := out[d.Target]
			s.Pending++
			if s.Oldest.IsZero() || d.CreatedAt.Before(s.Oldest) {
				s.Oldest = d.CreatedAt
			}
			out[d.Target] = s
			return nil
		})
	})
	return out, err
}
