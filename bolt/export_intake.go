package bolt

import (
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// For statusbridge store copy (bbolt → PostgreSQL): the order intake's
// buckets, and their records read out of a store (one opened read-only
// works: the buckets may be missing from a /3 store, which has none).
const (
	BucketIntakes      = "intakes"       // intake id → intake with its stored body
	BucketOrderIntakes = "order_intakes" // order id → the order's intake record
)

// DecodeIntakeRecord decodes a record of the intakes bucket: the intake and
// its stored body (as StoredPayload made it; the same form PostgreSQL keeps).
func DecodeIntakeRecord(key, value []byte) (*bridge.Intake, []byte, error) {
	var in bridge.Intake
	if err := decodeIntake(key, value, &in); err != nil {
		return nil, nil, fmt.Errorf("store: decode intake %x: %w", key, err)
	}
	_, stored, _ := splitIntake(value)
	return &in, append([]byte(nil), stored...), nil
}

// DecodeOrderIntakeRecord decodes a record of the order_intakes bucket.
func DecodeOrderIntakeRecord(value []byte) (*bridge.OrderIntake, error) {
	var rec bridge.OrderIntake
	if err := decodeOrderIntake(value, &rec); err != nil {
		return nil, fmt.Errorf("store: decode order intake: %w", err)
	}
	return &rec, nil
}

// EachIntake calls fn with every intake and its stored body, in id order,
// in one read transaction.
func (db *DB) EachIntake(fn func(in *bridge.Intake, stored []byte) error) error {
	return db.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketIntakes)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			in, stored, err := DecodeIntakeRecord(k, v)
			if err != nil {
				return err
			}
			return fn(in, stored)
		})
	})
}

// EachOrderIntake calls fn with every order's intake record.
func (db *DB) EachOrderIntake(fn func(rec *bridge.OrderIntake) error) error {
	return db.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOrderIntakes)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			rec, err := DecodeOrderIntakeRecord(v)
			if err != nil {
				return err
			}
			return fn(rec)
		})
	})
}

// DurableClaims lists the deliveries with a durable claim on disk (a ticket
// request sent, its outcome not recorded).
func (db *DB) DurableClaims() ([]string, error) {
	var out []string
	err := db.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketClaims).ForEach(func(k, _ []byte) error {
			out = append(out, idString(k))
			return nil
		})
	})
	return out, err
}
