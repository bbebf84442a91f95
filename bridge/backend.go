package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/statusbridge/statusbridge/digishare"
)

// Backend is a store: the storage primitives the rules run on, inside the
// backend's own transactions, and the reads and outbox operations the rest
// of the service needs. Every call takes a context. bolt.DB (the embedded
// default) and postgres.DB implement it; backendtest is the conformance
// suite both pass.
type Backend interface {
	// Update runs fn in a read-write transaction and returns once it is
	// durably committed. fn may run more than once (a backend may retry a
	// transaction that lost a race): it must not keep state between runs.
	Update(ctx context.Context, opt UpdateOptions, fn func(tx Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(tx Tx) error) error
	// StoredPayload prepares a raw body for Tx.PutEvent, outside any
	// transaction (compression, for example).
	StoredPayload(raw []byte) []byte

	// GetEvent returns an event and its raw payload (ErrNotFound).
	GetEvent(ctx context.Context, id string) (*Event, []byte, error)
	// GetDelivery returns a delivery, in_flight while a sender claims it.
	GetDelivery(ctx context.Context, id string) (*Delivery, error)
	// ListEvents returns matching events newest first and the next cursor.
	ListEvents(ctx context.Context, f EventFilter) ([]Event, string, error)
	// ListDeliveries returns matching deliveries newest first and the next
	// cursor; a claimed pending delivery is listed (and filtered) in_flight.
	ListDeliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, string, error)
	// PendingByTarget counts unfinished deliveries per target (the outbox gauges).
	PendingByTarget(ctx context.Context) (map[string]PendingStat, error)
	// Stats counts records.
	Stats(ctx context.Context) (Stats, error)

	// ShortEventIDs returns, for each id, the shortest end of it (at least
	// MinShortID hex digits) that no other event's id ends with: what a
	// person is shown and types.
	ShortEventIDs(ctx context.Context, ids []string) (map[string]string, error)
	// ShortDeliveryIDs is ShortEventIDs for deliveries.
	ShortDeliveryIDs(ctx context.Context, ids []string) (map[string]string, error)
	// ResolveEventID returns the event id that ref (a whole id, or the end
	// of one) names: ErrNotFound when none does, *AmbiguousError when
	// several do.
	ResolveEventID(ctx context.Context, ref string) (string, error)
	// ResolveDeliveryID is ResolveEventID for deliveries.
	ResolveDeliveryID(ctx context.Context, ref string) (string, error)

	// GetIntake returns an order intake and its raw body (ErrNotFound).
	GetIntake(ctx context.Context, id string) (*Intake, []byte, error)
	// ListIntakes returns matching intakes newest first and the next cursor
	// (with Latest: each order's newest intake, one row per order).
	ListIntakes(ctx context.Context, f IntakeFilter) ([]Intake, string, error)

	Outbox

	// Busy reports whether an ingest now would be refused (ErrOverloaded).
	Busy() bool
	// Ping reports whether the store can take writes (/readyz).
	Ping(ctx context.Context) error
	Close() error
}

// Outbox is what the delivery worker needs from a backend.
type Outbox interface {
	// Wake is signalled after a commit that queued deliveries.
	Wake() <-chan struct{}
	// PendingAfter returns up to limit unfinished deliveries after the one
	// with id after ("" = from the start), in commit order within each
	// (order, target) lane. A backend may return a delivery again; the
	// worker skips those it holds. A delivery whose claim was left by a
	// sender that is gone (a durable claim from before a crash, another
	// sender's at takeover) is returned with Claimed set.
	PendingAfter(ctx context.Context, after string, limit int) ([]Delivery, error)
	// Claim marks a delivery as being sent by this process until the claim
	// is released by Record. It refuses (ErrClaimRefused) a delivery that is
	// no longer pending, claimed by another sender, or not the next of its
	// lane: the lane's oldest unfinished order delivery goes before its
	// status deliveries (one already claimed finishes first), and each kind
	// goes in commit order. A durable claim is committed before Claim
	// returns, so a crash leaves a record that the request may have gone out;
	// a durable claim of a delivery this process claims already makes that
	// claim durable.
	Claim(ctx context.Context, d *Delivery, durable bool) error
	// Release drops a claim without recording an attempt (shutdown).
	Release(ctx context.Context, id string) error
	// Record appends an attempt, moves the delivery to its new state and
	// releases its claim, returning once that is committed.
	Record(ctx context.Context, id string, r AttemptResult, now time.Time) error
	// RecordAsync is Record without waiting: done is called once the record
	// is committed or has failed; it must not block.
	RecordAsync(ctx context.Context, id string, r AttemptResult, now time.Time, done func(error)) error
	// Triggered reports whether a no-repeat key was recorded by a done delivery.
	Triggered(ctx context.Context, key string) (bool, error)
}

