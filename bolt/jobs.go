package bolt

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// bucketJobs holds jobs (see bridge.Job): job id (16-byte UUIDv7) → JSON.
// They are few and written rarely, so JSON is compact enough.
var bucketJobs = []byte("jobs")

// maxFinishedJobs bounds the finished jobs kept; unfinished ones are always kept.
var maxFinishedJobs = 100

// CreateJob stores a new job, giving it an id, and returns it.
func (db *DB) CreateJob(ctx context.Context, j bridge.Job) (bridge.Job, error) {
	if err := ctx.Err(); err != nil {
		return bridge.Job{}, err
	}
	id, err := newID()
	if err != nil {
		return bridge.Job{}, err
	}
	j.ID = id.String()
	raw, err := json.Marshal(&j)
	if err != nil {
		return bridge.Job{}, fmt.Errorf("store: encode job: %w", err)
	}
	err = db.submit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		if err := b.Put(id[:], raw); err != nil {
			return err
		}
		return trimJobs(b)
	}, false, false)
	if err != nil {
		return bridge.Job{}, fmt.Errorf("store: create job: %w", err)
	}
	return j, nil
}

// trimJobs deletes the oldest finished jobs beyond maxFinishedJobs.
func trimJobs(b *bbolt.Bucket) error {
	var finished [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var j bridge.Job
		if json.Unmarshal(v, &j) == nil && j.State.Finished() {
			finished = append(finished, append([]byte(nil), k...))
		}
	}
	for len(finished) > maxFinishedJobs {
		if err := b.Delete(finished[0]); err != nil {
			return err
		}
		finished = finished[1:]
	}
	return nil
}

// SaveJob writes a job's progress; the job must exist (ErrNotFound).
func (db *DB) SaveJob(ctx context.Context, j bridge.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := idKey(j.ID)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(&j)
	if err != nil {
		return fmt.Errorf("store: encode job: %w", err)
	}
	err = db.submit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		if b.Get(key) == nil {
			return fmt.Errorf("%w: job %s", bridge.ErrNotFound, j.ID)
		}
		return b.Put(key, raw)
	}, false, false)
	if err != nil {
		return fmt.Errorf("store: save job %s: %w", j.ID, err)
	}
	return nil
}

// GetJob returns one job (ErrNotFound when there is none).
func (db *DB) GetJob(ctx context.Context, id string) (*bridge.Job, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	var j bridge.Job
	err = db.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		var raw []byte
		if b != nil {
			raw = b.Get(key)
		}
		if raw == nil {
			return fmt.Errorf("%w: job %s", bridge.ErrNotFound, id)
		}
		return json.Unmarshal(raw, &j)
	})
	if err != nil {
		return nil, err
	}
	return &j, nil
}

// ListJobs returns up to limit jobs, newest first.
func (db *DB) ListJobs(ctx context.Context, limit int) ([]bridge.Job, error) {
	return newestJSON[bridge.Job](db, bucketJobs, limit, "job")
}

// UnfinishedJobs returns the jobs that are queued or running, oldest first
// (a restarted process continues them).
func (db *DB) UnfinishedJobs(ctx context.Context) ([]bridge.Job, error) {
	var out []bridge.Job
	err := db.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var j bridge.Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("store: decode job %s: %w", idString(k), err)
			}
			if !j.State.Finished() {
				out = append(out, j)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: unfinished jobs: %w", err)
	}
	return out, nil
}
