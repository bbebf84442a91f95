package backendtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// ListingsPageSizeAndCursor: both listings take 50 by default, refuse a
// cursor that is not an id, and page on from a good one.
func ListingsPageSizeAndCursor(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	tb := Table(t, "k")
	for i := range 60 {
		IngestAt(t, b, tb, fmt.Sprint("t", i), fmt.Sprint(i), Confirmed, "2026-01-13 10:00:00", time.Now())
	}
	evs, next, err := b.ListEvents(ctx, bridge.EventFilter{})
	if err != nil || len(evs) != 50 || next == "" {
		t.Fatalf("events: %d, next %q, %v; want 50 and a cursor", len(evs), next, err)
	}
	rest, _, err := b.ListEvents(ctx, bridge.EventFilter{Cursor: next})
	if err != nil || len(rest) != 10 {
		t.Errorf("events after the cursor: %d, %v; want 10", len(rest), err)
	}
	all := append(evs, rest...)
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatalf("events not newest first: %s after %s", all[i].ID, all[i-1].ID)
		}
	}
	ds, next, err := b.ListDeliveries(ctx, bridge.DeliveryFilter{})
	if err != nil || len(ds) != 50 || next == "" {
		t.Fatalf("deliveries: %d, next %q, %v; want 50 and a cursor", len(ds), next, err)
	}
	if rest, _, err := b.ListDeliveries(ctx, bridge.DeliveryFilter{Cursor: next}); err != nil || len(rest) != 10 {
		t.Errorf("deliveries after the cursor: %d, %v; want 10", len(rest), err)
	}
	if evs, _, err := b.ListEvents(ctx, bridge.EventFilter{Limit: 5000}); err != nil || len(evs) != 60 {
		t.Errorf("limit 5000: %d events, %v", len(evs), err)
	}
	if _, _, err := b.ListEvents(ctx, bridge.EventFilter{Cursor: "zzz"}); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("events: bad cursor = %v, want an ErrNotFound", err)
	}
	if _, _, err := b.ListDeliveries(ctx, bridge.DeliveryFilter{Cursor: "zzz"}); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("deliveries: bad cursor = %v, want an ErrNotFound", err)
	}
	empty, next, err := b.ListEvents(ctx, bridge.EventFilter{OrderID: "none"})
	if err != nil || empty == nil || len(empty) != 0 || next != "" {
		t.Errorf("no match: %v, %q, %v; want an empty page, no cursor", empty, next, err)
	}
}

