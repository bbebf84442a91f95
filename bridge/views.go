package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Deliveries returns the deliveries with the given ids, in that order.
func Deliveries(ctx context.Context, b Backend, ids []string) ([]Delivery, error) {
	out := make([]Delivery, 0, len(ids))
	for _, id := range ids {
		d, err := b.GetDelivery(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, nil
}

// EventSummaries is ListEvents with each event's last decision and its
// deliveries counted by state (in_flight where a sender claims them).
func EventSummaries(ctx context.Context, b Backend, f EventFilter) ([]EventSummary, string, error) {
	events, next, err := b.ListEvents(ctx, f)
	if err != nil {
		return nil, "", err
	}
	rows := make([]EventSummary, 0, len(events))
	for _, ev := range events {
		row := EventSummary{ID: ev.ID, ReceivedAt: ev.ReceivedAt, Event: ev.Name, TicketID: ev.TicketID,
			OrderID: ev.OrderID, State: ev.State, Error: ev.Error, Deliveries: map[string]int{}}
		if n := len(ev.Decisions); n > 0 {
			d := ev.Decisions[n-1]
			row.StatusID, row.StatusName, row.Reason = d.StatusID, d.StatusName, d.Reason
		}
		ds, err := Deliveries(ctx, b, ev.DeliveryIDs)
		if err != nil {
			return nil, "", err
		}
		for _, d := range ds {
			row.Deliveries[string(d.State)]++
		}
		rows = append(rows, row)
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	short, err := b.ShortEventIDs(ctx, ids)
	if err != nil {
		return nil, "", err
	}
	for i := range rows {
		rows[i].ShortID = short[rows[i].ID]
	}
	return rows, next, nil
}

// FillShortDeliveryIDs sets each delivery's ShortID (for listings).
func FillShortDeliveryIDs(ctx context.Context, b Backend, ds []Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	ids := make([]string, len(ds))
	for i := range ds {
		ids[i] = ds[i].ID
	}
	short, err := b.ShortDeliveryIDs(ctx, ids)
	if err != nil {
		return err
	}
	for i := range ds {
		ds[i].ShortID = short[ds[i].ID]
	}
	return nil
}

// Detail returns an event's detail.
func Detail(ctx context.Context, b Backend, id string) (*EventDetail, error) {
	ev, raw, err := b.GetEvent(ctx, id)
	if err != nil {
		return nil, err
	}
	ds, err := Deliveries(ctx, b, ev.DeliveryIDs)
	if err != nil {
		return nil, err
	}
	payload := json.RawMessage(raw)
	if !json.Valid(raw) {
		payload, _ = json.Marshal(string(raw))
	}
	return &EventDetail{Event: *ev, Payload: payload, Deliveries: ds}, nil
}

// sweepBatch bounds the events one retention transaction examines, so the
// sweeper never holds the writer long enough to delay ingest.
const sweepBatch = 500

// MayDelete is the retention rule: an event older than the cutoff may be
// deleted with its deliveries unless one of them is unfinished.
func MayDelete(ev *Event, cutoff time.Time, deliveries []Delivery) bool {
	if !ev.ReceivedAt.Before(cutoff) {
		return false
	}
	for _, d := range deliveries {
		if !d.State.Terminal() {
			return false
		}
	}
	return true
}

// Sweep deletes events received before cutoff, with their payloads, dedup
// keys and deliveries, in small transactions. An event with a delivery still
// pending is kept, whatever its age. Order states and no-repeat keys are
// kept: they hold the watermark and the one-time guarantees. It returns how
// many events it deleted.
func Sweep(ctx context.Context, b Backend, cutoff time.Time) (int, error) {
	total := 0
	after := "" // events up to here were examined (kept ones included)
	for {
		deleted, last, more := 0, "", false
		err := b.Update(ctx, UpdateOptions{}, func(tx Tx) error {
			deleted, last, more = 0, "", false
			events, err := tx.EventsFrom(after, sweepBatch)
			if err != nil {
				return err
			}
			for i := range events {
				ev := &events[i]
				if !ev.ReceivedAt.Before(cutoff) {
					return nil
				}
				last = ev.ID
				ds := make([]Delivery, 0, len(ev.DeliveryIDs))
				for _, id := range ev.DeliveryIDs {
					d, err := tx.Delivery(id)
					if err == nil {
						ds = append(ds, *d)
					}
				}
				if !MayDelete(ev, cutoff, ds) {
					continue
				}
				if err := tx.DeleteEvent(ev); err != nil {
					return fmt.Errorf("store: delete event %s: %w", ev.ID, err)
				}
				deleted++
			}
			more = len(events) == sweepBatch
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("store: sweep: %w", err)
		}
		total += deleted
		if !more || last == "" {
			return total, nil
		}
		after = last
	}
}

// RunRetention sweeps every interval until ctx ends, deleting what is older
// than retention (0: never).
func RunRetention(ctx context.Context, b Backend, retention, interval time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := Sweep(ctx, b, time.Now().Add(-retention)); err != nil {
			log.Error("retention sweep", "err", err)
		} else if n > 0 {
			log.Info("retention sweep", "deleted_events", n, "older_than", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
