package bridge

import (
	"time"
)

// Order intake: the store's order system hands statusbridge a new order
// (POST {intake.path}, POST /admin/intake, orders push|import). Each intake
// is stored with its raw body; the order-side record (OrderIntake) keeps
// which intake is the order's latest content, its ticket and the deliveries
// that stand for it. Three kinds of delivery come from intakes besides the
// status deliveries of events: the order fetch (target order_system, for a
// body that gave only the orderId), the Digishare ticket with its invoice
// upload (target digishare) and the ExpertSender order upsert (target
// expertsender, in the same lane as the order's status PUTs).

// DeliveryKind says what a delivery does. The values are stored and shown:
// rename nothing.
type DeliveryKind string

// Delivery kinds. A delivery stored before kinds existed has none: it is a
// status delivery (Delivery.KindOrStatus).
const (
	KindStatus DeliveryKind = "status" // a status change of an event, to one target
	KindOrder  DeliveryKind = "order"  // the order registered with (upserted into) ExpertSender
	KindTicket DeliveryKind = "ticket" // the invoice upload and the Digishare ticket
	KindFetch  DeliveryKind = "fetch"  // the order read from the order system (an orderId-only intake)
)

// DeliveryKinds lists every kind, for validating filters.
var DeliveryKinds = []DeliveryKind{KindStatus, KindOrder, KindTicket, KindFetch}

// Target names of intake deliveries (status targets are named by mapping).
const (
	TargetDigishare    = "digishare"
	TargetExpertSender = "expertsender"
	TargetOrderSystem  = "order_system"
)

// ResultOutcomeUnknown is the Result of a dead ticket delivery whose request
// may have created the ticket (a timeout or a 5xx after it was sent, or in
// flight when the process stopped): bulk retries leave it out unless asked.
const ResultOutcomeUnknown = "outcome_unknown"

// ResultAlreadyCreated is the result of a ticket step for an order whose
// ticket exists: nothing is sent.
const ResultAlreadyCreated = "already_created"

// IntakeState says what an intake was.
type IntakeState string

// Intake states.
const (
	IntakeNew     IntakeState = "new"     // the order's first content
	IntakeUpdated IntakeState = "updated" // different content than the order's latest intake
	IntakeFetch   IntakeState = "fetch"   // an orderId alone: the order is fetched
)

// IntakeSource says where an intake came from.
type IntakeSource string

// Intake sources.
const (
	SourceHTTP  IntakeSource = "http"  // POST {intake.path}
	SourceAdmin IntakeSource = "admin" // POST /admin/intake (orders push, orders import)
	SourceFetch IntakeSource = "fetch" // the document a fetch delivery read
)

// Intake is one stored order intake (its raw body is stored with it). A
// duplicate is not stored: it answers the intake it repeats.
type Intake struct {
	ID         string       `json:"id"`
	OrderID    string       `json:"order_id"`
	ReceivedAt time.Time    `json:"received_at"`
	State      IntakeState  `json:"state"`
	IDOnly     bool         `json:"id_only,omitempty"`
	Source     IntakeSource `json:"source"`
	// Key is the SHA-256 of the body's canonical JSON (orders.Order.Key);
	// none for an orderId-only body.
	Key []byte `json:"key,omitempty"`
	// DeliveryIDs are the deliveries this intake caused.
	DeliveryIDs []string `json:"delivery_ids,omitempty"`
	// FetchedBy, on an intake of Source fetch, is the fetch delivery that read it.
	FetchedBy string `json:"fetched_by,omitempty"`
	// ShortID, set by listings (never stored): see EventSummary.ShortID.
	ShortID string `json:"short_id,omitempty"`
}

// Ticket is the Digishare ticket created for an order.
type Ticket struct {
	ID         string `json:"id,omitempty"`     // Digishare's ticket id
	Number     string `json:"number,omitempty"` // ticket_number
	ExternalID string `json:"external_id,omitempty"`
	MediaID    string `json:"media_id,omitempty"` // the invoice document, "" for none
	// MediaNote says why the ticket has no invoice.
	MediaNote  string    `json:"media_note,omitempty"`
	Omitted    []string  `json:"omitted,omitempty"` // fields left out for want of a value
	DeliveryID string    `json:"delivery_id"`       // the ticket delivery that created it
	CreatedAt  time.Time `json:"created_at"`
}

