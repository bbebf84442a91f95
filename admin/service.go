// Package admin is the admin service: the one place that lists, shows,
// retries and replays stored events and deliveries, runs bulk jobs, previews
// mapping changes and records what operators did. The admin JSON API and the
// browser console are two faces of it. It talks to the store only through
// Store, so it works the same on every store backend.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/live"
	"github.com/statusbridge/statusbridge/mapping"
)

// Store is what the service needs of the store: the rules and reads every
// backend has (bridge.Store over a bridge.Backend has them).
type Store interface {
	EventSummaries(ctx context.Context, f bridge.EventFilter) ([]bridge.EventSummary, string, error)
	Detail(ctx context.Context, id string) (*bridge.EventDetail, error)
	RetryDelivery(ctx context.Context, id string, now time.Time) (*bridge.Delivery, error)
	Replay(ctx context.Context, sel bridge.ReplaySelector, dec bridge.Decider, opt bridge.ReplayOptions, now time.Time) (bridge.ReplaySummary, error)
	FillShortDeliveryIDs(ctx context.Context, ds []bridge.Delivery) error
	ListEvents(ctx context.Context, f bridge.EventFilter) ([]bridge.Event, string, error)
	ListDeliveries(ctx context.Context, f bridge.DeliveryFilter) ([]bridge.Delivery, string, error)
	GetDelivery(ctx context.Context, id string) (*bridge.Delivery, error)
	View(ctx context.Context, fn func(tx bridge.Tx) error) error
}

var _ Store = bridge.Store{}

// ConsoleStore is what a backend keeps for the console besides its records:
// counters changed in the transactions that change states, bulk jobs, and
// the last operator actions (*bolt.DB and *postgres.DB have it; a backend
// that lacks it cannot serve the console).
type ConsoleStore interface {
	// Counters reads the counters as of now, without a scan.
	Counters(ctx context.Context, now time.Time) (bridge.Counters, error)
	CreateJob(ctx context.Context, j bridge.Job) (bridge.Job, error)
	SaveJob(ctx context.Context, j bridge.Job) error
	GetJob(ctx context.Context, id string) (*bridge.Job, error)
	ListJobs(ctx context.Context, limit int) ([]bridge.Job, error)
	UnfinishedJobs(ctx context.Context) ([]bridge.Job, error)
	RecordAction(ctx context.Context, a bridge.Action) error
	Actions(ctx context.Context, limit int) ([]bridge.Action, error)
}

// Mapping is the mapping in force and its reload (*live.Mapping has it).
type Mapping interface {
	Current() *mapping.Table
	LoadedAt() time.Time
	Config() *config.Config
	Reload() (live.Result, error)
	LastReload() *live.Outcome
}

var _ Mapping = (*live.Mapping)(nil)

// Options are the service's dependencies.
type Options struct {
	Store   Store
	Console ConsoleStore
	Mapping Mapping
	// Health reports each target's circuit breaker (nil: unknown).
	Health func() map[string]bridge.TargetHealth
	// IntakeTargets are the targets of the order intake's steps
	// (bridge.IntakePlan.Targets: digishare, …), valid in replays and jobs
	// beside the mapping's.
	IntakeTargets []string
	Now           func() time.Time
	Log           *slog.Logger
}

// Service is the admin service.
type Service struct {
	store   Store
	console ConsoleStore
	maps    Mapping
	health  func() map[string]bridge.TargetHealth
	intake  []string // targets of the order intake's steps
	now     func() time.Time
	log     *slog.Logger
	wake    chan struct{} // a job was created
}

// New builds the service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: o.Store, console: o.Console, maps: o.Mapping, health: o.Health, intake: o.IntakeTargets, now: o.Now, log: o.Log,
		wake: make(chan struct{}, 1)}
}

// knownTargets are the mapping's targets and the order intake's.
func (s *Service) knownTargets() []string {
	known := s.maps.Current().Targets()
	for _, t := range s.intake {
		if !slices.Contains(known, t) {
			known = append(known, t)
		}
	}
	return known
}

// InputError is a request refused as it was asked (HTTP 400); its message
// is written for the person who asked.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func invalid(format string, args ...any) error { return &InputError{Msg: fmt.Sprintf(format, args...)} }

// MaxLimit is the largest page a listing returns.
const MaxLimit = 1000

func checkLimit(n int) (int, error) {
	switch {
	case n == 0:
		return 50, nil
	case n < 1 || n > MaxLimit:
		return 0, invalid("limit: a whole number from 1 to %d", MaxLimit)
	}
	return n, nil
}

// checkState wraps bridge's state checks as input errors.
func checkState(field string, check func(string) error, v string) error {
	if err := check(v); err != nil {
		return invalid("%s: %s", field, err)
	}
	return nil
}

