package bolt

import (
	"context"
	"fmt"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// PendingAfter returns up to limit unfinished deliveries whose ids come after
// the id after ("" = from the start), in id order — which is commit order, so
// a delivery worker that keeps the last id it saw reads each one once.
func (db *DB) PendingAfter(ctx context.Context, after string, limit int) ([]bridge.Delivery, error) {
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
		claims := tx.Bucket(bucketClaims)
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
				// A durable claim this process does not hold was left by a
				// process that is gone: the request may have gone out.
				d.Claimed = claims != nil && claims.Get(k) != nil && !db.holds(d.ID)
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

// Claim marks a delivery as being sent by this process. One process holds
// the file, so a claim lives in memory (no commit per attempt) unless
// durable is set (a request that must not be repeated blindly): then it is
// committed before Claim returns, and a crash leaves it on disk. It refuses a
// delivery that is claimed already or no longer pending; a durable claim of
// a delivery this process claims already makes that claim durable (a sender
// that does some work before the request that must not be repeated).
func (db *DB) Claim(ctx context.Context, d *bridge.Delivery, durable bool) error {
	db.claimMu.Lock()
	upgrade := db.claims[d.ID]
	if upgrade && !durable {
		db.claimMu.Unlock()
		return fmt.Errorf("%w: delivery %s is being sent", bridge.ErrClaimRefused, d.ID)
	}
	db.claims[d.ID] = true
	db.claimMu.Unlock()
	if !durable {
		return nil
	}
	key, err := idKey(d.ID)
	if err == nil {
		err = db.submit(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketPending).Get(key) == nil {
				return fmt.Errorf("%w: delivery %s is not pending", bridge.ErrClaimRefused, d.ID)
			}
			return tx.Bucket(bucketClaims).Put(key, nil)
		}, false, false)
	}
	if err != nil {
		if !upgrade {
			db.dropClaim(d.ID)
		}
		return fmt.Errorf("store: claim delivery %s: %w", d.ID, err)
	}
	return nil
}

// Release drops a claim without recording an attempt.
func (db *DB) Release(ctx context.Context, id string) error {
	defer db.dropClaim(id)
	key, err := idKey(id)
	if err != nil {
		return err
	}
	return db.submit(func(tx *bbolt.Tx) error { return tx.Bucket(bucketClaims).Delete(key) }, false, false)
}

// holds reports whether this process claims the delivery.
func (db *DB) holds(id string) bool {
	db.claimMu.Lock()
	defer db.claimMu.Unlock()
	return db.claims[id]
}

func (db *DB) dropClaim(id string) {
	db.claimMu.Lock()
	delete(db.claims, id)
	db.claimMu.Unlock()
}

// overlayClaim shows a pending delivery this process is sending as in_flight.
func (db *DB) overlayClaim(d *bridge.Delivery) {
	if d.State != bridge.Pending {
		return
	}
	db.claimMu.Lock()
	if db.claims[d.ID] {
		d.State = bridge.InFlight
	}
	db.claimMu.Unlock()
}

// Record appends an attempt and moves the delivery to its new state in the
// next group commit, and returns once that commit is on disk; a finished
// delivery leaves the pending index. The delivery's claim is released.
func (db *DB) Record(ctx context.Context, id string, o bridge.AttemptResult, now time.Time) error {
	fn, err := recordFn(id, o, now)
	if err == nil {
		err = db.submit(fn, false, false)
	}
	db.dropClaim(id)
	if err != nil {
		return fmt.Errorf("store: record delivery %s: %w", id, err)
	}
	return nil
}

// RecordAsync is Record without waiting: done is called (from the committer,
// it must not block) once the commit is on disk or has failed. It returns an
// error, and does not call done, when the record cannot even be queued.
func (db *DB) RecordAsync(ctx context.Context, id string, o bridge.AttemptResult, now time.Time, done func(error)) error {
	fn, err := recordFn(id, o, now)
	if err == nil {
		err = db.submitAsync(fn, func(err error) {
			db.dropClaim(id)
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
	return func(btx *bbolt.Tx) error { return recordTx(btx, key, id, o, now) }, nil
}

// recordTx records an attempt result in btx (see Record).
func recordTx(btx *bbolt.Tx, key []byte, id string, o bridge.AttemptResult, now time.Time) error {
	b := btx.Bucket(bucketDeliveries)
	var d bridge.Delivery
	found, err := getRecord(b, key, &d)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
	}
	if err := countDelivery(btx, d.Target, key, d.State, o.State); err != nil {
		return err
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
		if err := bridge.ResolveRetried(&tx{tx: btx}, &d); err != nil {
			return err
		}
	}
	if o.State == bridge.Done && o.OnceKey != "" {
		if err := btx.Bucket(bucketOnce).Put([]byte(o.OnceKey), key); err != nil {
			return err
		}
	}
	if o.State.Terminal() {
		d.NextAttemptAt = time.Time{}
		if err := btx.Bucket(bucketPending).Delete(key); err != nil {
			return err
		}
	}
	if err := btx.Bucket(bucketClaims).Delete(key); err != nil {
		return err
	}
	if err := noteChangeTx(btx, key, now); err != nil {
		return err
	}
	return putRecord(b, key, &d)
}

// Triggered reports whether a no-repeat key was recorded by a done delivery.
func (db *DB) Triggered(ctx context.Context, key string) (bool, error) {
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
func (db *DB) Stats(ctx context.Context) (bridge.Stats, error) {
	var s bridge.Stats
	err := db.view(func(tx *bbolt.Tx) error {
		s.Events = tx.Bucket(bucketEvents).Stats().KeyN
		s.Deliveries = tx.Bucket(bucketDeliveries).Stats().KeyN
		s.Pending = tx.Bucket(bucketPending).Stats().KeyN
		s.Orders = tx.Bucket(bucketOrders).Stats().KeyN
		if b := tx.Bucket(bucketIntakes); b != nil {
			s.Intakes = b.Stats().KeyN
		}
		return nil
	})
	return s, err
}

// PendingByTarget counts unfinished deliveries per target and the creation
// time of the oldest (for the outbox gauges, read at every scrape): from
// the console's counters and the pending-by-target index, a read of a few
// keys per target, however long the backlog.
func (db *DB) PendingByTarget(ctx context.Context) (map[string]bridge.PendingStat, error) {
	c, err := db.Counters(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	out := map[string]bridge.PendingStat{}
	for target, tc := range c.Targets {
		if n := tc.States[bridge.Pending]; n > 0 {
			out[target] = bridge.PendingStat{Pending: n, Oldest: tc.OldestPending}
		}
	}
	return out, nil
}
