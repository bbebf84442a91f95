package postgres

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// TestCopyConsoleKeepsIDsOrderAndCaps: jobs and actions copied in keep
// their ids, times and order (listed newest first, as the service lists
// them), a copy of more than the caps keeps the newest (the last 100
// finished jobs, an unfinished one whatever its age; the last 200 actions),
// a record copied twice is kept once, and the counts see them (a target
// holding one is not empty).
func TestCopyConsoleKeepsIDsOrderAndCaps(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t, Options{})
	at := time.Date(2026, 1, 13, 10, 0, 0, 123456789, time.UTC)
	newID := func() string {
		id, err := bridge.NewID()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var jobs []bridge.Job
	for i := range KeptFinishedJobs + 20 {
		st := bridge.JobDone
		if i == 0 {
			st = bridge.JobQueued // the oldest: kept though beyond the cap
		}
		jobs = append(jobs, bridge.Job{ID: newID(), Kind: bridge.JobRetry, State: st, CreatedAt: at.Add(time.Duration(i) * time.Second),
			UpdatedAt: at, Total: i, Skipped: map[string]int{bridge.SkipNotDead: i}})
	}
	var actions []bridge.Action
	for i := range KeptActions + 30 {
		actions = append(actions, bridge.Action{ID: newID(), At: at.Add(time.Duration(i) * time.Millisecond), Kind: "retry",
			What: fmt.Sprintf("retry %d", i), From: "10.0.0.7", Result: "ok"})
	}
	// In two transactions, the second repeating the first's last records.
	if err := db.CopyConsole(ctx, jobs[:60], actions[:150]); err != nil {
		t.Fatal(err)
	}
	if err := db.CopyConsole(ctx, jobs[59:], actions[149:]); err != nil {
		t.Fatal(err)
	}
	got, err := db.ListJobs(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := []bridge.Job{}
	for i := len(jobs) - 1; i >= len(jobs)-KeptFinishedJobs; i-- {
		want = append(want, jobs[i])
	}
	want = append(want, jobs[0])
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jobs kept: %d, want the newest %d finished and the unfinished one, newest first", len(got), KeptFinishedJobs)
	}
	if un, err := db.UnfinishedJobs(ctx); err != nil || len(un) != 1 || un[0].ID != jobs[0].ID {
		t.Errorf("unfinished jobs %+v (%v), want %s", un, err, jobs[0].ID)
	}
	gotActions, err := db.Actions(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	wantActions := []bridge.Action{}
	for i := len(actions) - 1; i >= len(actions)-KeptActions; i-- {
		wantActions = append(wantActions, actions[i])
	}
	if !reflect.DeepEqual(gotActions, wantActions) {
		t.Errorf("actions kept: %d, want the newest %d, newest first", len(gotActions), KeptActions)
	}
	n, err := db.CopyCounts(ctx)
	if err != nil || n[CountJobs] != KeptFinishedJobs+1 || n[CountActions] != KeptActions {
		t.Errorf("counts %v (%v)", n, err)
	}
	if empty, what, err := db.Empty(ctx); err != nil || empty {
		t.Errorf("a store holding jobs and actions is empty (%q, %v)", what, err)
	}
}
