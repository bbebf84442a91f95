package outbound

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/orders"
	"github.com/statusbridge/statusbridge/placeholder"
	"github.com/statusbridge/statusbridge/ticket"
)

// SenderKey is the key of a target's sender of one kind in the senders map
// of NewWorker: the target's name for status deliveries, target/kind for the
// others ("digishare/ticket", "expertsender/order", "order_system/fetch").
func SenderKey(target string, kind bridge.DeliveryKind) string {
	if kind == "" || kind == bridge.KindStatus {
		return target
	}
	return target + "/" + string(kind)
}

// Plan says which deliveries an intake causes under cfg: a ticket when
// targets.digishare is present, an ExpertSender order upsert when
// targets.expertsender.orders is, the order fetch always; each recorded as
// skipped (with why) when its target cannot send.
func Plan(cfg *config.Config) bridge.IntakePlan {
	var p bridge.IntakePlan
	t := cfg.Targets
	if ds := t.Digishare; ds != nil {
		p.Ticket.On = true
		if !ds.Enabled() {
			p.Ticket.Skip = "targets.digishare has no token or client credentials (or no base_url)"
		}
	}
	if es := t.ExpertSender; es != nil && es.Orders != nil {
		p.Upsert.On = true
		if !es.OrdersEnabled() {
			p.Upsert.Skip = "targets.expertsender has no api_key or base_url"
		}
	}
	p.Fetch.On = true
	switch os := t.OrderSystem; {
	case os == nil:
		p.Fetch.Skip = "targets.order_system is not configured: an order given by its orderId alone cannot be fetched"
	case !os.Enabled():
		p.Fetch.Skip = "targets.order_system has no base_url: an order given by its orderId alone cannot be fetched"
	}
	return p
}

// ResultAlreadyCreated is the result of a ticket delivery for an order whose
// ticket exists: nothing is sent.
const ResultAlreadyCreated = bridge.ResultAlreadyCreated

// TicketSender creates an order's Digishare ticket (target digishare, kind
// ticket): the invoice is downloaded and uploaded unless its media id is
// recorded already (recorded the moment the upload returns), then the
// ticket is posted; the ticket's id and number are recorded with the order
// in the transaction that records the delivery done. Its request cannot be
// repeated safely once sent: an unknown outcome ends the delivery dead for
// a person to check, unless targets.digishare.resend_unknown.
type TicketSender struct {
	api    *DigishareAPI
	cfg    config.Digishare
	region string
}

// NewTicketSender builds the ticket sender; phoneRegion is
// targets.order_system.phone_region.
func NewTicketSender(cfg config.Digishare, phoneRegion string, conns int) *TicketSender {
	return &TicketSender{api: NewDigishareAPI(cfg, phoneRegion, conns), cfg: cfg, region: phoneRegion}
}

// The upload may be repeated: the claim is made durable right before the
// ticket request.
func (t *TicketSender) claimsLate() {}

// OutcomeUnknownWhenCut: a ticket cut off after it was sent may exist.
func (t *TicketSender) OutcomeUnknownWhenCut() bool { return !t.cfg.ResendUnknown }

// sent reports whether err says the ticket request went out without an
// answer saying what it did.
func (t *TicketSender) sent(err error) bool {
	var ue *UnknownOutcomeError
	return errors.As(err, &ue)
}

// unknownReason tells a person what to check.
func (t *TicketSender) unknownReason(m *Message) string {
	ext := "ORDER-" + m.Delivery.OrderID
	if m.Order != nil {
		look, _ := ticket.Values(m.Order, t.region)
		if out, err := placeholder.Order.Render(t.cfg.Ticket.ExternalID, look, nil); err == nil && strings.TrimSpace(out) != "" {
			ext = out
		}
	}
	return fmt.Sprintf("outcome unknown: look for a ticket with external_id %s in Digishare, then retry or leave it", ext)
}