func cursorError(err error) error {
	if errors.Is(err, bridge.ErrNotFound) {
		return invalid("cursor: not a cursor from a previous page")
	}
	return err
}

// Events lists events newest first, a page at a time (see bridge.EventFilter).
func (s *Service) Events(ctx context.Context, f bridge.EventFilter) ([]bridge.EventSummary, string, error) {
	if err := checkState("state", bridge.CheckEventState, f.State); err != nil {
		return nil, "", err
	}
	if err := checkState("delivery_state", bridge.CheckDeliveryState, f.DeliveryState); err != nil {
		return nil, "", err
	}
	var err error
	if f.Limit, err = checkLimit(f.Limit); err != nil {
		return nil, "", err
	}
	rows, next, err := s.store.EventSummaries(ctx, f)
	return rows, next, cursorError(err)
}

// Event returns an event with its payload, decisions, deliveries and attempts
// (bridge.ErrNotFound when there is none).
func (s *Service) Event(ctx context.Context, id string) (*bridge.EventDetail, error) {
	return s.store.Detail(ctx, id)
}

// Deliveries lists deliveries newest first, each with its short id; a
// delivery being sent is in_flight.
func (s *Service) Deliveries(ctx context.Context, f bridge.DeliveryFilter) ([]bridge.Delivery, string, error) {
	if err := checkState("state", bridge.CheckDeliveryState, f.State); err != nil {
		return nil, "", err
	}
	var err error
	if f.Limit, err = checkLimit(f.Limit); err != nil {
		return nil, "", err
	}
	ds, next, err := s.store.ListDeliveries(ctx, f)
	if err != nil {
		return nil, "", cursorError(err)
	}
	if err := s.store.FillShortDeliveryIDs(ctx, ds); err != nil {
		return nil, "", err
	}
	return ds, next, nil
}

// record notes a state-changing action; a failure to record is logged, not
// returned: the action itself happened.
func (s *Service) record(ctx context.Context, kind, what, from string, err error) {
	result := "ok"
	if err != nil {
		result = UserMessage(err)
	}
	a := bridge.Action{At: s.now().UTC(), Kind: kind, What: what, From: from, Result: result}
	if rerr := s.console.RecordAction(context.WithoutCancel(ctx), a); rerr != nil {
		s.log.Error("record operator action", "kind", kind, "err", rerr)
	}
}

// UserMessage is err as an operator should read it: the service's own
// errors as written, a missing record as "not found", anything else (a
// store or disk failure) without its internals.
func UserMessage(err error) string {
	var ie *InputError
	var ce *bridge.ConflictError
	var ae *bridge.AmbiguousError
	var pe *config.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ie):
		return ie.Msg
	case errors.As(err, &ce):
		return ce.Msg
	case errors.As(err, &ae):
		return ae.Error()
	case errors.As(err, &pe):
		return fmt.Sprintf("%d problem(s) in the mapping", len(pe.Problems))
	case errors.Is(err, live.ErrNoFile):
		return "there is no config file to reload (the service runs on built-in defaults)"
	case errors.Is(err, bridge.ErrNotFound):
		return "not found"
	case errors.Is(err, bridge.ErrConflict):
		return "it does not fit the record's state any more; reload the page"
	case errors.Is(err, bridge.ErrOverloaded), errors.Is(err, bridge.ErrUnavailable), errors.Is(err, bridge.ErrClosed):
		return "the store is busy or shutting down; try again"
	}
	return "internal error (see the server log)"
}

// Retry queues a dead delivery again as a new delivery. It refuses, with a
// *bridge.ConflictError, a delivery that is not dead or one a newer delivery
// for the same order and target replaced (retrying it would send an older
// status).
func (s *Service) Retry(ctx context.Context, from, id string) (*bridge.Delivery, error) {
	d, err := s.store.RetryDelivery(ctx, id, s.now())
	what := "retry delivery " + id
	if d != nil {
		what = fmt.Sprintf("retry delivery %s (order %s, %s=%s)", id, d.OrderID, d.Target, d.Status)
	}
	if !errors.Is(err, bridge.ErrNotFound) {
		s.record(ctx, "retry", what, from, err)
	}
	if err == nil {
		s.log.Info("delivery retry queued", "delivery_id", d.ID, "retry_of", id, "order_id", d.OrderID, "target", d.Target, "remote", from)
	}
	return d, err
}

// orderState reads an order's state through the store's View.
func (s *Service) orderState(ctx context.Context, orderID string) (bridge.OrderState, error) {
	var st bridge.OrderState
	err := s.store.View(ctx, func(tx bridge.Tx) error {
		var err error
		st, err = tx.OrderState(orderID)
		return err
	})
	return st, err
}

