package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/statusbridge/statusbridge/bridge"
)

// addIntakes puts the order intake's part of an order on its view: the
// intakes, the Digishare ticket, and the deliveries of its steps (the
// ticket, the ExpertSender order upsert, the order fetch) with their
// attempts on the timeline.
func (s *Service) addIntakes(ctx context.Context, v *OrderView) error {
	var rec *bridge.OrderIntake
	var intakes []bridge.Intake
	err := s.store.View(ctx, func(tx bridge.Tx) error {
		var err error
		rec, intakes = nil, nil
		rec, err = tx.OrderIntake(v.OrderID)
		if errors.Is(err, bridge.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, id := range rec.IntakeIDs {
			in, err := tx.Intake(id)
			if errors.Is(err, bridge.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			intakes = append(intakes, *in)
		}
		return nil
	})
	if err != nil || rec == nil {
		return err
	}
	for _, in := range intakes {
		summary := "from " + string(in.Source)
		if in.FetchedBy != "" {
			summary += " (read by fetch delivery " + in.FetchedBy + ")"
		}
		v.Intakes = append(v.Intakes, Intake{ID: in.ID, ReceivedAt: in.ReceivedAt, State: string(in.State), Summary: summary})
		v.Timeline = append(v.Timeline, TimelineEntry{At: in.ReceivedAt, Kind: "intake", State: string(in.State),
			Text: fmt.Sprintf("order intake %s (%s)", in.ID, summary)})
	}
	var ticketDelivery *bridge.Delivery
	cursor := ""
	for {
		page, next, err := s.store.ListDeliveries(ctx, bridge.DeliveryFilter{OrderID: v.OrderID, IncludeResolved: true, Cursor: cursor, Limit: MaxLimit})
		if err != nil {
			return err
		}
		for i := range page {
			d := &page[i]
			if d.KindOrStatus() == bridge.KindStatus {
				continue
			}
			if d.ID == rec.TicketDeliveryID {
				ticketDelivery = d
			}
			text := fmt.Sprintf("%s %s queued", d.Target, d.Kind)
			if d.Reason != "" {
				text += " (" + d.Reason + ")"
			}
			v.Timeline = append(v.Timeline, TimelineEntry{At: d.CreatedAt, Kind: "delivery", DeliveryID: d.ID, Target: d.Target,
				State: string(d.State), Text: text})
			for k := range d.Attempts {
				a := &d.Attempts[k]
				v.Timeline = append(v.Timeline, TimelineEntry{At: a.At, Kind: "attempt", DeliveryID: d.ID, Target: d.Target,
					Text: fmt.Sprintf("%s %s: attempt %d", d.Target, d.Kind, k+1), Attempt: a})
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	sort.SliceStable(v.Timeline, func(i, j int) bool { return v.Timeline[i].At.Before(v.Timeline[j].At) })
	switch {
	case rec.Ticket != nil:
		t := rec.Ticket
		var parts []string
		if t.Number != "" {
			parts = append(parts, "#"+t.Number)
		}
		if t.MediaID != "" {
			parts = append(parts, "invoice media id "+t.MediaID)
		} else if t.MediaNote != "" {
			parts = append(parts, t.MediaNote)
		}
		v.Ticket = &Ticket{ID: t.ID, State: string(bridge.Done), Summary: strings.Join(parts, ", ")}
	case ticketDelivery != nil:
		summary := "not created yet"
		if ticketDelivery.Reason != "" {
			summary = ticketDelivery.Reason
		}
		v.Ticket = &Ticket{ID: "—", State: string(ticketDelivery.State), Summary: summary}
	}
	return nil
}
