// Package bridge holds statusbridge's domain, defined once: stored events
// and their decisions, deliveries and their attempts, order state, listing
// filters and replay requests; the Backend interface every store implements;
// and the rules written against it (decide and apply at ingest, replay, retry
// a dead delivery, what retention may delete). It imports no storage, HTTP
// or database library, so every package can use it.
package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/digishare"
)

// EventState is the state an event ends in. The values are shown to
// operators and stored: rename nothing.
type EventState string

// Event states, in the order the mapping tests them (invalid is set by the
// receiver for a body of the wrong shape).
const (
	EventInvalid        EventState = "invalid"
	EventNoStatusChange EventState = "no_status_change"
	EventIgnored        EventState = "ignored"
	EventUnmapped       EventState = "unmapped"
	EventNoOrderID      EventState = "no_order_id"
	EventNoAction       EventState = "no_action"
	EventSuperseded     EventState = "superseded"
	EventUnchanged      EventState = "unchanged"
	EventDispatched     EventState = "dispatched"
)

// EventStates lists every event state, for validating filters.
var EventStates = []EventState{EventDispatched, EventUnmapped, EventSuperseded, EventUnchanged,
	EventNoStatusChange, EventIgnored, EventNoOrderID, EventNoAction, EventInvalid}

// TargetState is what an order last had dispatched to one target.
type TargetState struct {
	Status     string `json:"status"`
	DeliveryID string `json:"delivery_id"`
	// Live is true while that delivery is pending, in flight or done; false
	// once it is dead, skipped or superseded (a fresh update then retries).
	Live bool `json:"-"`
}

// OrderState is an order's last applied state, as the store keeps it.
type OrderState struct {
	// Watermark is the newest Digishare timestamp of the order's updates that
	// ended dispatched or unchanged (zero when none had a timestamp).
	Watermark time.Time              `json:"watermark,omitzero"`
	Targets   map[string]TargetState `json:"targets,omitempty"`
}

// Planned is a delivery a decision asks for.
type Planned struct {
	Target string `json:"target"`
	Status string `json:"status"`
	// Skip, when set, says why the target cannot send (no credentials): the
	// delivery is recorded as skipped, visibly, instead of being sent.
	Skip string `json:"skip,omitempty"`
}

// Decision is the outcome of one update under one mapping version.
type Decision struct {
	Outcome        EventState `json:"outcome"`
	Reason         string     `json:"reason,omitempty"`
	OrderID        string     `json:"order_id,omitempty"`
	StatusID       string     `json:"status_id,omitempty"`
	StatusName     string     `json:"status_name,omitempty"`
	ChangedAt      time.Time  `json:"changed_at,omitzero"`
	ChangedAtText  string     `json:"changed_at_text,omitempty"` // as received
	Deliveries     []Planned  `json:"deliveries,omitempty"`
	MappingVersion string     `json:"mapping_version"`
}

// DecideOptions change how a decision treats the order's state.
type DecideOptions struct {
	// Force skips the superseded and unchanged rules (operator replays).
	Force bool
	// Targets, when set, restricts the deliveries to these targets.
	Targets []string
}

// Advance returns the order state after a decision: the watermark moves for
// dispatched and unchanged outcomes with a timestamp. Dispatched targets are
// recorded by the caller, which owns delivery ids.
func Advance(st OrderState, d Decision) OrderState {
	if (d.Outcome == EventDispatched || d.Outcome == EventUnchanged) && d.ChangedAt.After(st.Watermark) {
		st.Watermark = d.ChangedAt
	}
	return st
}

// Event is a stored webhook call.
type Event struct {
	ID         string     `json:"id"`
	ReceivedAt time.Time  `json:"received_at"`
	Name       string     `json:"event"`
	TicketID   string     `json:"ticket_id,omitempty"`
	OrderID    string     `json:"order_id,omitempty"`
	State      EventState `json:"state"`
	Error      string     `json:"error,omitempty"` // why the event is invalid
	// Decisions holds the original decision first, then one per replay.
	Decisions   []Decision `json:"decisions,omitempty"`
	DeliveryIDs []string   `json:"delivery_ids,omitempty"`
	// DedupKey is the event's key in the dedup index, deleted with it.
	DedupKey []byte `json:"dedup_key,omitempty"`
}

// DeliveryState is where a delivery is in its life.
type DeliveryState string

