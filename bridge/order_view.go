package bridge

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// OrderSummary is one row of the orders listing: an order, its newest
// intake, its ticket and the state of its intake deliveries.
type OrderSummary struct {
	OrderID string `json:"order_id"`
	// LastIntake is the order's newest intake.
	LastIntake Intake  `json:"last_intake"`
	Intakes    int     `json:"intakes"`
	Ticket     *Ticket `json:"ticket,omitempty"`
	MediaID    string  `json:"media_id,omitempty"`
	// TicketState and UpsertState are the states of the order's newest
	// ticket and ExpertSender order deliveries ("" for none).
	TicketState DeliveryState `json:"ticket_state,omitempty"`
	UpsertState DeliveryState `json:"upsert_state,omitempty"`
}

// TimelineEntry is one thing that happened to an order.
type TimelineEntry struct {
	At time.Time `json:"at"`
	// Type: intake (received), event (a Digishare webhook of the order),
	// delivery (queued), attempt (one try), finished (a delivery's end).
	Type       string       `json:"type"`
	ID         string       `json:"id"` // the intake, event or delivery
	Kind       DeliveryKind `json:"kind,omitempty"`
	Target     string       `json:"target,omitempty"`
	Status     string       `json:"status,omitempty"`
	State      string       `json:"state,omitempty"`
	StatusCode int          `json:"status_code,omitempty"`
	Text       string       `json:"text,omitempty"`
}

// OrderDetail is everything statusbridge knows of one order: its intakes,
// its ticket, the last status per target and, on one timeline, every
// intake, event, delivery and attempt across targets.
type OrderDetail struct {
	OrderID          string                 `json:"order_id"`
	Intakes          []Intake               `json:"intakes"`
	Ticket           *Ticket                `json:"ticket,omitempty"`
	MediaID          string                 `json:"media_id,omitempty"`
	TicketDeliveryID string                 `json:"ticket_delivery_id,omitempty"`
	UpsertDeliveryID string                 `json:"upsert_delivery_id,omitempty"`
	Statuses         map[string]TargetState `json:"statuses"` // last status decided per target
	Events           []EventSummary         `json:"events"`
	Deliveries       []Delivery             `json:"deliveries"`
	Timeline         []TimelineEntry        `json:"timeline"`
}

