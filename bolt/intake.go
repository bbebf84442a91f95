package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Order intakes live in two buckets (statusbridge/4):
//
//   - intakes: intake id → intakeV1 record: the format byte, the length of
//     the intake's JSON, the JSON, then the stored (compressed) raw body;
//   - order_intakes: order id → orderIntakeV1 record: the format byte, then
//     the order's bridge.OrderIntake as JSON.
//
// Intakes are one per order and update, few beside events, so JSON keeps
// them simple; the format byte leaves room for a later layout (add a
// version, never change one).
const (
	intakeV1      = 0x01
	orderIntakeV1 = 0x01
)

func encodeIntake(in *bridge.Intake, payload []byte) ([]byte, error) {
	meta := *in
	meta.ShortID = ""
	js, err := json.Marshal(&meta)
	if err != nil {
		return nil, fmt.Errorf("store: encode intake %s: %w", in.ID, err)
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(js)+len(payload))
	out = append(out, intakeV1)
	out = binary.AppendUvarint(out, uint64(len(js)))
	out = append(out, js...)
	return append(out, payload...), nil
}

// splitIntake returns an intake record's JSON and its stored payload.
func splitIntake(raw []byte) (js, payload []byte, err error) {
	if len(raw) == 0 || raw[0] != intakeV1 {
		return nil, nil, fmt.Errorf("%w: unknown intake format", errCorrupt)
	}
	n, k := binary.Uvarint(raw[1:])
	if k <= 0 || n > uint64(len(raw)-1-k) {
		return nil, nil, fmt.Errorf("%w: bad intake length", errCorrupt)
	}
	rest := raw[1+k:]
	return rest[:n], rest[n:], nil
}

func decodeIntake(key, raw []byte, in *bridge.Intake) error {
	js, _, err := splitIntake(raw)
	if err != nil {
		return err
	}
	*in = bridge.Intake{}
	if err := json.Unmarshal(js, in); err != nil {
		return fmt.Errorf("%w: %v", errCorrupt, err)
	}
	in.ID = idString(key)
	return nil
}

func encodeOrderIntake(rec *bridge.OrderIntake) ([]byte, error) {
	js, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("store: encode intakes of order %s: %w", rec.OrderID, err)
	}
	return append([]byte{orderIntakeV1}, js...), nil
}

func decodeOrderIntake(raw []byte, rec *bridge.OrderIntake) error {
	if len(raw) == 0 || raw[0] != orderIntakeV1 {
		return fmt.Errorf("%w: unknown order intake format", errCorrupt)
	}
	*rec = bridge.OrderIntake{}
	if err := json.Unmarshal(raw[1:], rec); err != nil {
		return fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return nil
}

// bucketOr returns the bucket, nil when a store opened read-only predates it.
func bucketOr(btx *bbolt.Tx, name []byte) *bbolt.Bucket { return btx.Bucket(name) }

func getIntake(btx *bbolt.Tx, id string) (*bridge.Intake, []byte, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, nil, err
	}
	b := bucketOr(btx, bucketIntakes)
	var raw []byte
	if b != nil {
		raw = b.Get(key)
	}
	if raw == nil {
		return nil, nil, fmt.Errorf("%w: intake %s", bridge.ErrNotFound, id)
	}
	var in bridge.Intake
	if err := decodeIntake(key, raw, &in); err != nil {
		return nil, nil, fmt.Errorf("store: decode intake %s: %w", id, err)
	}
	_, payload, _ := splitIntake(raw)
	return &in, payload, nil
}

func (t *tx) Intake(id string) (*bridge.Intake, error) {
	in, _, err := getIntake(t.tx, id)
	return in, err
}

func (t *tx) IntakeRaw(id string) ([]byte, error) {
	_, payload, err := getIntake(t.tx, id)
	if err != nil {
		return nil, err
	}
	return decompress(payload)
}