// retryable says why d cannot be retried under the order's state ("" when it
// can). Deliveries of order intakes (order, ticket, fetch) are compared with
// the order's intake record by RetryDelivery itself (a conflict there is
// counted newer_exists).
func retryable(d *bridge.Delivery, st bridge.OrderState) string {
	switch {
	case d.State != bridge.Dead:
		return bridge.SkipNotDead
	case d.KindOrStatus() != bridge.KindStatus:
		return ""
	case st.Targets[d.Target].DeliveryID != d.ID:
		return bridge.SkipNewerExists
	}
	return ""
}

// CheckReplay validates a replay as the admin API and the console ask it.
func (s *Service) CheckReplay(sel bridge.ReplaySelector, opt bridge.ReplayOptions) error {
	if err := checkState("state", bridge.CheckEventState, sel.State); err != nil {
		return err
	}
	if sel.Dead && (len(sel.EventIDs) > 0 || sel.OrderID != "" || !sel.Since.IsZero() || !sel.Until.IsZero() || sel.State != "") {
		return invalid("dead selects deliveries: use it alone (with targets)")
	}
	if opt.IncludeUnknown && !sel.Dead {
		return invalid("include_unknown goes with dead: it lets a dead replay retry tickets whose outcome is unknown")
	}
	known := s.knownTargets()
	for _, t := range opt.Targets {
		if !slices.Contains(known, t) {
			return invalid("targets: %q is not a configured target (%s)", t, strings.Join(known, ", "))
		}
	}
	if sel.Empty() {
		return invalid("select events with event_ids, order_id, since/until or state, or deliveries with dead")
	}
	return nil
}

// Replay re-decides the selected events under the mapping in force and,
// unless opt.DryRun, sends what that decides (see bolt.DB.Replay).
func (s *Service) Replay(ctx context.Context, from string, sel bridge.ReplaySelector, opt bridge.ReplayOptions) (bridge.ReplaySummary, error) {
	if err := s.CheckReplay(sel, opt); err != nil {
		return bridge.ReplaySummary{}, err
	}
	sum, err := s.store.Replay(ctx, sel, s.maps.Current(), opt, s.now())
	if errors.Is(err, bridge.ErrNoSelector) {
		return sum, invalid("select events with event_ids, order_id, since/until or state, or deliveries with dead")
	}
	if !opt.DryRun {
		what := "replay " + describeSelector(sel)
		if opt.Force {
			what += ", forced"
		}
		if len(opt.Targets) > 0 {
			what += ", targets " + strings.Join(opt.Targets, ",")
		}
		if err == nil {
			what += fmt.Sprintf(": %d matched, %d dispatched", sum.Matched, sum.Dispatched)
		}
		s.record(ctx, "replay", what, from, err)
	}
	if err == nil {
		s.log.Info("replay", "matched", sum.Matched, "dispatched", sum.Dispatched, "superseded", sum.Superseded,
			"unchanged", sum.Unchanged, "skipped", sum.Skipped, "failed", sum.Failed, "retried", sum.Retried,
			"left_out_unknown", sum.LeftOutUnknown, "dry_run", sum.DryRun, "force", opt.Force, "remote", from)
	}
	return sum, err
}

func describeSelector(sel bridge.ReplaySelector) string {
	var parts []string
	switch {
	case len(sel.EventIDs) == 1:
		parts = append(parts, "event "+sel.EventIDs[0])
	case len(sel.EventIDs) > 1:
		parts = append(parts, strconv.Itoa(len(sel.EventIDs))+" events")
	}
	if sel.OrderID != "" {
		parts = append(parts, "order "+sel.OrderID)
	}
	if !sel.Since.IsZero() {
		parts = append(parts, "since "+sel.Since.UTC().Format(time.RFC3339))
	}
	if !sel.Until.IsZero() {
		parts = append(parts, "until "+sel.Until.UTC().Format(time.RFC3339))
	}
	if sel.State != "" {
		parts = append(parts, "state "+sel.State)
	}
	if sel.Dead {
		parts = append(parts, "dead deliveries")
	}
	return strings.Join(parts, ", ")
}

// Reload applies the config file's mapping section (see live.Mapping.Reload).
func (s *Service) Reload(ctx context.Context, from string) (live.Result, error) {
	res, err := s.maps.Reload()
	what := "reload mapping"
	if err == nil {
		what = "reload mapping: version " + res.Version
	}
	s.record(ctx, "reload", what, from, err)
	return res, err
}

// Actions returns the last recorded operator actions, newest first.
func (s *Service) Actions(ctx context.Context, limit int) ([]bridge.Action, error) {
	return s.console.Actions(ctx, limit)
}

// wakeJobs tells the job runner a job is waiting (without blocking).
func (s *Service) wakeJobs() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
