package postgres

import (
	"context"
	"fmt"

	"github.com/statusbridge/statusbridge/bridge"
)

// For statusbridge store copy (bbolt → PostgreSQL): the console's finished
// bulk jobs and its log of operator actions, written as the source holds
// them (ids, times and order kept: both are listed by id, which is a
// UUIDv7, so the order of creation), then capped as CreateJob and
// RecordAction cap them (the last 100 finished jobs, the last 200 actions).

// KeptFinishedJobs and KeptActions are the caps the console's store keeps
// (the bbolt store's too): a copy of more keeps the newest.
const (
	KeptFinishedJobs = maxFinishedJobs
	KeptActions      = maxActions
)

// CopyConsole writes jobs and actions in one transaction, with their own
// ids; a job or an action already in the store is kept. Unfinished jobs are
// written too (as unfinished), but a copy refuses a source holding one.
func (db *DB) CopyConsole(ctx context.Context, jobs []bridge.Job, actions []bridge.Action) error {
	if len(jobs)+len(actions) == 0 {
		return nil
	}
	jobIDs, finished, jobRaw := make([]string, len(jobs)), make([]bool, len(jobs)), make([]string, len(jobs))
	for i := range jobs {
		if _, err := parseID("job", jobs[i].ID); err != nil {
			return fmt.Errorf("postgres: copy job: %w", err)
		}
		raw, err := jsonb(&jobs[i])
		if err != nil {
			return fmt.Errorf("postgres: encode job %s: %w", jobs[i].ID, err)
		}
		jobIDs[i], finished[i], jobRaw[i] = jobs[i].ID, jobs[i].State.Finished(), string(raw)
	}
	actionIDs, actionRaw := make([]string, len(actions)), make([]string, len(actions))
	for i := range actions {
		if _, err := parseID("action", actions[i].ID); err != nil {
			return fmt.Errorf("postgres: copy action: %w", err)
		}
		raw, err := jsonb(&actions[i])
		if err != nil {
			return fmt.Errorf("postgres: encode action %s: %w", actions[i].ID, err)
		}
		actionIDs[i], actionRaw[i] = actions[i].ID, string(raw)
	}
	return db.Update(ctx, bridge.UpdateOptions{}, func(btx bridge.Tx) error {
		t := btx.(*tx)
		// Statements without keys run one by one, in this order: each trim
		// sees the rows inserted before it.
		if len(jobs) > 0 {
			if err := t.write("copy jobs", nil, `INSERT INTO jobs (id, finished, job)
				SELECT * FROM unnest($1::uuid[], $2::boolean[], $3::jsonb[]) ON CONFLICT (id) DO NOTHING`,
				ids(jobIDs), finished, jobRaw); err != nil {
				return err
			}
			if err := t.write("trim copied jobs", nil, `DELETE FROM jobs WHERE finished AND id <
				(SELECT id FROM jobs WHERE finished ORDER BY id DESC OFFSET $1 LIMIT 1)`, maxFinishedJobs-1); err != nil {
				return err
			}
		}
		if len(actions) > 0 {
			if err := t.write("copy actions", nil, `INSERT INTO actions (id, action)
				SELECT * FROM unnest($1::uuid[], $2::jsonb[]) ON CONFLICT (id) DO NOTHING`,
				ids(actionIDs), actionRaw); err != nil {
				return err
			}
			if err := t.write("trim copied actions", nil, `DELETE FROM actions WHERE id <
				(SELECT id FROM actions ORDER BY id DESC OFFSET $1 LIMIT 1)`, maxActions-1); err != nil {
				return err
			}
		}
		return nil
	})
}

// ConsoleCounts counts the jobs and the recorded actions (a copy's check).
func (db *DB) ConsoleCounts(ctx context.Context) (jobs, actions int, err error) {
	release, err := db.enter()
	if err != nil {
		return 0, 0, err
	}
	defer release()
	err = db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM actions)`).Scan(&jobs, &actions)
	if err != nil {
		return 0, 0, db.fail(ctx, "count jobs and actions", err)
	}
	return jobs, actions, nil
}
