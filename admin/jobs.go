package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// JobRequest asks for a job (POST /admin/jobs).
type JobRequest struct {
	Kind   bridge.JobKind   `json:"kind"`
	Filter bridge.JobFilter `json:"filter"`
	// IncludeUnknown also retries deliveries whose outcome is unknown (see
	// OutcomeUnknown).
	IncludeUnknown bool `json:"include_unknown"`
	// DryRun previews what the job would do and creates nothing.
	DryRun bool `json:"dry_run"`
}

// SendCount is how many deliveries of one target and status a retry sends.
type SendCount struct {
	Target string `json:"target"`
	Status string `json:"status"`
	Count  int    `json:"count"`
}

// RetryPreview is what a retry job would do, counted before it starts.
type RetryPreview struct {
	Filter         bridge.JobFilter `json:"filter"`
	IncludeUnknown bool             `json:"include_unknown"`
	// Matched counts the dead deliveries the filter selects; Retry those
	// that would be queued again; Skipped the others, by reason.
	Matched int            `json:"matched"`
	Retry   int            `json:"retry"`
	Skipped map[string]int `json:"skipped"`
	// Sends counts what would be sent, per target and status.
	Sends []SendCount `json:"sends"`
	// Examples are a few of the deliveries that would be retried.
	Examples []bridge.Delivery `json:"examples"`
}

// OutcomeUnknown reports whether the target may have applied a dead
// delivery after all: its last attempt got no HTTP answer (a timeout or a
// connection cut after the request went out) and it was not refused as
// permanent before anything was sent (a missing placeholder, an unreadable
// phone number).
func OutcomeUnknown(d *bridge.Delivery) bool {
	if d.UnknownOutcome() { // a ticket that may exist (bridge.ResultOutcomeUnknown)
		return true
	}
	n := len(d.Attempts)
	return n > 0 && d.Attempts[n-1].StatusCode == 0 && !strings.HasPrefix(d.Reason, "permanent failure")
}

func (s *Service) checkJob(req *JobRequest) error {
	if req.Kind == "" {
		req.Kind = bridge.JobRetry
	}
	if req.Kind != bridge.JobRetry {
		return invalid("kind: only \"retry\" jobs exist")
	}
	if req.Filter.State == "" {
		req.Filter.State = string(bridge.Dead)
	}
	if req.Filter.State != string(bridge.Dead) {
		return invalid("filter.state: only dead deliveries are retried")
	}
	if t := req.Filter.Target; t != "" && !slices.Contains(s.knownTargets(), t) {
		return invalid("filter.target: %q is not a configured target (%s)", t, strings.Join(s.knownTargets(), ", "))
	}
	return nil
}

// classify says why a job leaves d out ("" = it retries d); orders caches
// order states.
func (s *Service) classify(ctx context.Context, d *bridge.Delivery, includeUnknown bool, orders map[string]bridge.OrderState) (string, error) {
	if d.State != bridge.Dead {
		return bridge.SkipNotDead, nil
	}
	if OutcomeUnknown(d) && !includeUnknown {
		return bridge.SkipOutcomeUnknown, nil
	}
	st, ok := orders[d.OrderID]
	if !ok {
		var err error
		if st, err = s.orderState(ctx, d.OrderID); err != nil {
			return "", err
		}
		if orders != nil {
			orders[d.OrderID] = st
		}
	}
	return retryable(d, st), nil
}