func (t *tx) PutIntake(in *bridge.Intake, stored []byte) error {
	key, err := idKey(in.ID)
	if err != nil {
		return err
	}
	b := t.tx.Bucket(bucketIntakes)
	if stored == nil {
		if old := b.Get(key); old != nil {
			if _, p, err := splitIntake(old); err == nil {
				stored = slices.Clone(p) // the body stays; Put may reuse old's page
			}
		}
	}
	raw, err := encodeIntake(in, stored)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func (t *tx) OrderIntake(orderID string) (*bridge.OrderIntake, error) {
	b := bucketOr(t.tx, bucketOrderIntakes)
	var raw []byte
	if b != nil && orderID != "" {
		raw = b.Get([]byte(orderID))
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: intakes of order %s", bridge.ErrNotFound, orderID)
	}
	var rec bridge.OrderIntake
	if err := decodeOrderIntake(raw, &rec); err != nil {
		return nil, fmt.Errorf("store: decode intakes of order %s: %w", orderID, err)
	}
	return &rec, nil
}

func (t *tx) PutOrderIntake(rec *bridge.OrderIntake) error {
	if rec.OrderID == "" {
		return fmt.Errorf("store: put order intake: no order id")
	}
	raw, err := encodeOrderIntake(rec)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketOrderIntakes).Put([]byte(rec.OrderID), raw)
}

// GetIntake returns a stored intake and its raw body.
func (db *DB) GetIntake(ctx context.Context, id string) (*bridge.Intake, []byte, error) {
	var in *bridge.Intake
	var raw []byte
	err := db.view(func(btx *bbolt.Tx) error {
		var payload []byte
		var err error
		if in, payload, err = getIntake(btx, id); err != nil {
			return err
		}
		raw, err = decompress(payload)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return in, raw, nil
}

// ListIntakes returns matching intakes newest first, and the cursor of the
// next page ("" when there is none). An order id filter reads the order's
// record instead of scanning.
func (db *DB) ListIntakes(ctx context.Context, f bridge.IntakeFilter) ([]bridge.Intake, string, error) {
	limit, start, err := pageArgs(f.Limit, f.Cursor)
	if err != nil {
		return nil, "", err
	}
	out := []bridge.Intake{}
	var next string
	err = db.view(func(btx *bbolt.Tx) error {
		t := &tx{db: db, tx: btx}
		keep := func(in *bridge.Intake) (bool, error) {
			if (!f.Until.IsZero() && !in.ReceivedAt.Before(f.Until)) || (f.OrderID != "" && in.OrderID != f.OrderID) {
				return false, nil
			}
			if f.Latest {
				rec, err := t.OrderIntake(in.OrderID)
				if err != nil {
					return false, nil // no record: not the order's newest
				}
				return rec.LastIntakeID == in.ID, nil
			}
			return true, nil
		}
		if f.OrderID != "" {
			return listOrderIntakes(t, f, limit, start, keep, &out, &next)
		}
		b := bucketOr(btx, bucketIntakes)
		if b == nil {
			return nil
		}
		next, err = pageNewestFirst(b, start, func(k, v []byte) (bool, bool, error) {
			if len(out) == limit {
				return false, true, nil
			}
			var in bridge.Intake
			if err := decodeIntake(k, v, &in); err != nil {
				return false, false, fmt.Errorf("store: decode intake %s: %w", idString(k), err)
			}
			if !f.Since.IsZero() && in.ReceivedAt.Before(f.Since) {
				return false, true, errStopAll // newest first: everything further is older still
			}
			ok, err := keep(&in)
			if err != nil || !ok {
				return false, false, err
			}
			out = append(out, in)
			return true, false, nil
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// listOrderIntakes pages through one order's intakes, newest first.
func listOrderIntakes(t *tx, f bridge.IntakeFilter, limit int, start []byte, keep func(*bridge.Intake) (bool, error),
	out *[]bridge.Intake, next *string) error {
	rec, err := t.OrderIntake(f.OrderID)
	if err != nil {
		return nil // no intakes
	}
	ids := slices.Clone(rec.IntakeIDs)
	slices.Sort(ids)
	slices.Reverse(ids)
	var cursor string
	if start != nil {
		cursor = idString(start)
	}
	for _, id := range ids {
		if cursor != "" && id >= cursor {
			continue
		}
		if len(*out) == limit {
			*next = (*out)[limit-1].ID
			return nil
		}
		in, err := t.Intake(id)
		if err != nil {
			continue // deleted
		}
		if !f.Since.IsZero() && in.ReceivedAt.Before(f.Since) {
			return nil
		}
		if ok, err := keep(in); err != nil {
			return err
		} else if ok {
			*out = append(*out, *in)
		}
	}
	return nil
}
