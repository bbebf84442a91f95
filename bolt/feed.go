package bolt

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// The changes feed lists recent delivery results in the order they were
// committed, for the live tail (GET /admin/events/stream): each recorded
// attempt or state change appends one entry, key = the bucket's next
// sequence (8 bytes, big-endian), value = the delivery id and the time.
// Readers poll it after a position; any process that shares the store sees
// every result whoever recorded it. Entries older than feedKeep are dropped
// as new ones come, a few at a time, so the bucket stays small.

const (
	feedKeep      = 10 * time.Minute
	feedPruneStep = 16 // old entries dropped per new one, at most
)

// noteChangeTx appends delivery key's change to the feed.
func noteChangeTx(tx *bbolt.Tx, key []byte, now time.Time) error {
	b := tx.Bucket(bucketChanges)
	if b == nil {
		return nil // a store opened read-only before the feed existed
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("store: changes feed: %w", err)
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	v := make([]byte, 0, 24)
	v = append(v, key...)
	v = binary.BigEndian.AppendUint64(v, uint64(now.UnixNano()))
	if err := b.Put(k[:], v); err != nil {
		return fmt.Errorf("store: changes feed: %w", err)
	}
	cutoff := uint64(now.Add(-feedKeep).UnixNano())
	c := b.Cursor()
	for i, ck, cv := 0, []byte(nil), []byte(nil); i < feedPruneStep; i++ {
		ck, cv = c.First()
		if ck == nil || len(cv) != 24 || binary.BigEndian.Uint64(cv[16:]) >= cutoff {
			break
		}
		if err := c.Delete(); err != nil {
			return fmt.Errorf("store: changes feed: %w", err)
		}
	}
	return nil
}

// ChangesPosition returns the feed's current position: ChangesAfter from it
// returns only what is recorded later.
func (db *DB) ChangesPosition() (string, error) {
	var seq uint64
	err := db.view(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketChanges); b != nil {
			seq = b.Sequence()
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("store: changes feed: %w", err)
	}
	return strconv.FormatUint(seq, 10), nil
}

// ChangesAfter returns the deliveries changed after position pos (oldest
// change first, each delivery once, as it is now), at most limit changes,
// and the position to ask from next. A position older than the feed keeps
// gets what is left.
func (db *DB) ChangesAfter(pos string, limit int) ([]bridge.Delivery, string, error) {
	after, err := strconv.ParseUint(pos, 10, 64)
	if err != nil {
		return nil, pos, fmt.Errorf("%w: changes position %q", bridge.ErrNotFound, pos)
	}
	var out []bridge.Delivery
	next := after
	err = db.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChanges)
		if b == nil {
			return nil
		}
		var start [8]byte
		binary.BigEndian.PutUint64(start[:], after+1)
		seen := map[string]int{}
		deliveries := tx.Bucket(bucketDeliveries)
		c := b.Cursor()
		n := 0
		for k, v := c.Seek(start[:]); k != nil && n < limit; k, v = c.Next() {
			n++
			next = binary.BigEndian.Uint64(k)
			if len(v) != 24 {
				continue
			}
			var d bridge.Delivery
			found, err := getRecord(deliveries, v[:16], &d)
			if err != nil {
				return err
			}
			if !found {
				continue // deleted by retention since
			}
			if i, ok := seen[d.ID]; ok {
				out = append(out[:i], out[i+1:]...) // keep its latest place
				for id, j := range seen {
					if j > i {
						seen[id] = j - 1
					}
				}
			}
			seen[d.ID] = len(out)
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, pos, fmt.Errorf("store: changes feed: %w", err)
	}
	return out, strconv.FormatUint(next, 10), nil
}
