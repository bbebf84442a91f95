package bolt

import (
	"encoding/binary"
	"slices"
	"sync"

	bbolt "go.etcd.io/bbolt"
)

// tailIndex is, for one bucket of ids (events or deliveries), the last 4
// bytes (bridge.MinShortID hex digits) of every key, so short ids are told
// apart without reading every key of the bucket for each page shown.
//
// It is built on first use from one scan and kept up by the committer: each
// commit that creates keys adds their tails (tailStage). Keys deleted by
// retention keep their tails: a count is never too low, at worst an id is
// shown with more digits than it needs. Built during commits, a key can be
// both scanned and added: counted twice, which errs the same way.
type tailIndex struct {
	bucket []byte

	mu      sync.Mutex
	started bool     // commits add to pending from now on
	built   bool     // sorted holds the scan
	sorted  []uint32 // sorted, duplicates kept
	pending []uint32 // added since the last merge, unsorted
}

// mergeTailsAt is how many added tails are merged into the sorted ones at
// once (a sort of what was added and one merge).
const mergeTailsAt = 4096

func tailOf(key []byte) uint32 { return binary.BigEndian.Uint32(key[len(key)-4:]) }

// add records the tails of keys a commit created (nothing before the index
// was first used).
func (ti *tailIndex) add(tails []uint32) {
	if len(tails) == 0 {
		return
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if !ti.started {
		return
	}
	ti.pending = append(ti.pending, tails...)
	if ti.built && len(ti.pending) >= mergeTailsAt {
		ti.merge()
	}
}

// merge folds pending into sorted. ti.mu is held.
func (ti *tailIndex) merge() {
	slices.Sort(ti.pending)
	out := make([]uint32, 0, len(ti.sorted)+len(ti.pending))
	i, j := 0, 0
	for i < len(ti.sorted) && j < len(ti.pending) {
		if ti.sorted[i] <= ti.pending[j] {
			out, i = append(out, ti.sorted[i]), i+1
		} else {
			out, j = append(out, ti.pending[j]), j+1
		}
	}
	out = append(append(out, ti.sorted[i:]...), ti.pending[j:]...)
	ti.sorted, ti.pending = out, ti.pending[:0]
}

// counts returns how many keys of the bucket end with each of tails,
// building the index on first use.
func (ti *tailIndex) counts(bdb *bbolt.DB, tails []uint32) (map[uint32]int, error) {
	if err := ti.build(bdb); err != nil {
		return nil, err
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	out := make(map[uint32]int, len(tails))
	for _, t := range tails {
		lo, _ := slices.BinarySearch(ti.sorted, t)
		hi, _ := slices.BinarySearch(ti.sorted, t+1)
		n := hi - lo
		if t == ^uint32(0) {
			n = len(ti.sorted) - lo
		}
		for _, p := range ti.pending {
			if p == t {
				n++
			}
		}
		out[t] = n
	}
	return out, nil
}

// build scans the bucket once. Commits add what they create from before the
// scan's snapshot on, so nothing created meanwhile is missed.
func (ti *tailIndex) build(bdb *bbolt.DB) error {
	ti.mu.Lock()
	if ti.built {
		ti.mu.Unlock()
		return nil
	}
	ti.started = true
	ti.mu.Unlock()
	var tails []uint32
	err := bdb.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(ti.bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) == 16 {
				tails = append(tails, tailOf(k))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	slices.Sort(tails)
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if !ti.built { // another caller may have built it meanwhile
		ti.sorted, ti.built = tails, true
		ti.merge()
	}
	return nil
}

// tailStage collects, during one commit, the tails of the event and
// delivery keys it creates; the committer's alone.
type tailStage struct{ events, deliveries []uint32 }

func (s *tailStage) begin() { s.events, s.deliveries = s.events[:0], s.deliveries[:0] }
