package admin

import (
	"context"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
)

// TestRetryJobLeavesUnknownTicketsOut: the console's "retry all" leaves a
// ticket whose outcome is unknown out (counted) unless include_unknown, and
// retries a dead upsert; its target filter knows the intake's targets.
func TestRetryJobLeavesUnknownTicketsOut(t *testing.T) {
	e := newEnv(t)
	e.svc.intake = []string{bridge.TargetDigishare, bridge.TargetExpertSender}
	res := backendtest.Take(t, e.db, backendtest.Order("J", `"v": 1`), backendtest.FullPlan)
	for _, d := range res.Deliveries {
		r := bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: HTTP 400", Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 400}}
		if d.Kind == bridge.KindTicket {
			r = bridge.AttemptResult{State: bridge.Dead, Result: bridge.ResultOutcomeUnknown, Reason: "outcome unknown: look for a ticket with external_id ORDER-J in Digishare, then retry or leave it",
				Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 502, Error: "outcome unknown: HTTP 502"}}
		}
		if err := e.db.Record(ctx, d.ID, r, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	p, err := e.svc.PreviewRetry(ctx, JobRequest{})
	if err != nil || p.Retry != 1 || p.Skipped[bridge.SkipOutcomeUnknown] != 1 {
		t.Fatalf("preview = %+v, %v; want the upsert retried, the ticket left out", p, err)
	}
	if p, err := e.svc.PreviewRetry(ctx, JobRequest{Filter: bridge.JobFilter{Target: bridge.TargetDigishare}, IncludeUnknown: true}); err != nil || p.Retry != 1 {
		t.Errorf("digishare with include_unknown = %+v, %v", p, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.svc.RunJobs(runCtx)
	j, err := e.svc.CreateJob(ctx, "x", JobRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if end := waitJob(t, e.svc, j.ID); end.Done != 1 || end.Skipped[bridge.SkipOutcomeUnknown] != 1 {
		t.Errorf("job = %+v", end)
	}
	if _, err := e.svc.Replay(ctx, "x", bridge.ReplaySelector{OrderID: "J"}, bridge.ReplayOptions{IncludeUnknown: true}); err == nil {
		t.Error("include_unknown without dead was accepted")
	}
	sum, err := e.svc.Replay(ctx, "x", bridge.ReplaySelector{Dead: true}, bridge.ReplayOptions{Targets: []string{bridge.TargetDigishare}, IncludeUnknown: true})
	if err != nil || sum.Retried != 1 {
		t.Errorf("dead replay of digishare with include_unknown = %+v, %v", sum, err)
	}
}

// TestOrderViewShowsIntakes: the console's order page has the order's
// intakes, its ticket and its intake deliveries on the timeline.
func TestOrderViewShowsIntakes(t *testing.T) {
	e := newEnv(t)
	res := backendtest.Take(t, e.db, backendtest.Order("V", `"v": 1`), backendtest.FullPlan)
	var tk bridge.Delivery
	for _, d := range res.Deliveries {
		if d.Kind == bridge.KindTicket {
			tk = d
		}
	}
	if _, err := bridge.RecordWith(ctx, e.db, tk.ID, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 201}},
		bridge.Outcome{Ticket: &bridge.Ticket{ID: "tk-7", Number: "77", MediaID: "m-7"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := e.svc.Order(ctx, "V")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Intakes) != 1 || v.Ticket == nil || v.Ticket.ID != "tk-7" || v.Ticket.State != "done" {
		t.Fatalf("view intakes %+v ticket %+v", v.Intakes, v.Ticket)
	}
	kinds := map[string]int{}
	for _, e := range v.Timeline {
		kinds[e.Kind]++
	}
	if kinds["intake"] != 1 || kinds["delivery"] != 2 || kinds["attempt"] != 1 {
		t.Errorf("timeline kinds %v, want the intake, its two deliveries and the ticket's attempt", kinds)
	}
}
