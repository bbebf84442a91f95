package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statusbridge/statusbridge/bridge"
)

// The console's store (admin.ConsoleStore): counters, jobs and the last
// operator actions. The counters are kept by triggers (migration 0004) in
// the transactions that change what they count, so Counters reads a few
// hundred small rows whatever the size of the store.

const (
	// counterWidth is the width of a time bucket of event counts (the
	// migration's 300 seconds).
	counterWidth = 5 * time.Minute
	// counterHorizon is how long time buckets are kept.
	counterHorizon = 48 * time.Hour
	// maxFinishedJobs bounds the finished jobs kept; unfinished ones are always kept.
	maxFinishedJobs = 100
	// maxActions is how many recorded actions are kept.
	maxActions = 200
)

// Counters returns the counted events and deliveries as of now (the windows
// as bbolt has them: the current 5-minute bucket and the 11, or 287,
// before it), in one snapshot.
func (db *DB) Counters(ctx context.Context, now time.Time) (bridge.Counters, error) {
	release, err := db.enter()
	if err != nil {
		return bridge.Counters{}, err
	}
	defer release()
	out := bridge.Counters{LastHour: map[bridge.EventState]int{}, LastDay: map[bridge.EventState]int{},
		Targets: map[string]bridge.TargetCounters{}, Unmapped: map[string]int{}, StatusIDs: map[string]int{}}
	cur := now.UTC().Truncate(counterWidth)
	hour, day := cur.Add(-11*counterWidth), cur.Add(-287*counterWidth)
	target := func(name string) bridge.TargetCounters {
		tc := out.Targets[name]
		if tc.States == nil {
			tc.States = map[bridge.DeliveryState]int{}
		}
		return tc
	}
	err = db.readTx(ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT state, coalesce(sum(n) FILTER (WHERE bucket >= $2), 0), sum(n) FROM event_counts
			WHERE bucket >= $1 AND bucket <= $3 GROUP BY state HAVING sum(n) > 0`, day, hour, cur).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var state string
				var h, d int
				if err := rows.Scan(&state, &h, &d); err != nil {
					return err
				}
				if h > 0 {
					out.LastHour[bridge.EventState(state)] = h
				}
				out.LastDay[bridge.EventState(state)] = d
			}
			return rows.Err()
		})
		b.Queue(`SELECT status_id, sum(n), coalesce(sum(n) FILTER (WHERE unmapped), 0) FROM status_counts
			GROUP BY status_id HAVING sum(n) > 0`).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var all, unmapped int
				if err := rows.Scan(&id, &all, &unmapped); err != nil {
					return err
				}
				out.StatusIDs[id] = all
				if unmapped > 0 {
					out.Unmapped[id] = unmapped
				}
			}
			return rows.Err()
		})
		b.Queue(`SELECT target, state, sum(n) FROM delivery_counts GROUP BY target, state HAVING sum(n) > 0`).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var name, state string
				var n int
				if err := rows.Scan(&name, &state, &n); err != nil {
					return err
				}
				tc := target(name)
				tc.States[bridge.DeliveryState(state)] = n
				out.Targets[name] = tc
			}
			return rows.Err()
		})
		// The pending rows only (deliveries_pending): few.
		b.Queue(`SELECT target, min(created_at) FROM deliveries WHERE state = 'pending' GROUP BY target`).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var name string
				var oldest time.Time
				if err := rows.Scan(&name, &oldest); err != nil {
					return err
				}
				tc := target(name)
				tc.OldestPending = oldest.UTC()
				out.Targets[name] = tc
			}
			return rows.Err()
		})
	})
	if err != nil {
		return bridge.Counters{}, db.fail(ctx, "read counters", err)
	}
	return out, nil
}

// CreateJob stores a new job, giving it an id, and returns it; the oldest
// finished jobs beyond the last 100 are forgotten.
func (db *DB) CreateJob(ctx context.Context, j bridge.Job) (bridge.Job, error) {
	id, err := bridge.NewID()
	if err != nil {
		return bridge.Job{}, err
	}
	j.ID = id
	raw, err := jsonb(&j)
	if err != nil {
		return bridge.Job{}, fmt.Errorf("postgres: encode job: %w", err)
	}
	release, err := db.enter()
	if err != nil {
		return bridge.Job{}, err
	}
	defer release()
	uid, _ := parseID("job", id)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO jobs (id, finished, job) VALUES ($1, $2, $3)`, uid, j.State.Finished(), raw)
	b.Queue(`DELETE FROM jobs WHERE finished AND id < (SELECT id FROM jobs WHERE finished ORDER BY id DESC OFFSET $1 LIMIT 1)`, maxFinishedJobs-1)
	if err := db.sendBatch(ctx, b); err != nil {
		return bridge.Job{}, db.fail(ctx, "create job", err)
	}
	return j, nil
}