// eachDead calls fn for every delivery the filter selects, newest first,
// page after page, from just after cursor ("" = the newest); fn returns
// false to stop.
func (s *Service) eachDead(ctx context.Context, f bridge.JobFilter, cursor string, fn func(d *bridge.Delivery, next string) (bool, error)) error {
	for {
		page, next, err := s.store.ListDeliveries(ctx, bridge.DeliveryFilter{State: f.State, Target: f.Target, Cursor: cursor, Limit: 200})
		if err != nil {
			return cursorError(err)
		}
		for i := range page {
			if more, err := fn(&page[i], next); err != nil || !more {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// PreviewRetry counts what a retry job of req would do, sending nothing.
func (s *Service) PreviewRetry(ctx context.Context, req JobRequest) (*RetryPreview, error) {
	if err := s.checkJob(&req); err != nil {
		return nil, err
	}
	p := &RetryPreview{Filter: req.Filter, IncludeUnknown: req.IncludeUnknown, Skipped: map[string]int{}, Sends: []SendCount{}, Examples: []bridge.Delivery{}}
	sends := map[[2]string]int{}
	orders := map[string]bridge.OrderState{}
	err := s.eachDead(ctx, req.Filter, "", func(d *bridge.Delivery, _ string) (bool, error) {
		p.Matched++
		reason, err := s.classify(ctx, d, req.IncludeUnknown, orders)
		if err != nil {
			return false, err
		}
		if reason != "" {
			p.Skipped[reason]++
			return true, nil
		}
		p.Retry++
		sends[[2]string{d.Target, d.Status}]++
		if len(p.Examples) < 10 {
			p.Examples = append(p.Examples, *d)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	for k, n := range sends {
		p.Sends = append(p.Sends, SendCount{Target: k[0], Status: k[1], Count: n})
	}
	sort.Slice(p.Sends, func(i, j int) bool {
		a, b := p.Sends[i], p.Sends[j]
		return a.Target < b.Target || (a.Target == b.Target && a.Status < b.Status)
	})
	return p, nil
}

// CreateJob records a job, counted first (its Total), for the runner of
// the sending process to carry out.
func (s *Service) CreateJob(ctx context.Context, from string, req JobRequest) (bridge.Job, error) {
	p, err := s.PreviewRetry(ctx, req)
	if err != nil {
		return bridge.Job{}, err
	}
	now := s.now().UTC()
	j, err := s.console.CreateJob(ctx, bridge.Job{Kind: bridge.JobRetry, Filter: p.Filter, IncludeUnknown: req.IncludeUnknown,
		State: bridge.JobQueued, CreatedAt: now, UpdatedAt: now, From: from, Total: p.Matched, Skipped: map[string]int{}})
	what := fmt.Sprintf("retry job over dead deliveries%s: %d matched, %d to retry", targetText(p.Filter.Target), p.Matched, p.Retry)
	if err == nil {
		what += " (job " + j.ID + ")"
	}
	s.record(ctx, "job", what, from, err)
	if err != nil {
		return bridge.Job{}, err
	}
	s.log.Info("retry job created", "job_id", j.ID, "target", p.Filter.Target, "matched", p.Matched, "remote", from)
	s.wakeJobs()
	return j, nil
}

func targetText(t string) string {
	if t == "" {
		return ""
	}
	return " of " + t
}

// Job returns one job with its progress (bridge.ErrNotFound when none).
func (s *Service) Job(ctx context.Context, id string) (*bridge.Job, error) {
	return s.console.GetJob(ctx, id)
}

// Jobs returns the newest jobs.
func (s *Service) Jobs(ctx context.Context, limit int) ([]bridge.Job, error) {
	return s.console.ListJobs(ctx, limit)
}

// RunJobs carries out recorded jobs until ctx ends: the unfinished ones at
// start (a job interrupted by a restart continues after its cursor), then
// each new one as it is created. Run it in the process that sends.
func (s *Service) RunJobs(ctx context.Context) {
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-retry.C:
		}
		jobs, err := s.console.UnfinishedJobs(ctx)
		if err != nil {
			s.log.Error("read unfinished jobs; trying again in 5s", "err", err)
			retry.Reset(5 * time.Second)
			continue
		}
		for _, j := range jobs {
			if ctx.Err() != nil {
				return
			}
			if err := s.runJob(ctx, j); err != nil {
				s.log.Error("job interrupted; it continues later", "job_id", j.ID, "err", err)
				retry.Reset(5 * time.Second)
				break
			}
		}
	}
}

// runJob works through j from its cursor. It returns an error (the job left
// running, to continue later) only when its progress cannot be saved or
// the store cannot be read; a delivery that fails counts as failed.
func (s *Service) runJob(ctx context.Context, j bridge.Job) error {
	if j.Skipped == nil {
		j.Skipped = map[string]int{}
	}
	save := func() error {
		j.UpdatedAt = s.now().UTC()
		return s.console.SaveJob(context.WithoutCancel(ctx), j)
	}
	if j.State == bridge.JobQueued {
		j.State = bridge.JobRunning
		if err := save(); err != nil {
			return err
		}
		s.log.Info("retry job started", "job_id", j.ID)
	} else {
		s.log.Info("retry job continues", "job_id", j.ID, "after", j.Cursor, "processed", j.Processed())
	}
	var stopped error
	err := s.eachDead(ctx, j.Filter, j.Cursor, func(d *bridge.Delivery, next string) (bool, error) {
		if err := ctx.Err(); err != nil {
			stopped = err
			return false, nil
		}
		queued, reason, err := s.jobStep(ctx, &j, d)
		if err != nil {
			return false, err
		}
		switch {
		case queued:
			j.Done++
		case reason != "":
			j.Skipped[reason]++
		default:
			j.Failed++
		}
		j.Cursor = d.ID
		// Progress is saved after every delivery queued again: a crash
		// between the two costs at most that one delivery, counted as
		// skipped (newer_exists) when the job continues — never a second send.
		if queued || j.Processed()%50 == 0 {
			return true, save()
		}
		return true, nil
	})
	if err == nil && stopped == nil {
		j.State, j.FinishedAt = bridge.JobDone, s.now().UTC()
		s.log.Info("retry job done", "job_id", j.ID, "retried", j.Done, "skipped", j.Skipped, "failed", j.Failed)
	}
	if serr := save(); serr != nil && err == nil {
		err = serr
	}
	if err == nil {
		err = stopped
	}
	return err
}

// jobStep retries one delivery for job j: queued, or the reason it was left
// out, or neither (it failed; j.Error says why). err stops the job.
func (s *Service) jobStep(ctx context.Context, j *bridge.Job, d *bridge.Delivery) (queued bool, reason string, err error) {
	if d.CreatedAt.After(j.CreatedAt) {
		return false, bridge.SkipCreatedAfter, nil
	}
	reason, err = s.classify(ctx, d, j.IncludeUnknown, nil)
	if err != nil || reason != "" {
		return false, reason, err
	}
	nd, err := s.store.RetryDelivery(ctx, d.ID, s.now())
	switch {
	case err == nil:
		s.log.Info("delivery retry queued", "delivery_id", nd.ID, "retry_of", d.ID, "order_id", d.OrderID, "target", d.Target, "job_id", j.ID)
		return true, "", nil
	case errors.Is(err, bridge.ErrConflict):
		return false, bridge.SkipNewerExists, nil
	case errors.Is(err, bridge.ErrNotFound):
		return false, bridge.SkipNotDead, nil
	case errors.Is(err, bridge.ErrClosed):
		return false, "", err
	}
	j.Error = fmt.Sprintf("delivery %s: %s", d.ID, UserMessage(err))
	s.log.Error("retry job: delivery not retried", "job_id", j.ID, "delivery_id", d.ID, "err", err)
	return false, "", nil
}