// OrderIntake is an order's intake record: its latest content, its intakes,
// its ticket and the deliveries that stand for it.
type OrderIntake struct {
	OrderID string `json:"order_id"`
	// LatestIntakeID is the order's latest intake with content (not an
	// orderId alone) and Key its content key: a new intake with the same key
	// is a duplicate.
	LatestIntakeID string `json:"latest_intake_id,omitempty"`
	Key            []byte `json:"key,omitempty"`
	// LastIntakeID is the order's newest intake of any state (what the
	// orders listing sorts by); IntakeIDs all of them, oldest first.
	LastIntakeID string   `json:"last_intake_id"`
	IntakeIDs    []string `json:"intake_ids"`
	// Ticket is set once the ticket is created: no second ticket is made.
	Ticket *Ticket `json:"ticket,omitempty"`
	// MediaID is the uploaded invoice, recorded the moment the upload
	// returns so a retry of the ticket step never uploads again.
	MediaID string `json:"media_id,omitempty"`
	// TicketDeliveryID and UpsertDeliveryID are the order's newest ticket
	// and ExpertSender order deliveries ("" for none).
	TicketDeliveryID string `json:"ticket_delivery_id,omitempty"`
	UpsertDeliveryID string `json:"upsert_delivery_id,omitempty"`
}

// Step is one delivery an intake may cause.
type Step struct {
	// On: the step is configured (targets.digishare present;
	// targets.expertsender.orders present; the fetch always is).
	On bool `json:"on"`
	// Skip, when set, says why the target cannot send: the delivery is
	// recorded as skipped, visibly, instead of being sent.
	Skip string `json:"skip,omitempty"`
}

// IntakePlan says which deliveries an intake causes, from the config.
type IntakePlan struct {
	Ticket Step `json:"ticket"` // target digishare
	Upsert Step `json:"upsert"` // target expertsender, kind order
	Fetch  Step `json:"fetch"`  // target order_system
}

// Targets lists the targets of the plan's steps that are on (the fetch's
// only when it can send: its target is not configured otherwise).
func (p IntakePlan) Targets() []string {
	var out []string
	if p.Ticket.On {
		out = append(out, TargetDigishare)
	}
	if p.Upsert.On {
		out = append(out, TargetExpertSender)
	}
	if p.Fetch.On && p.Fetch.Skip == "" {
		out = append(out, TargetOrderSystem)
	}
	return out
}

// IncomingOrder is an order intake to store.
type IncomingOrder struct {
	OrderID string
	IDOnly  bool     // the body held only orderId: fetch the order
	Key     [32]byte // the content key (orders.Order.Key)
	Raw     []byte   // the body, stored byte for byte
	Source  IntakeSource
	// FetchedBy is the fetch delivery that read the document (Source fetch).
	FetchedBy  string
	ReceivedAt time.Time
}

// IntakeResult says what an intake stored.
type IntakeResult struct {
	OrderID  string `json:"order_id"`
	IntakeID string `json:"intake_id"`
	// Duplicate: the order's latest intake has the same content; IntakeID
	// is that intake and nothing new was stored.
	Duplicate bool        `json:"duplicate"`
	State     IntakeState `json:"state"`
	// Deliveries are the deliveries this intake created.
	Deliveries []Delivery `json:"-"`
}

// IntakeFilter selects intakes for a listing, newest first. Zero fields
// match everything.
type IntakeFilter struct {
	OrderID string
	Since   time.Time // received at or after
	Until   time.Time // received before
	// Latest keeps only each order's newest intake (OrderIntake.LastIntakeID):
	// one row per order, the orders listing.
	Latest bool
	Limit  int    // default 50, at most 1000
	Cursor string // continue after this intake id
}

// KindOrStatus is the delivery's kind, KindStatus for one stored without.
func (d *Delivery) KindOrStatus() DeliveryKind {
	if d.Kind == "" {
		return KindStatus
	}
	return d.Kind
}

// UnknownOutcome reports whether d is a dead delivery whose outcome is
// unknown (a ticket that may exist): bulk retries leave it out unless asked.
func (d *Delivery) UnknownOutcome() bool {
	return d.State == Dead && d.Result == ResultOutcomeUnknown
}
