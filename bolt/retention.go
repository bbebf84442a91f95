package bolt

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// sweepBatch bounds the events one retention transaction deletes, so the
// sweeper never holds the writer long enough to delay ingest.
const sweepBatch = 500

// Sweep deletes events received before cutoff, with their payloads, dedup
// keys and deliveries, in small transactions through the group committer. An
// event with a delivery still pending is kept, whatever its age. It returns
// how many events it deleted.
func (db *DB) Sweep(cutoff time.Time) (int, error) {
	total := 0
	var after []byte // events up to here were examined (kept ones included)
	for {
		deleted, last, more := 0, []byte(nil), false
		err := db.submit(func(tx *bbolt.Tx) error {
			deleted, last, more = 0, nil, false
			events := tx.Bucket(bucketEvents)
			c := events.Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && string(k) == string(after) {
				k, v = c.Next()
			}
			var doomed [][]byte
			var records []bridge.Event
			for examined := 0; k != nil && examined < sweepBatch; k, v = c.Next() {
				examined++
				var ev bridge.Event
				if err := decodeRecord(k, v, &ev); err != nil {
					return fmt.Errorf("store: decode event %s: %w", idString(k), err)
				}
				if !ev.ReceivedAt.Before(cutoff) {
					break
				}
				last = append([]byte(nil), k...)
				if pendingAny(tx, ev.DeliveryIDs) {
					continue
				}
				doomed = append(doomed, last)
				records = append(records, ev)
			}
			more = k != nil && len(last) > 0
			for i, key := range doomed {
				if err := deleteEventTx(tx, key, &records[i]); err != nil {
					return err
				}
			}
			deleted = len(doomed)
			return nil
		}, false, false)
		if err != nil {
			return total, fmt.Errorf("store: sweep: %w", err)
		}
		total += deleted
		if !more {
			return total, nil
		}
		after = last
	}
}

func pendingAny(tx *bbolt.Tx, ids []string) bool {
	p := tx.Bucket(bucketPending)
	for _, id := range ids {
		if k, err := idKey(id); err == nil && p.Get(k) != nil {
			return true
		}
	}
	return false
}

func deleteEventTx(tx *bbolt.Tx, key []byte, ev *bridge.Event) error {
	if err := uncountEventTx(tx, ev); err != nil {
		return err
	}
	for _, id := range ev.DeliveryIDs {
		if k, err := idKey(id); err == nil {
			if err := tx.Bucket(bucketDeliveries).Delete(k); err != nil {
				return err
			}
		}
	}
	if len(ev.DedupKey) > 0 {
		if err := tx.Bucket(bucketDedup).Delete(ev.DedupKey); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketPayloads).Delete(key); err != nil {
		return err
	}
	return tx.Bucket(bucketEvents).Delete(key)
}

// RunRetention sweeps every interval until ctx ends, deleting what is older
// than retention (0: never).
func (db *DB) RunRetention(ctx context.Context, retention, interval time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := db.Sweep(time.Now().Add(-retention))
		switch {
		case err != nil:
			log.Error("retention sweep", "err", err)
		case n > 0:
			log.Info("retention sweep", "deleted_events", n, "older_than", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Compact rewrites the store at path into a fresh file (bbolt never shrinks
// its file) and replaces it. It must run with no server holding the file: it
// fails with ErrLocked within lockTimeout otherwise. It returns the sizes
// before and after.
func Compact(path string, lockTimeout time.Duration) (before, after int64, err error) {
	src, err := Open(path, Options{LockTimeout: lockTimeout, ReadOnly: true})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	tmp := path + ".compact"
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: create %s: %w", tmp, err)
	}
	if err := bbolt.Compact(dst, src.bolt, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("store: compact: sync: %w", err)
	}
	if err := dst.Close(); err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	nfi, err := os.Stat(tmp)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, 0, fmt.Errorf("store: compact: replace %s: %w", path, err)
	}
	return fi.Size(), nfi.Size(), nil
}
