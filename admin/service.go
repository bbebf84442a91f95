// Package admin is the admin service: the one place that lists, shows,
// retries and replays stored events and deliveries, runs bulk jobs, previews
// mapping changes and records what operators did. The admin JSON API and the
// browser console are two faces of it. It talks to the store only through
// Store, so it works the same on every store backend.
package admin

import (
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

// Store is what the service needs of a store backend (*bolt.DB has it).
type Store interface {
	ListEvents(f bridge.EventFilter) ([]bridge.Event, string, error)
	EventSummaries(f bridge.EventFilter, inFlight func(string) bool) ([]bridge.EventSummary, string, error)
	Detail(id string, inFlight func(string) bool) (*bridge.EventDetail, error)
	ListDeliveries(f bridge.DeliveryFilter) ([]bridge.Delivery, string, error)
	GetDelivery(id string) (*bridge.Delivery, error)
	RetryDelivery(id string, now time.Time) (*bridge.Delivery, error)
	Replay(sel bridge.ReplaySelector, dec bridge.Decider, opt bridge.ReplayOptions, now time.Time) (bridge.ReplaySummary, error)
	OrderState(orderID string) (bridge.OrderState, error)
	Counters(now time.Time) (bridge.Counters, error)
	CreateJob(j bridge.Job) (bridge.Job, error)
	SaveJob(j bridge.Job) error
	GetJob(id string) (*bridge.Job, error)
	ListJobs(limit int) ([]bridge.Job, error)
	UnfinishedJobs() ([]bridge.Job, error)
	RecordAction(a bridge.Action) error
	Actions(limit int) ([]bridge.Action, error)
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
	Mapping Mapping
	// InFlight reports whether a delivery is being sent right now (nil: the
	// process sends nothing).
	InFlight func(id string) bool
	// Health reports each target's circuit breaker (nil: unknown).
	Health func() map[string]bridge.TargetHealth
	Now    func() time.Time
	Log    *slog.Logger
}

// Service is the admin service.
type Service struct {
	store    Store
	maps     Mapping
	inFlight func(string) bool
	health   func() map[string]bridge.TargetHealth
	now      func() time.Time
	log      *slog.Logger
	wake     chan struct{} // a job was created
}

// New builds the service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.InFlight == nil {
		o.InFlight = func(string) bool { return false }
	}
	return &Service{store: o.Store, maps: o.Mapping, inFlight: o.InFlight, health: o.Health, now: o.Now, log: o.Log,
		wake: make(chan struct{}, 1)}
}

// InputError is a request refused as it was asked (HTTP 400); its message
// is written for the person who asked.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func invalid(format string, args ...any) error { return &InputError{Msg: fmt.Sprintf(format, args...)} }

// ConflictError is an action that does not fit the record's state now (HTTP
// 409). errors.Is(err, bridge.ErrConflict) holds for it.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string        { return e.Msg }
func (e *ConflictError) Is(target error) bool { return target == bridge.ErrConflict }

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

// CheckEventState refuses a state that is not an event state ("" passes).
func CheckEventState(s string) error {
	if s == "" || slices.Contains(bridge.EventStates, bridge.EventState(s)) {
		return nil
	}
	names := make([]string, len(bridge.EventStates))
	for i, st := range bridge.EventStates {
		names[i] = string(st)
	}
	return invalid("state: unknown event state %q (one of %s)", s, strings.Join(names, ", "))
}

// CheckDeliveryState refuses a state that is not a delivery state ("" passes).
func CheckDeliveryState(s string) error {
	if s == "" || slices.Contains(bridge.DeliveryStates, bridge.DeliveryState(s)) {
		return nil
	}
	return invalid("state: one of pending, in_flight, done, dead, skipped, superseded")
}

func cursorError(err error) error {
	if errors.Is(err, bridge.ErrNotFound) {
		return invalid("cursor: not a cursor from a previous page")
	}
	return err
}

// Events lists events newest first, a page at a time (see bridge.EventFilter).
func (s *Service) Events(f bridge.EventFilter) ([]bridge.EventSummary, string, error) {
	if err := CheckEventState(f.State); err != nil {
		return nil, "", err
	}
	var err error
	if f.Limit, err = checkLimit(f.Limit); err != nil {
		return nil, "", err
	}
	rows, next, err := s.store.EventSummaries(f, s.inFlight)
	return rows, next, cursorError(err)
}

// Event returns an event with its payload, decisions, deliveries and attempts
// (bridge.ErrNotFound when there is none).
func (s *Service) Event(id string) (*bridge.EventDetail, error) {
	return s.store.Detail(id, s.inFlight)
}

// Deliveries lists deliveries newest first. in_flight (never on disk) is
// pending being sent now.
func (s *Service) Deliveries(f bridge.DeliveryFilter) ([]bridge.Delivery, string, error) {
	if err := CheckDeliveryState(f.State); err != nil {
		return nil, "", err
	}
	var err error
	if f.Limit, err = checkLimit(f.Limit); err != nil {
		return nil, "", err
	}
	inFlightOnly := f.State == string(bridge.InFlight)
	if inFlightOnly {
		f.State = string(bridge.Pending)
	}
	ds, next, err := s.store.ListDeliveries(f)
	if err != nil {
		return nil, "", cursorError(err)
	}
	kept := ds[:0]
	for _, d := range ds {
		if d.State == bridge.Pending && s.inFlight(d.ID) {
			d.State = bridge.InFlight
		}
		if !inFlightOnly || d.State == bridge.InFlight {
			kept = append(kept, d)
		}
	}
	return kept, next, nil
}

