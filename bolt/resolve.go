package bolt

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Ids are UUIDv7: their first 12 hex digits are the time, the same for every
// record of the same millisecond and their beginning for about a minute, so
// a git-style prefix does not tell records apart. The end is random (62
// bits), so people are shown, and may type, the end of an id: its last
// bridge.MinShortID hex digits, more when another record's id ends the same.

// ShortEventIDs returns each event id's shortest unique end.
func (db *DB) ShortEventIDs(ctx context.Context, ids []string) (map[string]string, error) {
	return db.shortIDsIndexed(db.eventTails, ids)
}

// ShortDeliveryIDs returns each delivery id's shortest unique end.
func (db *DB) ShortDeliveryIDs(ctx context.Context, ids []string) (map[string]string, error) {
	return db.shortIDsIndexed(db.deliveryTails, ids)
}

// shortIDsIndexed answers from the tails of the bucket's ids (tails.go): an
// id whose last bridge.MinShortID digits no other key shares is shown with
// those; the few that share them are worked out by a scan of the bucket.
func (db *DB) shortIDsIndexed(ti *tailIndex, ids []string) (map[string]string, error) {
	keys := make(map[string][]byte, len(ids))
	tails := make([]uint32, 0, len(ids))
	for _, id := range ids {
		if k, err := idKey(id); err == nil {
			keys[id] = k
			tails = append(tails, tailOf(k))
		}
	}
	counts, err := ti.counts(db.bolt, tails)
	if err != nil {
		return nil, fmt.Errorf("store: short ids: %w", err)
	}
	out := make(map[string]string, len(ids))
	var shared []string
	for id, k := range keys {
		if counts[tailOf(k)] > 1 {
			shared = append(shared, id) // another key may end the same: look
			continue
		}
		h := hex.EncodeToString(k)
		out[id] = h[len(h)-bridge.MinShortID:]
	}
	if len(shared) > 0 {
		more, err := db.shortIDs(ti.bucket, shared)
		if err != nil {
			return nil, err
		}
		maps.Copy(out, more)
	}
	return out, nil
}

// ResolveEventID returns the event id that ref (a whole id, or the end of
// one, at least bridge.MinShortID hex digits, dashes optional) names. It
// returns an error wrapping bridge.ErrNotFound when none does, and a
// *bridge.AmbiguousError listing them when several do.
func (db *DB) ResolveEventID(ctx context.Context, ref string) (string, error) {
	return db.resolve(bucketEvents, "event", ref)
}

// ResolveDeliveryID is ResolveEventID for deliveries.
func (db *DB) ResolveDeliveryID(ctx context.Context, ref string) (string, error) {
	return db.resolve(bucketDeliveries, "delivery", ref)
}

func (db *DB) resolve(bucket []byte, kind, ref string) (string, error) {
	want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(ref), "-", ""))
	if _, err := hex.DecodeString(want + strings.Repeat("0", len(want)%2)); err != nil || len(want) > 32 {
		return "", fmt.Errorf("%w: %s %q (ids are hex)", bridge.ErrNotFound, kind, ref)
	}
	if len(want) == 32 {
		return idString(mustHex(want)), nil // whole: the caller reads it (and says when it is missing)
	}
	if len(want) < bridge.MinShortID {
		return "", fmt.Errorf("%w: %s %q: type at least %d characters of its id", bridge.ErrNotFound, kind, ref, bridge.MinShortID)
	}
	var found []string
	err := db.view(func(tx *bbolt.Tx) error {
		var buf [32]byte
		return tx.Bucket(bucket).ForEach(func(k, _ []byte) error {
			if len(k) != 16 {
				return nil
			}
			hex.Encode(buf[:], k)
			if strings.HasSuffix(string(buf[:]), want) && len(found) < 10 {
				found = append(found, idString(k))
			}
			return nil
		})
	})
	switch {
	case err != nil:
		return "", fmt.Errorf("store: resolve %s %q: %w", kind, ref, err)
	case len(found) == 0:
		return "", fmt.Errorf("%w: no %s id ends with %q", bridge.ErrNotFound, kind, ref)
	case len(found) > 1:
		return "", &bridge.AmbiguousError{Ref: ref, Candidates: found}
	}
	return found[0], nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// shortIDs finds, in one pass over the bucket's keys, how many trailing hex
// digits tell each id apart from every other key.
func (db *DB) shortIDs(bucket []byte, ids []string) (map[string]string, error) {
	type shown struct {
		key  []byte
		need int // hex digits needed
	}
	byTail := map[[4]byte][]*shown{}
	all := make(map[string]*shown, len(ids))
	for _, id := range ids {
		k, err := idKey(id)
		if err != nil {
			continue
		}
		s := &shown{key: k, need: bridge.MinShortID}
		all[id] = s
		tail := [4]byte(k[12:])
		byTail[tail] = append(byTail[tail], s)
	}
	err := db.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, _ []byte) error {
			if len(k) != 16 {
				return nil
			}
			for _, s := range byTail[[4]byte(k[12:])] {
				if string(s.key) != string(k) {
					s.need = max(s.need, commonTailDigits(s.key, k)+1)
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: short ids: %w", err)
	}
	out := make(map[string]string, len(all))
	for id, s := range all {
		h := hex.EncodeToString(s.key)
		out[id] = h[len(h)-min(s.need, len(h)):]
	}
	return out, nil
}

// commonTailDigits counts the hex digits two keys end with in common.
func commonTailDigits(a, b []byte) int {
	n := 0
	for i := len(a) - 1; i >= 0; i-- {
		switch {
		case a[i] == b[i]:
			n += 2
		case a[i]&0x0f == b[i]&0x0f:
			return n + 1
		default:
			return n
		}
	}
	return n
}
