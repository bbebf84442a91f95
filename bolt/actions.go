package bolt

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// bucketActions holds the last operator actions (see bridge.Action): action
// id (16-byte UUIDv7) → JSON, capped at maxActions.
var bucketActions = []byte("actions")

// maxActions is how many recorded actions are kept.
var maxActions = 200

// RecordAction stores an operator action, giving it an id, and forgets the
// oldest beyond the last maxActions.
func (db *DB) RecordAction(ctx context.Context, a bridge.Action) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id, err := newID()
	if err != nil {
		return err
	}
	a.ID = id.String()
	raw, err := json.Marshal(&a)
	if err != nil {
		return fmt.Errorf("store: encode action: %w", err)
	}
	err = db.submit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketActions)
		if err := b.Put(id[:], raw); err != nil {
			return err
		}
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			keys = append(keys, k)
		}
		for _, k := range keys[:max(0, len(keys)-maxActions)] {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}, false, false)
	if err != nil {
		return fmt.Errorf("store: record action: %w", err)
	}
	return nil
}

// Actions returns up to limit recorded actions, newest first.
func (db *DB) Actions(ctx context.Context, limit int) ([]bridge.Action, error) {
	return newestJSON[bridge.Action](db, bucketActions, limit, "action")
}

// newestJSON reads up to limit JSON records of bucket b, newest key first.
func newestJSON[T any](db *DB, b []byte, limit int, what string) ([]T, error) {
	out := []T{}
	err := db.view(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(b)
		if bk == nil {
			return nil // a read-only store from before the bucket
		}
		c := bk.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("store: decode %s %s: %w", what, idString(k), err)
			}
			out = append(out, x)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read %ss: %w", what, err)
	}
	return out, nil
}
