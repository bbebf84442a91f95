package backendtest

import (
	"context"
	"errors"
	"fmt"
	stdmaps "maps"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// ConsoleStore is admin.ConsoleStore (which this package cannot import:
// admin's tests import it): what a backend keeps for the console.
type ConsoleStore interface {
	Counters(ctx context.Context, now time.Time) (bridge.Counters, error)
	CreateJob(ctx context.Context, j bridge.Job) (bridge.Job, error)
	SaveJob(ctx context.Context, j bridge.Job) error
	GetJob(ctx context.Context, id string) (*bridge.Job, error)
	ListJobs(ctx context.Context, limit int) ([]bridge.Job, error)
	UnfinishedJobs(ctx context.Context) ([]bridge.Job, error)
	RecordAction(ctx context.Context, a bridge.Action) error
	Actions(ctx context.Context, limit int) ([]bridge.Action, error)
}

// Feed is receiver.Feed: the changes feed of the live tail.
type Feed interface {
	ChangesPosition() (string, error)
	ChangesAfter(pos string, limit int) ([]bridge.Delivery, string, error)
}

// Caps every backend keeps (bbolt's: the console shows the same on either).
const (
	MaxFinishedJobs = 100
	MaxActions      = 200
)

func consoleOf(t *testing.T, b bridge.Backend) ConsoleStore {
	t.Helper()
	c, ok := b.(ConsoleStore)
	if !ok {
		t.Fatalf("%T does not keep the console's store (admin.ConsoleStore)", b)
	}
	return c
}

const window = 5 * time.Minute

// ScanCounters computes by brute force, from the listings, what Counters
// should say as of now.
func ScanCounters(t *testing.T, b bridge.Backend, now time.Time) bridge.Counters {
	t.Helper()
	want := bridge.Counters{LastHour: map[bridge.EventState]int{}, LastDay: map[bridge.EventState]int{},
		Targets: map[string]bridge.TargetCounters{}, Unmapped: map[string]int{}, StatusIDs: map[string]int{}}
	cur := now.UTC().Truncate(window)
	ef := bridge.EventFilter{Limit: 1000}
	for {
		evs, next, err := b.ListEvents(context.Background(), ef)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			bk := ev.ReceivedAt.UTC().Truncate(window)
			if !bk.Before(cur.Add(-287*window)) && !bk.After(cur) {
				want.LastDay[ev.State]++
				if !bk.Before(cur.Add(-11 * window)) {
					want.LastHour[ev.State]++
				}
			}
			if n := len(ev.Decisions); n > 0 && ev.Decisions[n-1].StatusID != "" {
				id := ev.Decisions[n-1].StatusID
				want.StatusIDs[id]++
				if ev.State == bridge.EventUnmapped {
					want.Unmapped[id]++
				}
			}
		}
		if next == "" {
			break
		}
		ef.Cursor = next
	}
	df := bridge.DeliveryFilter{Limit: 1000, IncludeResolved: true}
	for {
		ds, next, err := b.ListDeliveries(context.Background(), df)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			tc := want.Targets[d.Target]
			if tc.States == nil {
				tc.States = map[bridge.DeliveryState]int{}
			}
			st := d.State
			if st == bridge.InFlight {
				st = bridge.Pending // counted as stored
			}
			tc.States[st]++
			if st == bridge.Pending && (tc.OldestPending.IsZero() || d.CreatedAt.Before(tc.OldestPending)) {
				tc.OldestPending = d.CreatedAt
			}
			want.Targets[d.Target] = tc
		}
		if next == "" {
			break
		}
		df.Cursor = next
	}
	return want
}

// SameCounters fails t unless got and want count the same.
func SameCounters(t *testing.T, what string, got, want bridge.Counters) {
	t.Helper()
	if !stdmaps.Equal(got.LastHour, want.LastHour) || !stdmaps.Equal(got.LastDay, want.LastDay) ||
		!stdmaps.Equal(got.Unmapped, want.Unmapped) || !stdmaps.Equal(got.StatusIDs, want.StatusIDs) ||
		len(got.Targets) != len(want.Targets) {
		t.Fatalf("%s: counters\n got %+v\nwant %+v", what, got, want)
	}
	for name, w := range want.Targets {
		g := got.Targets[name]
		if !stdmaps.Equal(g.States, w.States) || !g.OldestPending.Equal(w.OldestPending) {
			t.Fatalf("%s: target %s: got %+v, want %+v", what, name, g, w)
		}
	}
}

