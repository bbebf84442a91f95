package admin

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// OrderView is everything stored about one order id.
type OrderView struct {
	OrderID string `json:"order_id"`
	// Targets is, per target, what the order was last sent and how that went.
	Targets []OrderTarget `json:"targets"`
	// Timeline holds events, decisions, deliveries and attempts, oldest first.
	Timeline []TimelineEntry `json:"timeline"`
	// Events are the order's events, newest first (at most MaxOrderEvents).
	Events []bridge.EventDetail `json:"events"`
	// More is set when the order has more events than were read.
	More bool `json:"more"`
	// Intakes and Ticket are the order's intakes and its Digishare ticket
	// where order intake exists (empty until then).
	Intakes []Intake `json:"intakes"`
	Ticket  *Ticket  `json:"ticket,omitempty"`
}

// Intake is one intake of the order document (order intake).
type Intake struct {
	ID         string    `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	State      string    `json:"state"`
	Summary    string    `json:"summary"`
}

// Ticket is the Digishare ticket made for the order (order intake).
type Ticket struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Summary string `json:"summary"`
}

// OrderTarget is one target's last delivery for the order.
type OrderTarget struct {
	Target string `json:"target"`
	// Latest is the newest delivery; LastDone the newest that was done —
	// what the target was last told successfully.
	Latest   *bridge.Delivery `json:"latest,omitempty"`
	LastDone *bridge.Delivery `json:"last_done,omitempty"`
}

// TimelineEntry is one thing that happened to the order.
type TimelineEntry struct {
	At         time.Time       `json:"at"`
	Kind       string          `json:"kind"` // event, decision, delivery, attempt
	EventID    string          `json:"event_id,omitempty"`
	DeliveryID string          `json:"delivery_id,omitempty"`
	Target     string          `json:"target,omitempty"`
	State      string          `json:"state,omitempty"`
	Text       string          `json:"text"`
	Attempt    *bridge.Attempt `json:"attempt,omitempty"`
}

// MaxOrderEvents bounds the events the order page reads.
const MaxOrderEvents = 200

// Order gathers the order's events (newest MaxOrderEvents), their decisions,
// deliveries and attempts into one timeline, and each target's last
// delivery. An order nothing is stored for has an empty view.
func (s *Service) Order(ctx context.Context, orderID string) (*OrderView, error) {
	if orderID == "" {
		return nil, invalid("order id: required")
	}
	v := &OrderView{OrderID: orderID, Targets: []OrderTarget{}, Timeline: []TimelineEntry{}, Events: []bridge.EventDetail{}, Intakes: []Intake{}}
	cursor := ""
	for {
		evs, next, err := s.store.ListEvents(ctx, bridge.EventFilter{OrderID: orderID, Cursor: cursor, Limit: MaxOrderEvents})
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if len(v.Events) == MaxOrderEvents {
				v.More = true
				break
			}
			d, err := s.store.Detail(ctx, ev.ID)
			if err != nil {
				return nil, err
			}
			v.Events = append(v.Events, *d)
		}
		if next == "" || v.More {
			break
		}
		cursor = next
	}
	targets := map[string]*OrderTarget{}
	for i := range v.Events {
		d := &v.Events[i]
		ev := &d.Event
		v.Timeline = append(v.Timeline, TimelineEntry{At: ev.ReceivedAt, Kind: "event", EventID: ev.ID, State: string(ev.State),
			Text: fmt.Sprintf("%s received (ticket %s)", ev.Name, ev.TicketID)})
		for n, dec := range ev.Decisions {
			what := "decided"
			if n > 0 {
				what = "replayed"
			}
			text := fmt.Sprintf("%s: %s under mapping %s", what, dec.Outcome, dec.MappingVersion)
			if dec.StatusID != "" {
				text += fmt.Sprintf("; status %s", dec.StatusID)
				if dec.StatusName != "" {
					text += " (" + dec.StatusName + ")"
				}
			}
			if dec.Reason != "" {
				text += "; " + dec.Reason
			}
			v.Timeline = append(v.Timeline, TimelineEntry{At: ev.ReceivedAt, Kind: "decision", EventID: ev.ID, State: string(dec.Outcome), Text: text})
		}
		for j := range d.Deliveries {
			del := &d.Deliveries[j]
			text := fmt.Sprintf("%s %s queued", del.Target, del.Status)
			if del.Reason != "" {
				text += " (" + del.Reason + ")"
			}
			v.Timeline = append(v.Timeline, TimelineEntry{At: del.CreatedAt, Kind: "delivery", EventID: ev.ID, DeliveryID: del.ID,
				Target: del.Target, State: string(del.State), Text: text})
			for k := range del.Attempts {
				a := &del.Attempts[k]
				v.Timeline = append(v.Timeline, TimelineEntry{At: a.At, Kind: "attempt", EventID: ev.ID, DeliveryID: del.ID,
					Target: del.Target, Text: fmt.Sprintf("%s %s: attempt %d", del.Target, del.Status, k+1), Attempt: a})
			}
			t := targets[del.Target]
			if t == nil {
				t = &OrderTarget{Target: del.Target}
				targets[del.Target] = t
			}
			if t.Latest == nil || del.ID > t.Latest.ID { // ids are time-ordered
				t.Latest = del
			}
			if del.State == bridge.Done && (t.LastDone == nil || del.ID > t.LastDone.ID) {
				t.LastDone = del
			}
		}
	}
	sort.SliceStable(v.Timeline, func(i, j int) bool { return v.Timeline[i].At.Before(v.Timeline[j].At) })
	for _, t := range targets {
		v.Targets = append(v.Targets, *t)
	}
	sort.Slice(v.Targets, func(i, j int) bool { return v.Targets[i].Target < v.Targets[j].Target })
	if err := s.addIntakes(ctx, v); err != nil {
		return nil, err
	}
	return v, nil
}