// Delivery states. in_flight is a claim: a backend reports a pending
// delivery as in_flight while a sender holds it.
const (
	Pending    DeliveryState = "pending"
	InFlight   DeliveryState = "in_flight"
	Done       DeliveryState = "done"
	Dead       DeliveryState = "dead"
	Skipped    DeliveryState = "skipped"
	Superseded DeliveryState = "superseded"
)

// DeliveryStates lists every delivery state, for validating filters.
var DeliveryStates = []DeliveryState{Pending, InFlight, Done, Dead, Skipped, Superseded}

// CheckEventState returns nil for "" (no filter) or a known event state, and
// otherwise an error, for the person who typed it, listing the valid ones.
// The admin API and the CLI's file fallback both validate with it.
func CheckEventState(s string) error {
	for _, st := range EventStates {
		if s == "" || s == string(st) {
			return nil
		}
	}
	hint := ""
	if CheckDeliveryState(s) == nil {
		hint = fmt.Sprintf(" (%s is a delivery state: list the events with such a delivery with --delivery-state %s, or delivery_state=%s in the admin API)", s, s, s)
	}
	return fmt.Errorf("%q is not an event state: use one of %s%s", s, join(EventStates), hint)
}

// CheckDeliveryState is CheckEventState for delivery states.
func CheckDeliveryState(s string) error {
	for _, st := range DeliveryStates {
		if s == "" || s == string(st) {
			return nil
		}
	}
	return fmt.Errorf("%q is not a delivery state: use one of %s", s, join(DeliveryStates))
}

func join[S ~string](states []S) string {
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Terminal reports whether the state is final.
func (s DeliveryState) Terminal() bool { return s != Pending && s != InFlight }

// Delivery is one status change to send to one target (an outbox entry).
type Delivery struct {
	ID      string `json:"id"`
	EventID string `json:"event_id,omitempty"`
	OrderID string `json:"order_id"`
	Target  string `json:"target"`
	// Kind says what the delivery does (status, order, ticket, fetch); a
	// delivery stored before kinds existed reads as status.
	Kind DeliveryKind `json:"kind"`
	// IntakeID is the order intake that caused an order, ticket or fetch
	// delivery (their EventID is empty).
	IntakeID  string        `json:"intake_id,omitempty"`
	Status    string        `json:"status"`
	StatusID  string        `json:"status_id,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	State     DeliveryState `json:"state"`
	// Reason says why a delivery is dead, skipped or superseded.
	Reason string `json:"reason,omitempty"`
	// Result names a success that sent nothing new (already_active, already_triggered).
	Result string `json:"result,omitempty"`
	// Force sends even what a no-repeat rule would hold back (operator replays).
	Force         bool      `json:"force,omitempty"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	UpdatedAt     time.Time `json:"updated_at"`
	Attempts      []Attempt `json:"attempts,omitempty"`
	// RetryOf is the dead delivery this one retries (an operator's retry, or
	// a replay of its event for the same target); "" for none.
	RetryOf string `json:"retry_of,omitempty"`
	// ResolvedBy, on a dead delivery, is the successor (see RetryOf) that was
	// done: nothing is left for a person to do about it.
	ResolvedBy string `json:"resolved_by,omitempty"`
	// ShortID, set by listings for people (never stored), is the shortest
	// end of the id that is unique in the store (see EventSummary.ShortID).
	ShortID string `json:"short_id,omitempty"`
	// Claimed, set by Outbox.PendingAfter (never stored), says a claim on
	// the delivery is left from a sender that is gone (a durable claim
	// committed before a crash, another replica's at takeover): its request
	// may have gone out.
	Claimed bool `json:"-"`
}

// Live reports whether a delivery still stands for its order's status: a
// pending, in-flight or done delivery does; a dead, skipped or superseded one
// does not (a fresh update with the same status sends again).
func (d *Delivery) Live() bool {
	return d.State == Pending || d.State == InFlight || d.State == Done
}

// Attempt is one try to send a delivery.
type Attempt struct {
	At         time.Time     `json:"at"`
	StatusCode int           `json:"status_code,omitempty"` // 0: no HTTP answer
	Duration   time.Duration `json:"duration_ns"`
	Error      string        `json:"error,omitempty"`   // what went wrong, if anything
	Excerpt    string        `json:"excerpt,omitempty"` // start of the response body
	// Request is the request this attempt sent (the last one, for a target
	// that sends two), secrets redacted; nil when nothing was sent.
	Request *SentRequest `json:"request,omitempty"`
}

// SentRequestBodyLimit bounds the body a SentRequest keeps.
const SentRequestBodyLimit = 4096

// SentRequest is a request as it went out, with every secret redacted (by
// header name and by value).
type SentRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the body sent, its first SentRequestBodyLimit bytes when
	// BodySize says it was longer.
	Body string `json:"body,omitempty"`
	// BodySize is the length of the whole body when Body was cut (0: Body is
	// all of it).
	BodySize int `json:"body_size,omitempty"`
}