// Send uploads the invoice (unless recorded) and creates the ticket. An
// order whose ticket is recorded sends nothing (result already_created).
func (t *TicketSender) Send(ctx context.Context, m *Message) (Response, error) {
	if m.Order == nil || m.OrderIntake == nil {
		return Response{}, permanent("ticket not sent: the order's intake is missing")
	}
	if tk := m.OrderIntake.Ticket; tk != nil {
		return Response{Result: ResultAlreadyCreated}, nil
	}
	media, note := m.OrderIntake.MediaID, ""
	if media == "" {
		inv, resp, err := t.api.PrepareInvoice(ctx, m.Order)
		if err != nil {
			return resp, err
		}
		media, note = inv.MediaID, inv.Note
		if media != "" && m.RecordMedia != nil {
			if err := m.RecordMedia(ctx, media); err != nil {
				return resp, &Error{Msg: "invoice uploaded (media id " + media + ") but not recorded: " + err.Error()}
			}
		}
	}
	if m.Sending != nil {
		if err := m.Sending(ctx); err != nil {
			return Response{}, err
		}
	}
	ref, resp, err := t.api.SendTicket(ctx, m.Order, media)
	if err != nil {
		return resp, err
	}
	resp.Result = ref.Describe(InvoiceOutcome{MediaID: media, Note: note})
	resp.Done = &bridge.Outcome{Ticket: &bridge.Ticket{ID: ref.ID, Number: ref.Number, ExternalID: ref.ExternalID,
		MediaID: media, MediaNote: note, Omitted: ref.Omitted}}
	return resp, nil
}

// FetchSender reads an order given by its orderId alone from the order
// system (target order_system, kind fetch) and, in the transaction that
// records the fetch done, takes the document in as an intake (source
// fetch): compared with the order's latest intake like any other.
type FetchSender struct {
	f    *OrderFetcher
	plan bridge.IntakePlan
	now  func() time.Time
}

// NewFetchSender builds the fetch sender; plan is what the fetched intake
// causes.
func NewFetchSender(cfg config.OrderSystem, plan bridge.IntakePlan, conns int) *FetchSender {
	return &FetchSender{f: NewOrderFetcher(cfg, conns), plan: plan, now: time.Now}
}

// The fetch needs only the delivery's order id.
func (f *FetchSender) eventless() {}

// Send gets the order. See OrderFetcher.Fetch for the errors.
func (f *FetchSender) Send(ctx context.Context, m *Message) (Response, error) {
	o, resp, err := f.f.Fetch(ctx, m.Delivery.OrderID)
	if err != nil {
		return resp, err
	}
	resp.Done = &bridge.Outcome{Plan: f.plan, Fetched: &bridge.IncomingOrder{OrderID: o.ID, Key: o.Key, Raw: o.Raw,
		Source: bridge.SourceFetch, ReceivedAt: f.now()}}
	return resp, nil
}

// UpsertSender registers an order with ExpertSender (target expertsender,
// kind order), with the newest status decided for ExpertSender for the
// order (done, pending or dead), else orders.status: an update of the order
// never resets paid to placed.
type UpsertSender struct{ es *ExpertSenderOrders }

// NewUpsertSender builds the upsert sender (see NewExpertSenderOrders).
func NewUpsertSender(cfg config.ExpertSender, loc *time.Location, phoneRegion string, conns int) *UpsertSender {
	return &UpsertSender{es: NewExpertSenderOrders(cfg, loc, phoneRegion, conns)}
}

// Send posts the order.
func (u *UpsertSender) Send(ctx context.Context, m *Message) (Response, error) {
	if m.Order == nil {
		return Response{}, permanent("ExpertSender order not sent: the order's intake is missing")
	}
	return u.es.Upsert(ctx, m.Order, m.ExpertSenderStatus)
}

// maskedContact returns the order's phone and email masked for logs.
func maskedContact(o *orders.Order) (phone, email string) {
	if o == nil {
		return "", ""
	}
	p, ok := o.Text("shippingAddress.contactPhone")
	if !ok {
		p, _ = o.Text("billingAddress.contactPhone")
	}
	if p != "" {
		phone = orders.MaskPhone(p)
	}
	return phone, orders.MaskEmail(o.Email())
}
