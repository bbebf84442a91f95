// Package floor measures a disk's floor for acknowledging writes durably,
// without HTTP or statusbridge's own work, for two designs:
//
// Design "bbolt": a group committer (as statusbridge's store) takes every
// request already waiting and commits them in one bbolt transaction (two
// fdatasyncs and the page writes); a request is acknowledged when its commit
// returned.
//
// Design "wal": a group committer appends the waiting requests to a
// preallocated log file and fdatasyncs it once; a request is acknowledged
// then, and bbolt is updated behind it (its commits compete for the same
// disk, as they would).
//
// Requests arrive open loop at a fixed rate (latency counts from the intended
// arrival) and each writes what an ingest writes most of: a ~600-byte record
// under a time-ordered key and a random 16-byte dedup key.
//
// Both go run ./bench/floor and go run ./bench (which needs the bbolt
// design's p99 in the same run as its own phases) use it.
package floor

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/statusbridge/statusbridge/bench/internal/latency"
	bolt "go.etcd.io/bbolt"
)

type request struct {
	due  time.Time
	data []byte
	done chan struct{}
}

// Result is one run of one design.
type Result struct {
	Design string          // "bbolt" or "wal"
	Rate   int             // requests per second asked
	Acks   []time.Duration // each request's intended arrival → acknowledged
	Bolt   []time.Duration // wal only: the background bbolt commits
}

// P99ms is the p99 of the acknowledgements in milliseconds.
func (r Result) P99ms() float64 { return latency.Ms(r.Acks, .99) }

func (r Result) String() string {
	s := fmt.Sprintf("%-6s %6d %9.2f %9.2f %9.2f %9.2f", r.Design, r.Rate,
		latency.Ms(r.Acks, .5), latency.Ms(r.Acks, .99), latency.Ms(r.Acks, .999), latency.Ms(r.Acks, 1))
	if len(r.Bolt) > 0 {
		s += fmt.Sprintf("  %.2f / %.2f (%d commits)", latency.Ms(r.Bolt, .5), latency.Ms(r.Bolt, .99), len(r.Bolt))
	}
	return s
}

// Run drives one design (wal false: bbolt group commit) for dur at rate
// requests per second, in a temporary directory under parent ("" = the
// system's), and returns its acknowledgement latencies.
func Run(parent string, wal bool, rate int, dur time.Duration) (Result, error) {
	if rate <= 0 || dur <= 0 {
		return Result{}, fmt.Errorf("floor: rate %d and duration %v must be positive", rate, dur)
	}
	dir, err := os.MkdirTemp(parent, "floor")
	if err != nil {
		return Result{}, fmt.Errorf("floor: temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "floor.db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return Result{}, fmt.Errorf("floor: open bbolt: %w", err)
	}
	defer db.Close()
	db.AllocSize = 4 << 20
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"events", "dedup"} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return Result{}, fmt.Errorf("floor: create buckets: %w", err)
	}
	res := Result{Design: "bbolt", Rate: rate}
	var log *walFile
	if wal {
		res.Design = "wal"
		if log, err = openWAL(filepath.Join(dir, "floor.wal"), 64<<20); err != nil {
			return Result{}, fmt.Errorf("floor: open log: %w", err)
		}
		defer log.f.Close()
	}

	queue := make(chan *request, 4096)
	applyQ := make(chan []*request, 4096)
	var seq uint64
	put := func(batch []*request) error {
		return db.Update(func(tx *bolt.Tx) error {
			events, dedup := tx.Bucket([]byte("events")), tx.Bucket([]byte("dedup"))
			for _, r := range batch {
				seq++
				key := binary.BigEndian.AppendUint64(nil, seq)
				if err := events.Put(key, r.data); err != nil {
					return err
				}
				if err := dedup.Put(r.data[:16], key); err != nil {
					return err
				}
			}
			return nil
		})
	}
	var failure error
	var fmu sync.Mutex
	fail := func(err error) {
		fmu.Lock()
		failure = errors.Join(failure, err)
		fmu.Unlock()
	}
	committed := make(chan struct{})
	go func() { // the group committer
		defer close(committed)
		defer close(applyQ)
		for r := range queue {
			batch := append([]*request{r}, drain(queue)...)
			var err error
			if wal {
				err = log.append(batch)
			} else {
				err = put(batch)
			}
			if err != nil {
				fail(fmt.Errorf("floor: %s group commit: %w", res.Design, err))
			}
			for _, r := range batch {
				close(r.done)
			}
			if wal {
				applyQ <- batch
			}
		}
	}()
	applied := make(chan struct{})
	go func() { // wal only: bbolt behind the log, in batches of whatever waits
		defer close(applied)
		for b := range applyQ {
			for more := true; more; {
				select {
				case b2, ok := <-applyQ:
					if !ok {
						more = false
						break
					}
					b = append(b, b2...)
				default:
					more = false
				}
			}
			t := time.Now()
			if err := put(b); err != nil {
				fail(fmt.Errorf("floor: bbolt behind the log: %w", err))
			}
			res.Bolt = append(res.Bolt, time.Since(t))
		}
	}()

	n := int(dur.Seconds() * float64(rate))
	acks := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(due))
		r := &request{due: due, data: make([]byte, 600), done: make(chan struct{})}
		_, _ = rand.Read(r.data)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			queue <- r
			<-r.done
			acks[i] = time.Since(r.due)
		}(i)
	}
	wg.Wait()
	close(queue)
	<-committed
	<-applied
	res.Acks = acks
	return res, failure
}

func drain(q chan *request) []*request {
	var out []*request
	for {
		select {
		case r, ok := <-q:
			if !ok {
				return out
			}
			out = append(out, r)
		default:
			return out
		}
	}
}

// walFile is an append-only log written into space filled with zeros first,
// so an append changes no file metadata and fdatasync flushes data alone.
type walFile struct {
	f    *os.File
	off  int64
	size int64
}

func openWAL(path string, size int64) (*walFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return &walFile{f: f, size: size}, nil
}

func (w *walFile) append(batch []*request) error {
	var buf []byte
	for _, r := range batch {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.data)))
		buf = append(buf, r.data...)
	}
	if w.off+int64(len(buf)) > w.size {
		w.off = 0 // a real log would first check that bbolt holds what it overwrites
	}
	if _, err := w.f.WriteAt(buf, w.off); err != nil {
		return err
	}
	w.off += int64(len(buf))
	return syscall.Fdatasync(int(w.f.Fd()))
}