// AttemptResult is the result of one delivery attempt, to record.
type AttemptResult struct {
	Attempt *Attempt // nil when no attempt was made (superseded while waiting)
	State   DeliveryState
	// NextAttemptAt is when a Pending delivery is due again.
	NextAttemptAt time.Time
	Reason        string
	Result        string // see Delivery.Result
	// OnceKey, on a Done result, is recorded in the same transaction so a
	// non-idempotent call is never repeated (see Triggered).
	OnceKey string
}

// EventFilter selects events for a listing. Zero fields match everything.
type EventFilter struct {
	State    string
	OrderID  string
	TicketID string
	StatusID string    // the status id of the event's last decision
	Since    time.Time // received at or after
	Until    time.Time // received before
	Limit    int       // at most this many (default 50, at most 1000)
	Cursor   string    // continue after this event id (from a previous page)
	// DeliveryState keeps events with at least one delivery in this state
	// (in_flight: pending on disk; dead: unresolved ones, unless
	// IncludeResolved).
	DeliveryState   string
	IncludeResolved bool
}

// DeliveryFilter selects deliveries for a listing.
type DeliveryFilter struct {
	State   string
	Target  string
	OrderID string
	// IncludeResolved lists dead deliveries that a done successor resolved
	// (ResolvedBy set) too; by default a dead listing shows only what still
	// needs a person.
	IncludeResolved bool
	Limit           int
	Cursor          string
}