// ListingFilters: every filter, alone and combined, paged two at a time.
func ListingFilters(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	tb := Table(t, "k")
	base := time.Now().Add(-10 * time.Hour).UTC().Truncate(time.Second)
	type ev struct {
		id, order, ticket string
		state             bridge.EventState
		at                time.Time
	}
	var evs []ev
	for i := range 10 {
		order, status := fmt.Sprint(i%3), Confirmed
		if i >= 3 {
			status = Awaiting // orders 0..2 move on to placed (dispatched), then again (unchanged)
		}
		if i == 9 {
			status = "unknownstatus000"
		}
		at := base.Add(time.Duration(i) * time.Hour)
		r := IngestAt(t, b, tb, fmt.Sprint("t", i%5), order, status, fmt.Sprintf("2026-01-13 10:00:%02d", i), at)
		evs = append(evs, ev{r.EventID, order, fmt.Sprint("t", i%5), r.State, at})
	}
	collect := func(f bridge.EventFilter) []string {
		t.Helper()
		f.Limit = 2
		var out []string
		for range 20 {
			page, next, err := b.ListEvents(ctx, f)
			if err != nil {
				t.Fatalf("ListEvents(%+v): %v", f, err)
			}
			for _, e := range page {
				out = append(out, e.ID)
			}
			if next == "" {
				return out
			}
			f.Cursor = next
		}
		t.Fatalf("ListEvents(%+v): more than 20 pages", f)
		return nil
	}
	want := func(keep func(e ev) bool) []string {
		var out []string
		for i := len(evs) - 1; i >= 0; i-- {
			if keep(evs[i]) {
				out = append(out, evs[i].id)
			}
		}
		return out
	}
	cases := []struct {
		name string
		f    bridge.EventFilter
		keep func(e ev) bool
	}{
		{"all", bridge.EventFilter{}, func(ev) bool { return true }},
		{"order", bridge.EventFilter{OrderID: "1"}, func(e ev) bool { return e.order == "1" }},
		{"ticket", bridge.EventFilter{TicketID: "t2"}, func(e ev) bool { return e.ticket == "t2" }},
		{"state", bridge.EventFilter{State: string(bridge.EventUnchanged)}, func(e ev) bool { return e.state == bridge.EventUnchanged }},
		{"since", bridge.EventFilter{Since: base.Add(4 * time.Hour)}, func(e ev) bool { return !e.at.Before(base.Add(4 * time.Hour)) }},
		{"until", bridge.EventFilter{Until: base.Add(4 * time.Hour)}, func(e ev) bool { return e.at.Before(base.Add(4 * time.Hour)) }},
		{"order, state and range", bridge.EventFilter{OrderID: "0", State: string(bridge.EventDispatched), Since: base.Add(time.Hour), Until: base.Add(9 * time.Hour)},
			func(e ev) bool {
				return e.order == "0" && e.state == bridge.EventDispatched && !e.at.Before(base.Add(time.Hour)) && e.at.Before(base.Add(9*time.Hour))
			}},
	}
	for _, c := range cases {
		w := want(c.keep)
		if got := collect(c.f); !slices.Equal(got, w) {
			t.Errorf("%s: listed %v, want %v", c.name, got, w)
		}
		if len(w) == 0 {
			t.Errorf("%s: the fixture matches nothing: the case tests nothing", c.name)
		}
	}
	// Deliveries by state and target.
	all, _, err := b.ListDeliveries(ctx, bridge.DeliveryFilter{Limit: 100})
	if err != nil || len(all) < 4 {
		t.Fatalf("deliveries: %d, %v", len(all), err)
	}
	record(t, b, all[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "x"})
	record(t, b, all[1].ID, bridge.AttemptResult{State: bridge.Done})
	for _, c := range []struct {
		f    bridge.DeliveryFilter
		want []string
	}{
		{bridge.DeliveryFilter{State: string(bridge.Dead)}, []string{all[0].ID}},
		{bridge.DeliveryFilter{State: string(bridge.Done)}, []string{all[1].ID}},
		{bridge.DeliveryFilter{State: string(bridge.Skipped)}, nil},
		{bridge.DeliveryFilter{Target: "expertsender", State: string(bridge.Dead)}, []string{all[0].ID}},
		{bridge.DeliveryFilter{Target: "everlytic"}, nil},
	} {
		ds, _, err := b.ListDeliveries(ctx, c.f)
		var got []string
		for _, d := range ds {
			got = append(got, d.ID)
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ListDeliveries(%+v) = %v, %v; want %v", c.f, got, err, c.want)
		}
	}
	var pendingIDs []string
	for _, d := range all[2:] {
		pendingIDs = append(pendingIDs, d.ID)
	}
	var got []string
	f2 := bridge.DeliveryFilter{State: string(bridge.Pending), Target: "expertsender", Limit: 2}
	for range 20 {
		ds, next, err := b.ListDeliveries(ctx, f2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got = append(got, d.ID)
		}
		if next == "" {
			break
		}
		f2.Cursor = next
	}
	if !slices.Equal(got, pendingIDs) {
		t.Errorf("pending deliveries paged = %v, want %v", got, pendingIDs)
	}
}

// EachWalksEveryRecord: the replay helpers visit every matching record once.
func EachWalksEveryRecord(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	for i := range 10 {
		IngestAt(t, b, tb, fmt.Sprint("t", i), fmt.Sprint(i), Confirmed, "2026-01-13 10:00:00", time.Now())
	}
	events, deliveries := map[string]int{}, map[string]int{}
	if err := bridge.EachEvent(context.Background(), b, bridge.EventFilter{}, func(ev *bridge.Event) { events[ev.ID]++ }); err != nil {
		t.Fatal(err)
	}
	if err := bridge.EachDelivery(context.Background(), b, bridge.DeliveryFilter{}, func(d *bridge.Delivery) { deliveries[d.ID]++ }); err != nil {
		t.Fatal(err)
	}
	if len(events) != 10 || len(deliveries) != 10 {
		t.Errorf("visited %d events and %d deliveries, want 10 each", len(events), len(deliveries))
	}
	for id, n := range events {
		if n != 1 {
			t.Errorf("event %s visited %d times", id, n)
		}
	}
}
