package outbound

import (
	"context"
	"strings"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/orders"
)

// Message is what a sender needs: the delivery and the ticket of the event
// that caused it (decoded from the stored payload) or, for an order or
// ticket delivery, the order of its intake.
type Message struct {
	Delivery   *bridge.Delivery
	Event      *digishare.Update
	StatusName string
	ChangedAt  string // the Digishare timestamp as received

	// Order is the order an order or ticket delivery sends: its intake's
	// (a ticket: the order's latest intake's), decoded.
	Order *orders.Order
	// OrderIntake is the order's intake record as it was read for this
	// attempt (its ticket, its recorded media id).
	OrderIntake *bridge.OrderIntake
	// ExpertSenderStatus is the newest status decided for ExpertSender for
	// the order ("" when none was).
	ExpertSenderStatus string
	// RecordMedia records the order's uploaded invoice at once (set by the
	// worker for ticket deliveries).
	RecordMedia func(ctx context.Context, mediaID string) error
	// Sending, set by the worker for a sender that claims late (see
	// lateClaimer), commits the delivery's durable claim: called right
	// before the request that must not be repeated goes out. An error means
	// nothing was sent.
	Sending func(ctx context.Context) error
}

// Lookup returns a placeholder's value (see package placeholder).
func (m *Message) Lookup(name string) (string, bool) {
	d, ev := m.Delivery, m.Event
	switch name {
	case "order_id":
		return d.OrderID, d.OrderID != ""
	case "status":
		return d.Status, d.Status != ""
	case "status_id":
		return d.StatusID, d.StatusID != ""
	case "status_name":
		return m.StatusName, m.StatusName != ""
	case "changed_at":
		return m.ChangedAt, m.ChangedAt != ""
	}
	if ev == nil {
		return "", false
	}
	switch name {
	case "ticket_id":
		return ev.TicketID, ev.TicketID != ""
	case "ticket_number":
		return ev.Ticket.TicketNumber, ev.Ticket.TicketNumber != ""
	}
	if k, ok := strings.CutPrefix(name, "third."); ok {
		v, ok := ev.Ticket.Third[k]
		return v, ok && v != ""
	}
	if k, ok := strings.CutPrefix(name, "campaign_data."); ok {
		return ev.Ticket.CampaignString(k)
	}
	return "", false
}

// third returns a field of information.third ("" when absent).
func (m *Message) third(key string) string {
	if m.Event == nil {
		return ""
	}
	return m.Event.Ticket.Third[key]
}
