package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// The dedup keys of the newest events are held in memory (recentDedup)
// and written to the dedup bucket in bulk, mergeDedupAt at a time, in the
// order of their keys: one commit appends them as a few dozen full leaves.
// Put one by one, each ingest's key dirtied a leaf of its own even with
// time-led keys: thousands of updates a second share their second, and
// within it keys sort by hash.
//
// Nothing is lost in a crash: every event record carries its dedup key,
// and the store's meta says up to which event the bucket is complete
// (metaDedupMergedKey). Opening the store puts the keys of the events after
// it back in memory. The rule that keeps that true: a key goes to memory
// only for an event whose id is after the merged mark; an event with an
// earlier id (one that waited in the queue across a merge) has its key put
// in the bucket at once.
//
// Only the committer goroutine reads or changes recentDedup, inside its
// transactions: what a transaction changes is staged, and kept only when
// the commit succeeds.

// metaDedupMergedKey: the 16-byte id of the newest event whose dedup key is
// in the dedup bucket for sure; every event with an id up to it has its key
// there. Absent: none (a new store).
const metaDedupMergedKey = "dedup_merged_to"

// mergeDedupAt is how many keys in memory make the next commit write them
// to the bucket: ~100 KB of keys, ~25 leaf pages, once per 2,048 events.
var mergeDedupAt = 2048

type idBytes = [16]byte

// recentDedup is the dedup keys not yet in the dedup bucket.
type recentDedup struct {
	mark idBytes             // metaDedupMergedKey
	keys map[idBytes]idBytes // dedup key → event id
	// Staged by the transaction in progress.
	add       map[idBytes]idBytes
	del       map[idBytes]bool
	newMerged *idBytes  // a merge: the mark it sets
	merged    []idBytes // and the keys it wrote, which leave keys
	// held is how many keys the last merge left in memory (the newest
	// second's): the next merge waits for mergeDedupAt more.
	held, newHeld int
}

func newRecentDedup() *recentDedup {
	return &recentDedup{keys: map[idBytes]idBytes{}, add: map[idBytes]idBytes{}, del: map[idBytes]bool{}}
}

// begin starts a transaction: nothing staged.
func (r *recentDedup) begin() {
	clear(r.add)
	clear(r.del)
	r.newMerged, r.merged = nil, r.merged[:0]
}

// keep applies what the committed transaction staged.
func (r *recentDedup) keep() {
	if m := r.newMerged; m != nil {
		for _, k := range r.merged {
			delete(r.keys, k)
		}
		r.mark, r.held = *m, r.newHeld
	}
	for k := range r.del {
		delete(r.keys, k)
	}
	for k, v := range r.add {
		r.keys[k] = v
	}
	r.begin()
}

// get returns the event that claimed key, as the transaction sees it.
func (r *recentDedup) get(key idBytes) (idBytes, bool) {
	if v, ok := r.add[key]; ok {
		return v, true
	}
	if r.del[key] {
		return idBytes{}, false
	}
	v, ok := r.keys[key]
	return v, ok
}

func (r *recentDedup) size() int { return len(r.keys) + len(r.add) }

// due reports whether the commit in progress should merge.
func (r *recentDedup) due() bool { return r.size() >= r.held+mergeDedupAt }

// claim records key for event id: in memory when id is after the merged
// mark, else in the bucket at once.
func (r *recentDedup) claim(b *bbolt.Bucket, key, id idBytes) error {
	if bytes.Compare(id[:], r.mark[:]) <= 0 {
		return b.Put(key[:], id[:])
	}
	delete(r.del, key)
	r.add[key] = id
	return nil
}

// forget drops key (its event is being deleted).
func (r *recentDedup) forget(key []byte) {
	if len(key) != len(idBytes{}) {
		return
	}
	k := idBytes(key)
	delete(r.add, k)
	if _, ok := r.keys[k]; ok {
		r.del[k] = true
	}
}