// EventSummary is one row of an event listing.
type EventSummary struct {
	ID string `json:"id"`
	// ShortID is the shortest end of the id (at least 8 hex digits, dashes
	// left out) that no other event's id ends with when it is listed: what a
	// person types (UUIDv7s share their beginning within a minute or so).
	ShortID    string     `json:"short_id,omitempty"`
	ReceivedAt time.Time  `json:"received_at"`
	Event      string     `json:"event"`
	TicketID   string     `json:"ticket_id,omitempty"`
	OrderID    string     `json:"order_id,omitempty"`
	State      EventState `json:"state"`
	StatusID   string     `json:"status_id,omitempty"`
	StatusName string     `json:"status_name,omitempty"`
	Error      string     `json:"error,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	// Deliveries counts the event's deliveries by state.
	Deliveries map[string]int `json:"deliveries"`
}

// EventDetail is an event with its payload and every delivery and attempt.
type EventDetail struct {
	Event      Event           `json:"event"`
	Payload    json.RawMessage `json:"payload"` // the body as received (a JSON string when it was not JSON)
	Deliveries []Delivery      `json:"deliveries"`
}

// ReplaySelector picks the events to replay. EventIDs and Dead are used
// alone; OrderID, Since, Until and State combine (all must match).
type ReplaySelector struct {
	EventIDs []string  `json:"event_ids,omitempty"`
	OrderID  string    `json:"order_id,omitempty"`
	Since    time.Time `json:"since,omitzero"` // received at or after
	Until    time.Time `json:"until,omitzero"` // received before
	State    string    `json:"state,omitempty"`
	// Dead selects the events of dead deliveries (of Targets, when set).
	Dead bool `json:"dead,omitempty"`
}

// Empty reports whether the selector selects nothing.
func (s ReplaySelector) Empty() bool {
	return len(s.EventIDs) == 0 && s.OrderID == "" && s.Since.IsZero() && s.Until.IsZero() && s.State == "" && !s.Dead
}

// ReplayOptions change what a replay does.
type ReplayOptions struct {
	Targets []string // only these targets (default: all the mapping names)
	DryRun  bool     // decide and report, write nothing
	Force   bool     // ignore superseded/unchanged and no-repeat keys
	// IncludeUnknown: with a Dead selector, retry dead tickets whose outcome
	// is unknown too (they may exist in Digishare); by default they are left
	// out and counted (ReplaySummary.LeftOutUnknown).
	IncludeUnknown bool
	// Progress, when set, is called after each chunk of events.
	Progress func(done, total int)

	onlyUnmapped bool // re-decide only events still unmapped, not yet decided under this mapping
}

// ReplayedDelivery is a delivery a replay created (or, dry, would create).
type ReplayedDelivery struct {
	EventID string       `json:"event_id,omitempty"` // "" for an intake delivery a Dead replay retried
	Kind    DeliveryKind `json:"kind,omitempty"`
	OrderID string       `json:"order_id"`
	Target  string       `json:"target"`
	Status  string       `json:"status"`
	Skip    string       `json:"skip,omitempty"` // why it is recorded as skipped instead of sent
}

// ReplaySummary counts what a replay did.
type ReplaySummary struct {
	Matched    int `json:"matched"`
	Dispatched int `json:"dispatched"`
	Superseded int `json:"superseded"`
	Unchanged  int `json:"unchanged"`
	Skipped    int `json:"skipped"` // any other outcome, or not decidable (invalid)
	Failed     int `json:"failed"`  // missing events and store errors
	// Retried counts the dead intake deliveries (ticket, order, fetch: they
	// have no event to re-decide) a Dead replay queued again (or, dry,
	// would); LeftOutUnknown the dead tickets of unknown outcome it left out.
	Retried        int                `json:"retried"`
	LeftOutUnknown int                `json:"left_out_unknown"`
	DryRun         bool               `json:"dry_run"`
	Requests       []ReplayedDelivery `json:"requests"`
	Errors         []string           `json:"errors,omitempty"`
}

// PendingStat is one target's backlog.
type PendingStat struct {
	Pending int
	Oldest  time.Time
}

// Stats counts records, for tests and operators.
type Stats struct {
	Events, Deliveries, Pending, Orders int
	Intakes                             int
}

// Errors callers branch on.
var (
	// ErrOverloaded: the commit queue is full; retry later (HTTP 503).
	ErrOverloaded = errors.New("store: overloaded")
	// ErrClosed: the store is shutting down.
	ErrClosed = errors.New("store: closed")
	// ErrNotFound: no record with that id.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: an operation does not fit the record's state (retrying a
	// delivery that is not dead, or one a newer delivery replaced).
	ErrConflict = errors.New("store: conflict")
	// ErrNoSelector: nothing selects events to replay; replaying everything
	// must be asked for explicitly (e.g. with since).
	ErrNoSelector = errors.New("store: replay needs a selector")
	// ErrUnavailable: the store cannot be reached right now (a database
	// outage); retry later (HTTP 503).
	ErrUnavailable = errors.New("store: unavailable")
)

// ConflictError is an ErrConflict whose message is written for the people
// who asked (API and CLI users): receivers show Msg as it is, without any
// internal prefix. errors.Is(err, ErrConflict) holds for it.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// Is makes a *ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// MinShortID is the fewest hex digits an abbreviated id has.
const MinShortID = 8

// AmbiguousError: an abbreviated id matches several records.
type AmbiguousError struct {
	Ref        string
	Candidates []string // the full ids it matches (at most 10)
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%q matches more than one id (%s): type more of it", e.Ref, strings.Join(e.Candidates, ", "))
}

// Decider is what the rules need from a mapping: *mapping.Table implements it.
type Decider interface {
	Version() string
	OrderID(u *digishare.Update) (string, bool)
	Decide(u *digishare.Update, st OrderState, opt DecideOptions) Decision
}

// Incoming is a webhook call to store.
type Incoming struct {
	Raw        []byte            // the body, stored byte for byte
	Update     *digishare.Update // decoded (never nil; may be partial when Invalid is set)
	Invalid    string            // non-empty: JSON of the wrong shape, stored as invalid with this reason
	ReceivedAt time.Time
}

// IngestResult says what an ingest stored.
type IngestResult struct {
	EventID    string
	Duplicate  bool // a repeat: EventID is the first event's id; nothing new stored
	State      EventState
	Decision   *Decision  // nil for duplicates and invalid events
	Deliveries []Delivery // created by this event
}
