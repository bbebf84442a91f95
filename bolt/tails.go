package bolt

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// People are shown, and type, the end of an id (resolve.go). The tails
// buckets index every event and delivery id by its hex digits read from the
// end (tailKey), so the ids that end like a given one are neighbours: a
// short id is found with a seek and its two neighbours, and the ids a typed
// end names with one range, instead of a pass over every key. They are kept
// by the same hooks as the counters (countEvent, countDelivery) and built
// with them.
var (
	bucketEventTails    = []byte("event_tails")    // tailKey(event id) → nothing
	bucketDeliveryTails = []byte("delivery_tails") // tailKey(delivery id) → nothing
)

// tailKey is an id's 32 hex digits in reverse order, two to a byte.
func tailKey(id []byte) []byte {
	k := make([]byte, len(id))
	for j := range id {
		b := id[len(id)-1-j]
		k[j] = b<<4 | b>>4
	}
	return k
}

// fromTailKey is the id of a tail key.
func fromTailKey(k []byte) []byte { return tailKey(k) }

// nibble is the i-th hex digit of a key (high digit first).
func nibble(k []byte, i int) byte {
	if i%2 == 0 {
		return k[i/2] >> 4
	}
	return k[i/2] & 0x0f
}

// commonDigits counts the hex digits two tail keys begin with in common:
// the digits their ids end with in common.
func commonDigits(a, b []byte) int {
	n := 0
	for n < 2*len(a) && n < 2*len(b) && nibble(a, n) == nibble(b, n) {
		n++
	}
	return n
}

// shortFromTails is shortIDs over a tails bucket: for each id, one more
// digit than it shares with its nearest neighbours (at least MinShortID).
func shortFromTails(b *bbolt.Bucket, keys map[string][]byte) map[string]string {
	out := make(map[string]string, len(keys))
	c := b.Cursor()
	for id, key := range keys {
		tk := tailKey(key)
		need := bridge.MinShortID
		at, _ := c.Seek(tk)
		var prev, next []byte
		switch {
		case at == nil:
			prev, _ = c.Last()
		case bytes.Equal(at, tk):
			next, _ = c.Next()
			c.Seek(tk)
			prev, _ = c.Prev()
		default:
			next = at
			prev, _ = c.Prev()
		}
		for _, n := range [][]byte{prev, next} {
			if n != nil {
				need = max(need, commonDigits(tk, n)+1)
			}
		}
		h := hex.EncodeToString(key)
		out[id] = h[len(h)-min(need, len(h)):]
	}
	return out
}

// resolveFromTails returns up to limit ids whose hex digits end with want.
func resolveFromTails(b *bbolt.Bucket, want string, limit int) ([]string, error) {
	rev := make([]byte, len(want))
	for i := range want {
		rev[i] = want[len(want)-1-i]
	}
	if len(rev)%2 == 1 {
		rev = append(rev, '0')
	}
	prefix, err := hex.DecodeString(string(rev))
	if err != nil {
		return nil, fmt.Errorf("store: %q is not hex: %w", want, err)
	}
	var found []string
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(found) < limit; k, _ = c.Next() {
		if commonDigits(k, prefix) < len(want) {
			break
		}
		found = append(found, idString(fromTailKey(k)))
	}
	return found, nil
}

// tailsBucket is the tails bucket of an id bucket (nil when the store has
// none: a read-only store from before them).
func tailsBucket(tx *bbolt.Tx, ids []byte) *bbolt.Bucket {
	switch {
	case bytes.Equal(ids, bucketEvents):
		return tx.Bucket(bucketEventTails)
	case bytes.Equal(ids, bucketDeliveries):
		return tx.Bucket(bucketDeliveryTails)
	}
	return nil
}

// indexTail adds (on) or removes an id in its tails bucket.
func indexTail(tx *bbolt.Tx, tails []byte, id []byte, on bool) error {
	b := tx.Bucket(tails)
	if on {
		return b.Put(tailKey(id), nil)
	}
	return b.Delete(tailKey(id))
}