// merge writes the keys held to the bucket, in key order, but (unless all)
// those of the newest second (its keys are still coming, and written
// together later they append whole pages instead of splitting the ones
// written now), and
// moves the merged mark as far as it may: to the newest event merged, or
// short of the oldest event still held.
func (r *recentDedup) merge(tx *bbolt.Tx, all bool) error {
	type entry struct{ key, id idBytes }
	entries := make([]entry, 0, r.size())
	var newest uint32
	for k, v := range r.keys {
		if !r.del[k] {
			if _, ok := r.add[k]; !ok {
				entries = append(entries, entry{k, v})
			}
		}
	}
	for k, v := range r.add {
		entries = append(entries, entry{k, v})
	}
	for _, e := range entries {
		newest = max(newest, binary.BigEndian.Uint32(e.key[:4]))
	}
	keepNewest := !all && len(entries) < 4*mergeDedupAt // a flood within one second: merge everything
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key[:], b.key[:]) })
	b := tx.Bucket(bucketDedup)
	var mergedTo idBytes
	held := false
	var oldestHeld idBytes
	r.newHeld = 0
	for _, e := range entries {
		if keepNewest && binary.BigEndian.Uint32(e.key[:4]) == newest {
			r.newHeld++
			if !held || bytes.Compare(e.id[:], oldestHeld[:]) < 0 {
				oldestHeld = e.id
			}
			held = true
			continue
		}
		if err := b.Put(e.key[:], e.id[:]); err != nil {
			return fmt.Errorf("store: merge dedup keys: %w", err)
		}
		if bytes.Compare(e.id[:], mergedTo[:]) > 0 {
			mergedTo = e.id
		}
		if _, ok := r.add[e.key]; ok {
			delete(r.add, e.key) // staged and merged at once: never held
		} else {
			r.merged = append(r.merged, e.key)
		}
	}
	mark := r.mark
	if bytes.Compare(mergedTo[:], mark[:]) > 0 {
		mark = mergedTo
	}
	if held && bytes.Compare(oldestHeld[:], mark[:]) <= 0 {
		mark = before(oldestHeld)
	}
	if bytes.Compare(mark[:], r.mark[:]) < 0 {
		mark = r.mark // cannot happen (held ids are after the mark); kept safe
	}
	if err := tx.Bucket(bucketMeta).Put([]byte(metaDedupMergedKey), mark[:]); err != nil {
		return fmt.Errorf("store: merge dedup keys: %w", err)
	}
	r.newMerged = &mark
	return nil
}

// before is the id just before id (ids compare as big-endian numbers).
func before(id idBytes) idBytes {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]--
		if id[i] != 0xff {
			break
		}
	}
	return id
}

// loadRecentDedup reads the merged mark and puts the dedup keys of the
// events after it back in memory (after a crash; after a clean close there
// are none). It runs at open, before the committer starts.
func loadRecentDedup(bdb *bbolt.DB) (*recentDedup, error) {
	r := newRecentDedup()
	err := bdb.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte(metaDedupMergedKey)); len(v) == len(r.mark) {
			r.mark = idBytes(v)
		}
		c := tx.Bucket(bucketEvents).Cursor()
		k, v := c.Seek(r.mark[:])
		if k != nil && bytes.Equal(k, r.mark[:]) {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			var ev bridge.Event
			if err := decodeRecord(k, v, &ev); err != nil {
				return fmt.Errorf("store: decode event %s: %w", idString(k), err)
			}
			if len(ev.DedupKey) == len(idBytes{}) && len(k) == len(idBytes{}) {
				r.keys[idBytes(ev.DedupKey)] = idBytes(k)
			}
		}
		return nil
	})
	return r, err
}

// mergeRecentDedup writes every key r holds to the bucket in a transaction
// of its own (at open and at close, when the committer is not running).
func mergeRecentDedup(bdb *bbolt.DB, r *recentDedup) error {
	r.begin()
	err := bdb.Update(func(tx *bbolt.Tx) error {
		setFill(tx)
		return r.merge(tx, true)
	})
	if err != nil {
		r.begin()
		return err
	}
	r.keep()
	return nil
}