// SaveJob writes a job's progress; the job must exist (ErrNotFound).
func (db *DB) SaveJob(ctx context.Context, j bridge.Job) error {
	uid, err := parseID("job", j.ID)
	if err != nil {
		return err
	}
	raw, err := jsonb(&j)
	if err != nil {
		return fmt.Errorf("postgres: encode job: %w", err)
	}
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	tag, err := db.pool.Exec(ctx, `UPDATE jobs SET finished = $2, job = $3 WHERE id = $1`, uid, j.State.Finished(), raw)
	if err != nil {
		return db.fail(ctx, "save job "+j.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: job %s", bridge.ErrNotFound, j.ID)
	}
	return nil
}

// GetJob returns one job (ErrNotFound when there is none).
func (db *DB) GetJob(ctx context.Context, id string) (*bridge.Job, error) {
	uid, err := parseID("job", id)
	if err != nil {
		return nil, err
	}
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	var raw []byte
	err = db.pool.QueryRow(ctx, `SELECT job FROM jobs WHERE id = $1`, uid).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: job %s", bridge.ErrNotFound, id)
	}
	if err != nil {
		return nil, db.fail(ctx, "read job "+id, err)
	}
	var j bridge.Job
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("postgres: decode job %s: %w", id, err)
	}
	return &j, nil
}

// ListJobs returns up to limit jobs, newest first.
func (db *DB) ListJobs(ctx context.Context, limit int) ([]bridge.Job, error) {
	return queryJSON[bridge.Job](ctx, db, "jobs", `SELECT job FROM jobs ORDER BY id DESC LIMIT $1`, max(limit, 0))
}

// UnfinishedJobs returns the jobs that are queued or running, oldest first
// (a restarted process continues them).
func (db *DB) UnfinishedJobs(ctx context.Context) ([]bridge.Job, error) {
	out, err := queryJSON[bridge.Job](ctx, db, "unfinished jobs", `SELECT job FROM jobs WHERE NOT finished ORDER BY id`)
	if len(out) == 0 && err == nil {
		return nil, nil // as bbolt
	}
	return out, err
}

// RecordAction stores an operator action, giving it an id, and forgets the
// oldest beyond the last 200.
func (db *DB) RecordAction(ctx context.Context, a bridge.Action) error {
	id, err := bridge.NewID()
	if err != nil {
		return err
	}
	a.ID = id
	raw, err := jsonb(&a)
	if err != nil {
		return fmt.Errorf("postgres: encode action: %w", err)
	}
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	uid, _ := parseID("action", id)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO actions (id, action) VALUES ($1, $2)`, uid, raw)
	b.Queue(`DELETE FROM actions WHERE id < (SELECT id FROM actions ORDER BY id DESC OFFSET $1 LIMIT 1)`, maxActions-1)
	if err := db.sendBatch(ctx, b); err != nil {
		return db.fail(ctx, "record action", err)
	}
	return nil
}

// Actions returns up to limit recorded actions, newest first.
func (db *DB) Actions(ctx context.Context, limit int) ([]bridge.Action, error) {
	return queryJSON[bridge.Action](ctx, db, "actions", `SELECT action FROM actions ORDER BY id DESC LIMIT $1`, max(limit, 0))
}

// queryJSON reads the JSON column of the rows of sql.
func queryJSON[T any](ctx context.Context, db *DB, what, sql string, args ...any) ([]T, error) {
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, db.fail(ctx, "read "+what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, db.fail(ctx, "read "+what, err)
		}
		var x T
		if err := json.Unmarshal(raw, &x); err != nil {
			return nil, fmt.Errorf("postgres: decode %s: %w", what, err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(ctx, "read "+what, err)
	}
	return out, nil
}