// UpdateOptions describe a write transaction.
type UpdateOptions struct {
	// Refusable: the write may be refused with ErrOverloaded under load
	// (ingests), rather than queued.
	Refusable bool
	// Wake: the write may queue deliveries; wake the delivery worker.
	Wake bool
}

// Tx is a transaction's storage primitives. Slices returned are the
// caller's.
type Tx interface {
	// ClaimDedup records key for eventID unless it is recorded already; it
	// returns the key as stored and, for a repeat, the first event's id.
	// It must be safe against concurrent claims of the same key (a unique
	// key, not a check-then-insert, where several processes write).
	ClaimDedup(key DedupKey, eventID string) (stored []byte, firstID string, err error)
	// Event reads an event (ErrNotFound).
	Event(id string) (*Event, error)
	// Payload reads an event's raw payload.
	Payload(id string) ([]byte, error)
	// PutEvent inserts or rewrites an event. stored (from
	// Backend.StoredPayload) is its payload on insert; nil keeps the
	// payload it has.
	PutEvent(ev *Event, stored []byte) error
	// EventsFrom returns up to limit events after id after ("" = the
	// oldest), oldest first.
	EventsFrom(after string, limit int) ([]Event, error)
	// DeleteEvent deletes an event with its payload, dedup key and deliveries.
	DeleteEvent(ev *Event) error
	// OrderState reads an order's state, each target's last delivery marked
	// live or not (a delivery deleted by retention counts as live).
	OrderState(orderID string) (OrderState, error)
	// LockOrder is OrderState, locking the order against concurrent
	// decisions until the transaction ends.
	LockOrder(orderID string) (OrderState, error)
	// PutOrder writes an order's state.
	PutOrder(orderID string, st OrderState) error
	// Delivery reads a delivery (ErrNotFound).
	Delivery(id string) (*Delivery, error)
	// PutDelivery inserts or rewrites a delivery; an unfinished one is in
	// the outbox, a finished one leaves it.
	PutDelivery(d *Delivery) error
	// RecordAttempt is Outbox.Record inside this transaction: it appends the
	// attempt, moves the delivery to its new state, records a done
	// delivery's no-repeat key and resolves what it retried, and releases
	// the delivery's claim (durable claims included) once the transaction
	// commits (ErrNotFound for no such delivery).
	RecordAttempt(id string, r AttemptResult, now time.Time) error

	// Intake reads an order intake (ErrNotFound).
	Intake(id string) (*Intake, error)
	// IntakeRaw reads an intake's raw body, byte for byte as received.
	IntakeRaw(id string) ([]byte, error)
	// PutIntake inserts or rewrites an intake. stored (from
	// Backend.StoredPayload) is its raw body on insert; nil keeps the body
	// it has.
	PutIntake(in *Intake, stored []byte) error
	// OrderIntake reads an order's intake record (ErrNotFound when the order
	// has had no intake). Read it under LockOrder to change it.
	OrderIntake(orderID string) (*OrderIntake, error)
	// PutOrderIntake writes an order's intake record.
	PutOrderIntake(rec *OrderIntake) error
}

// DedupKey identifies an update's repeats: Hash is digishare's dedup key
// (the sha256 of the event name, data.id and the canonical changes), At the
// update's own time (Update.UpdatedAt; zero without one). Repeats carry the
// same changes, so both are the same for every repeat. A backend may lead
// its index keys with At, so new keys append to the index instead of
// landing anywhere in it.
type DedupKey struct {
	Hash [32]byte
	At   time.Time
}

// DedupKeyOf returns u's dedup key.
func DedupKeyOf(u *digishare.Update) DedupKey {
	at, _ := u.UpdatedAt()
	return DedupKey{Hash: u.DedupKey, At: at}
}

// ErrClaimRefused: a delivery cannot be claimed now (see Outbox.Claim).
var ErrClaimRefused = errors.New("store: claim refused")

// NewID returns a new time-ordered id (UUIDv7).
func NewID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("store: new id: %w", err)
	}
	return id.String(), nil
}