// CountersFollowEveryStateChange drives every write that changes a counted
// state (ingest, records, a retry, a replay, retention) and compares the
// counters with a scan after each.
func CountersFollowEveryStateChange(t *testing.T, f Factory) {
	b, _ := f(t)
	c := consoleOf(t, b)
	tb := Table(t, "k")
	ctx := context.Background()
	now := time.Now()
	check := func(what string) {
		t.Helper()
		got, err := c.Counters(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		SameCounters(t, what, got, ScanCounters(t, b, now))
	}
	check("empty store")
	old := IngestAt(t, b, tb, "d", "4", Confirmed, "", now.Add(-100*24*time.Hour)) // first: retention sweeps in id order
	a := IngestAt(t, b, tb, "a", "1", Confirmed, "2026-01-13 10:00:00", now.Add(-10*time.Minute))
	IngestAt(t, b, tb, "b", "2", "newstatus0000000", "2026-01-13 10:00:00", now.Add(-3*time.Hour))
	IngestAt(t, b, tb, "c", "3", "newstatus0000000", "2026-01-13 10:00:00", now.Add(-30*time.Hour))
	if _, err := bridge.Ingest(ctx, b, Incoming(t, []byte(`{"event":"ticket.updated","data":{"id":5}}`)), tb); err != nil {
		t.Fatal(err)
	}
	check("after ingest")
	got, _ := c.Counters(ctx, now)
	if got.LastHour[bridge.EventDispatched] != 1 || got.LastDay[bridge.EventUnmapped] != 1 || got.Unmapped["newstatus0000000"] != 2 {
		t.Errorf("counters after ingest = %+v", got)
	}
	if got.Targets["expertsender"].States[bridge.Pending] != 2 || got.Targets["expertsender"].OldestPending.IsZero() {
		t.Errorf("pending = %+v", got.Targets["expertsender"])
	}
	record(t, b, a.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "x"})
	check("after a delivery died")
	if _, err := bridge.RetryDelivery(ctx, b, a.Deliveries[0].ID, now); err != nil {
		t.Fatal(err)
	}
	check("after a retry")
	if _, err := bridge.Replay(ctx, b, bridge.ReplaySelector{OrderID: "1"}, tb, bridge.ReplayOptions{Force: true}, now); err != nil {
		t.Fatal(err)
	}
	check("after a replay")
	record(t, b, old.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done})
	if n, err := bridge.Sweep(ctx, b, now.Add(-90*24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	check("after retention")
}

// JobsAndActions: jobs are stored, saved, listed newest first (finished
// ones capped at MaxFinishedJobs, unfinished ones always kept); actions are
// capped at MaxActions, newest first.
func JobsAndActions(t *testing.T, f Factory) {
	b, reopen := f(t)
	c := consoleOf(t, b)
	ctx := context.Background()
	j, err := c.CreateJob(ctx, bridge.Job{Kind: bridge.JobRetry, State: bridge.JobQueued, Total: 3,
		Filter: bridge.JobFilter{Target: "expertsender"}, Skipped: map[string]int{}, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)})
	if err != nil || j.ID == "" {
		t.Fatalf("create = %+v, %v", j, err)
	}
	j.State, j.Done, j.Cursor = bridge.JobRunning, 2, "x"
	j.Skipped = map[string]int{bridge.SkipNewerExists: 1}
	if err := c.SaveJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetJob(ctx, j.ID)
	if err != nil || !reflect.DeepEqual(*got, j) {
		t.Fatalf("get = %+v, %v; want %+v", got, err, j)
	}
	if un, _ := c.UnfinishedJobs(ctx); len(un) != 1 || un[0].ID != j.ID {
		t.Errorf("unfinished = %v", un)
	}
	const unknown = "01a20000-0000-7000-8000-000000000000"
	if _, err := c.GetJob(ctx, unknown); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	if err := c.SaveJob(ctx, bridge.Job{ID: unknown}); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("saving an unknown job: %v", err)
	}
	for i := range MaxFinishedJobs + 5 {
		if _, err := c.CreateJob(ctx, bridge.Job{Kind: bridge.JobRetry, State: bridge.JobDone, Total: i}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := c.ListJobs(ctx, 1000)
	if len(all) != MaxFinishedJobs+1 || all[0].Total != MaxFinishedJobs+4 || all[len(all)-1].ID != j.ID {
		t.Errorf("%d jobs kept (newest total %d), want %d finished and the running one", len(all), all[0].Total, MaxFinishedJobs)
	}
	if few, _ := c.ListJobs(ctx, 3); len(few) != 3 {
		t.Errorf("ListJobs(3) = %d jobs", len(few))
	}
	for i := range MaxActions + 3 {
		if err := c.RecordAction(ctx, bridge.Action{Kind: "retry", What: fmt.Sprint(i), At: time.Now(), From: "192.0.2.1", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	acts, err := c.Actions(ctx, 1000)
	if err != nil || len(acts) != MaxActions || acts[0].What != fmt.Sprint(MaxActions+2) || acts[0].ID == "" || acts[0].From != "192.0.2.1" {
		t.Fatalf("actions: %d (newest %+v), %v", len(acts), acts[0], err)
	}
	// They survive a restart.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c = consoleOf(t, reopen(t))
	if un, _ := c.UnfinishedJobs(ctx); len(un) != 1 || un[0].ID != j.ID || un[0].Cursor != "x" {
		t.Errorf("unfinished after reopening = %+v", un)
	}
	if acts, _ := c.Actions(ctx, 2); len(acts) != 2 {
		t.Errorf("actions after reopening: %d", len(acts))
	}
}

// StatusFilter: EventFilter.StatusID keeps the events whose last decision
// has that status id.
func StatusFilter(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	r := IngestAt(t, b, tb, "a", "77", Confirmed, "2026-01-13 10:00:00", time.Now())
	IngestAt(t, b, tb, "b", "78", Awaiting, "2026-01-13 10:00:00", time.Now())
	evs, _, err := b.ListEvents(context.Background(), bridge.EventFilter{StatusID: Confirmed})
	if err != nil || len(evs) != 1 || evs[0].ID != r.EventID {
		t.Errorf("status filter = %v, %v", evs, err)
	}
	evs, _, err = b.ListEvents(context.Background(), bridge.EventFilter{StatusID: "nosuchstatus0000"})
	if err != nil || len(evs) != 0 {
		t.Errorf("status filter of an unknown status = %v, %v", evs, err)
	}
}

// ChangesFeed: results recorded after a position come back in the order
// recorded, each delivery once as it is now.
func ChangesFeed(t *testing.T, f Factory) {
	b, _ := f(t)
	feed, ok := b.(Feed)
	if !ok {
		t.Fatalf("%T has no changes feed (receiver.Feed)", b)
	}
	tb := Table(t, "k")
	a := IngestAt(t, b, tb, "a", "1", Confirmed, "", time.Now()).Deliveries[0].ID
	d := IngestAt(t, b, tb, "b", "2", Confirmed, "", time.Now()).Deliveries[0].ID
	pos, err := feed.ChangesPosition()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rec := func(id string, st bridge.DeliveryState) {
		t.Helper()
		record(t, b, id, bridge.AttemptResult{State: st, Attempt: &bridge.Attempt{At: now, StatusCode: 503}, NextAttemptAt: now.Add(time.Second)})
	}
	rec(a, bridge.Pending)
	rec(d, bridge.Pending)
	rec(a, bridge.Done)
	got, next, err := feed.ChangesAfter(pos, 100)
	if err != nil || len(got) != 2 || got[0].ID != d || got[1].ID != a || got[1].State != bridge.Done || len(got[1].Attempts) != 2 {
		t.Fatalf("changes = %+v, %v; want b then a (done, 2 attempts)", got, err)
	}
	if more, _, _ := feed.ChangesAfter(next, 100); len(more) != 0 {
		t.Errorf("changes after the last position: %+v", more)
	}
	// A page of one change at a time walks the same changes.
	var walked []string
	for p, i := pos, 0; i < 10; i++ {
		page, np, err := feed.ChangesAfter(p, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range page {
			walked = append(walked, x.ID)
		}
		if np == p {
			break
		}
		p = np
	}
	if fmt.Sprint(walked) != fmt.Sprint([]string{a, d, a}) {
		t.Errorf("one change a page: %v, want [%s %s %s]", walked, a, d, a)
	}
	rec(d, bridge.Done)
	if got, _, _ := feed.ChangesAfter(next, 100); len(got) != 1 || got[0].ID != d || got[0].State != bridge.Done {
		t.Errorf("changes = %+v", got)
	}
	if _, _, err := feed.ChangesAfter("not a position", 10); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("a bad position: %v", err)
	}
}

// CountersUnderConcurrentWrites: ingests and records made at once (on
// several connections, for a database) are all counted.
func CountersUnderConcurrentWrites(t *testing.T, f Factory) {
	b, _ := f(t)
	c := consoleOf(t, b)
	tb := Table(t, "k")
	ctx := context.Background()
	const n = 60
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := Confirmed
			if i%3 == 0 {
				status = "newstatus0000000" // unmapped
			}
			raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: status,
				DateStatus: "2026-01-13 16:29:51"}.Payload()
			r, err := bridge.Ingest(ctx, b, Incoming(t, raw), tb)
			if err == nil && len(r.Deliveries) > 0 {
				st := bridge.Done
				if i%2 == 0 {
					st = bridge.Dead
				}
				err = b.Record(ctx, r.Deliveries[0].ID, bridge.AttemptResult{State: st, Reason: "x"}, time.Now())
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	now := time.Now()
	got, err := c.Counters(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	SameCounters(t, "after concurrent writes", got, ScanCounters(t, b, now))
	if got.LastHour[bridge.EventDispatched] != 40 || got.Unmapped["newstatus0000000"] != 20 {
		t.Errorf("counters = %+v", got)
	}
}