// Orders lists orders by their newest intake, newest first (f.Latest is
// implied).
func Orders(ctx context.Context, b Backend, f IntakeFilter) ([]OrderSummary, string, error) {
	f.Latest = true
	intakes, next, err := b.ListIntakes(ctx, f)
	if err != nil {
		return nil, "", err
	}
	rows := make([]OrderSummary, 0, len(intakes))
	err = b.View(ctx, func(tx Tx) error {
		rows = rows[:0]
		for _, it := range intakes {
			row := OrderSummary{OrderID: it.OrderID, LastIntake: it}
			rec, err := tx.OrderIntake(it.OrderID)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if rec != nil {
				row.Intakes, row.Ticket, row.MediaID = len(rec.IntakeIDs), rec.Ticket, rec.MediaID
				if row.TicketState, err = deliveryState(tx, rec.TicketDeliveryID); err != nil {
					return err
				}
				if row.UpsertState, err = deliveryState(tx, rec.UpsertDeliveryID); err != nil {
					return err
				}
			}
			rows = append(rows, row)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return rows, next, nil
}

func deliveryState(tx Tx, id string) (DeliveryState, error) {
	if id == "" {
		return "", nil
	}
	d, err := tx.Delivery(id)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return d.State, nil
}

// Order returns an order's detail (ErrNotFound when nothing of it is stored).
func Order(ctx context.Context, b Backend, orderID string) (*OrderDetail, error) {
	out := &OrderDetail{OrderID: orderID, Intakes: []Intake{}, Events: []EventSummary{}, Deliveries: []Delivery{}, Timeline: []TimelineEntry{}}
	var rec *OrderIntake
	err := b.View(ctx, func(tx Tx) error {
		var err error
		rec, err = tx.OrderIntake(orderID)
		if errors.Is(err, ErrNotFound) {
			rec, err = nil, nil
		}
		if err != nil {
			return err
		}
		st, err := tx.OrderState(orderID)
		if err != nil {
			return err
		}
		out.Statuses = st.Targets
		if rec == nil {
			return nil
		}
		out.Intakes = out.Intakes[:0]
		for _, id := range rec.IntakeIDs {
			it, err := tx.Intake(id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out.Intakes = append(out.Intakes, *it)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read order %s: %w", orderID, err)
	}
	if out.Statuses == nil {
		out.Statuses = map[string]TargetState{}
	}
	if rec != nil {
		out.Ticket, out.MediaID = rec.Ticket, rec.MediaID
		out.TicketDeliveryID, out.UpsertDeliveryID = rec.TicketDeliveryID, rec.UpsertDeliveryID
	}
	rows, err := allEventSummaries(ctx, b, EventFilter{OrderID: orderID})
	if err != nil {
		return nil, err
	}
	out.Events = rows
	if err := EachDelivery(ctx, b, DeliveryFilter{OrderID: orderID, IncludeResolved: true}, func(d *Delivery) {
		out.Deliveries = append(out.Deliveries, *d)
	}); err != nil {
		return nil, err
	}
	if rec == nil && len(out.Events) == 0 && len(out.Deliveries) == 0 {
		return nil, fmt.Errorf("%w: order %s", ErrNotFound, orderID)
	}
	sort.SliceStable(out.Deliveries, func(i, j int) bool { return out.Deliveries[i].ID < out.Deliveries[j].ID })
	if err := FillShortDeliveryIDs(ctx, b, out.Deliveries); err != nil {
		return nil, err
	}
	out.Timeline = timeline(out)
	return out, nil
}

// allEventSummaries is EventSummaries over every page, oldest first.
func allEventSummaries(ctx context.Context, b Backend, f EventFilter) ([]EventSummary, error) {
	out := []EventSummary{}
	f.Limit = 1000
	for {
		rows, next, err := EventSummaries(ctx, b, f)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		if next == "" {
			break
		}
		f.Cursor = next
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// timeline puts an order's intakes, events, deliveries and attempts in time
// order (equal times: in the order they were added).
func timeline(o *OrderDetail) []TimelineEntry {
	var tl []TimelineEntry
	for _, it := range o.Intakes {
		text := "source " + string(it.Source)
		if it.FetchedBy != "" {
			text += ", read by fetch delivery " + it.FetchedBy
		}
		tl = append(tl, TimelineEntry{At: it.ReceivedAt, Type: "intake", ID: it.ID, State: string(it.State), Text: text})
	}
	for _, ev := range o.Events {
		status := ev.StatusName
		if status == "" {
			status = ev.StatusID
		}
		text := ev.Reason
		if ev.Error != "" {
			text = ev.Error
		}
		tl = append(tl, TimelineEntry{At: ev.ReceivedAt, Type: "event", ID: ev.ID, Status: status, State: string(ev.State), Text: text})
	}
	for _, d := range o.Deliveries {
		kind := d.KindOrStatus()
		src := d.EventID
		if d.IntakeID != "" {
			src = d.IntakeID
		}
		tl = append(tl, TimelineEntry{At: d.CreatedAt, Type: "delivery", ID: d.ID, Kind: kind, Target: d.Target,
			Status: d.Status, State: string(Pending), Text: "from " + src})
		for _, a := range d.Attempts {
			text := a.Error
			if text == "" {
				text = a.Excerpt
			}
			tl = append(tl, TimelineEntry{At: a.At, Type: "attempt", ID: d.ID, Kind: kind, Target: d.Target,
				Status: d.Status, StatusCode: a.StatusCode, Text: text})
		}
		if d.State.Terminal() {
			text := d.Reason
			if d.Result != "" {
				text = d.Result
				if d.Reason != "" {
					text += "; " + d.Reason
				}
			}
			tl = append(tl, TimelineEntry{At: d.UpdatedAt, Type: "finished", ID: d.ID, Kind: kind, Target: d.Target,
				Status: d.Status, State: string(d.State), Text: text})
		}
	}
	sort.SliceStable(tl, func(i, j int) bool { return tl[i].At.Before(tl[j].At) })
	if tl == nil {
		tl = []TimelineEntry{}
	}
	return tl
}