// record notes a state-changing action; a failure to record is logged, not
// returned: the action itself happened.
func (s *Service) record(kind, what, from string, err error) {
	result := "ok"
	if err != nil {
		result = UserMessage(err)
	}
	a := bridge.Action{At: s.now().UTC(), Kind: kind, What: what, From: from, Result: result}
	if rerr := s.store.RecordAction(a); rerr != nil {
		s.log.Error("record operator action", "kind", kind, "err", rerr)
	}
}

// UserMessage is err as an operator should read it: the service's own
// errors as written, a missing record as "not found", anything else (a
// store or disk failure) without its internals.
func UserMessage(err error) string {
	var ie *InputError
	var ce *ConflictError
	var pe *config.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ie):
		return ie.Msg
	case errors.As(err, &ce):
		return ce.Msg
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
// *ConflictError, a delivery that is not dead or one a newer delivery for the
// same order and target replaced (retrying it would send an older status).
func (s *Service) Retry(from, id string) (*bridge.Delivery, error) {
	d, err := s.retry(id)
	what := "retry delivery " + id
	if d != nil {
		what = fmt.Sprintf("retry delivery %s (order %s, %s=%s)", id, d.OrderID, d.Target, d.Status)
	}
	if !errors.Is(err, bridge.ErrNotFound) {
		s.record("retry", what, from, err)
	}
	if err == nil {
		s.log.Info("delivery retry queued", "delivery_id", d.ID, "retry_of", id, "order_id", d.OrderID, "target", d.Target, "remote", from)
	}
	return d, err
}

func (s *Service) retry(id string) (*bridge.Delivery, error) {
	old, err := s.store.GetDelivery(id)
	if err != nil {
		return nil, err
	}
	st, err := s.store.OrderState(old.OrderID)
	if err != nil {
		return nil, err
	}
	if reason := retryable(old, st); reason != "" {
		return nil, &ConflictError{Msg: conflictText(old, st, reason)}
	}
	d, err := s.store.RetryDelivery(id, s.now())
	if errors.Is(err, bridge.ErrConflict) { // changed since the check above
		if old, gerr := s.store.GetDelivery(id); gerr == nil {
			if st, serr := s.store.OrderState(old.OrderID); serr == nil {
				return nil, &ConflictError{Msg: conflictText(old, st, retryable(old, st))}
			}
		}
	}
	return d, err
}

// retryable says why d cannot be retried under the order's state ("" when it can).
func retryable(d *bridge.Delivery, st bridge.OrderState) string {
	switch {
	case d.State != bridge.Dead:
		return bridge.SkipNotDead
	case st.Targets[d.Target].DeliveryID != d.ID:
		return bridge.SkipNewerExists
	}
	return ""
}

func conflictText(d *bridge.Delivery, st bridge.OrderState, reason string) string {
	switch reason {
	case bridge.SkipNotDead:
		return fmt.Sprintf("delivery %s is %s; only dead deliveries are retried", d.ID, d.State)
	case bridge.SkipNewerExists:
		return fmt.Sprintf("a newer delivery (%s) for order %s and target %s exists; retrying this one would send an older status",
			st.Targets[d.Target].DeliveryID, d.OrderID, d.Target)
	}
	return fmt.Sprintf("delivery %s changed while it was being retried; look again", d.ID)
}

// CheckReplay validates a replay as the admin API and the console ask it.
func (s *Service) CheckReplay(sel bridge.ReplaySelector, opt bridge.ReplayOptions) error {
	if err := CheckEventState(sel.State); err != nil {
		return err
	}
	if sel.Dead && (len(sel.EventIDs) > 0 || sel.OrderID != "" || !sel.Since.IsZero() || !sel.Until.IsZero() || sel.State != "") {
		return invalid("dead selects deliveries: use it alone (with targets)")
	}
	known := s.maps.Current().Targets()
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
func (s *Service) Replay(from string, sel bridge.ReplaySelector, opt bridge.ReplayOptions) (bridge.ReplaySummary, error) {
	if err := s.CheckReplay(sel, opt); err != nil {
		return bridge.ReplaySummary{}, err
	}
	sum, err := s.store.Replay(sel, s.maps.Current(), opt, s.now())
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
		s.record("replay", what, from, err)
	}
	if err == nil {
		s.log.Info("replay", "matched", sum.Matched, "dispatched", sum.Dispatched, "superseded", sum.Superseded,
			"unchanged", sum.Unchanged, "skipped", sum.Skipped, "failed", sum.Failed, "dry_run", sum.DryRun, "force", opt.Force, "remote", from)
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
func (s *Service) Reload(from string) (live.Result, error) {
	res, err := s.maps.Reload()
	what := "reload mapping"
	if err == nil {
		what = "reload mapping: version " + res.Version
	}
	s.record("reload", what, from, err)
	return res, err
}

// Actions returns the last recorded operator actions, newest first.
func (s *Service) Actions(limit int) ([]bridge.Action, error) { return s.store.Actions(limit) }

// wakeJobs tells the job runner a job is waiting (without blocking).
func (s *Service) wakeJobs() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
