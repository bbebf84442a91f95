package backendtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// RecordAttempts: attempts are appended; a retry keeps the delivery pending
// until its next attempt time; done leaves the outbox; an unknown delivery
// is ErrNotFound.
func RecordAttempts(t *testing.T, f Factory) {
	b, _ := f(t)
	now := time.Now()
	res := IngestAt(t, b, Table(t, "k"), "t", "1", Confirmed, "", now)
	id := res.Deliveries[0].ID
	next := now.Add(time.Minute).UTC().Truncate(time.Millisecond)
	at := now.UTC().Truncate(time.Millisecond)
	record(t, b, id, bridge.AttemptResult{State: bridge.Pending, NextAttemptAt: next,
		Attempt: &bridge.Attempt{At: at, StatusCode: 500, Duration: 1500 * time.Microsecond, Error: "HTTP 500", Excerpt: "oops"}})
	d := getDelivery(t, b, id)
	if len(d.Attempts) != 1 || d.State != bridge.Pending || !d.NextAttemptAt.Equal(next) || d.Reason != "" {
		t.Errorf("after retry: %+v", d)
	}
	if a := d.Attempts[0]; !a.At.Equal(at) || a.StatusCode != 500 || a.Duration != 1500*time.Microsecond || a.Error != "HTTP 500" || a.Excerpt != "oops" {
		t.Errorf("attempt = %+v", a)
	}
	if p := pending(t, b); len(p) != 1 || !p[0].NextAttemptAt.Equal(next) || len(p[0].Attempts) != 1 {
		t.Errorf("pending after retry = %+v", p)
	}
	record(t, b, id, bridge.AttemptResult{Attempt: &bridge.Attempt{StatusCode: 200}, State: bridge.Done, Result: "already_active"})
	d = getDelivery(t, b, id)
	if len(d.Attempts) != 2 || d.State != bridge.Done || !d.NextAttemptAt.IsZero() || d.Result != "already_active" ||
		d.Attempts[1].StatusCode != 200 || !d.UpdatedAt.After(d.CreatedAt.Add(-time.Second)) {
		t.Errorf("after done: %+v", d)
	}
	if p := pending(t, b); len(p) != 0 {
		t.Errorf("done delivery still pending: %v", p)
	}
	if st := stats(t, b); st.Pending != 0 || st.Deliveries != 1 {
		t.Errorf("stats = %+v", st)
	}
	// A dead record keeps its reason; one without an attempt adds none.
	res = IngestAt(t, b, Table(t, "k"), "u", "2", Confirmed, "", now)
	record(t, b, res.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: 400"})
	if d := getDelivery(t, b, res.Deliveries[0].ID); d.State != bridge.Dead || d.Reason != "permanent failure: 400" || len(d.Attempts) != 0 {
		t.Errorf("dead: %+v", d)
	}
	err := b.Record(context.Background(), "00000000-0000-0000-0000-000000000000", bridge.AttemptResult{State: bridge.Done}, time.Now())
	if !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("Record(unknown) = %v, want bridge.ErrNotFound", err)
	}
}

// RecordAsyncAndClose: done is called once the record is committed (it is
// then visible); a record queued just before Close is committed by Close.
func RecordAsyncAndClose(t *testing.T, f Factory) {
	b, reopen := f(t)
	tb := Table(t, "k")
	first := IngestAt(t, b, tb, "t1", "1", Confirmed, "", time.Now())
	second := IngestAt(t, b, tb, "t2", "2", Confirmed, "", time.Now())
	recorded := make(chan error, 2)
	err := b.RecordAsync(context.Background(), first.Deliveries[0].ID,
		bridge.AttemptResult{Attempt: &bridge.Attempt{StatusCode: 200}, State: bridge.Done}, time.Now(), func(err error) { recorded <- err })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recorded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RecordAsync: done never called")
	}
	if d := getDelivery(t, b, first.Deliveries[0].ID); d.State != bridge.Done || len(d.Attempts) != 1 {
		t.Errorf("recorded delivery = %+v", d)
	}
	err = b.RecordAsync(context.Background(), second.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "x"}, time.Now(),
		func(err error) { recorded <- err })
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recorded:
		if err != nil {
			t.Fatalf("record queued at close: %v", err)
		}
	default:
		t.Fatal("Close returned before the queued record's done was called")
	}
	if err := b.RecordAsync(context.Background(), second.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done}, time.Now(),
		func(error) { t.Error("done called for a record refused at once") }); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("RecordAsync after Close = %v, want ErrClosed", err)
	}
	b = reopen(t)
	if p := pending(t, b); len(p) != 0 {
		t.Errorf("record queued at close was lost: %+v", p)
	}
	if d := getDelivery(t, b, second.Deliveries[0].ID); d.State != bridge.Dead || d.Reason != "x" {
		t.Errorf("after reopen: %+v", d)
	}
}

// PendingInLaneOrder: the outbox lists unfinished deliveries, each lane's
// in commit order, and a cursor from PendingAfter pages through them once.
func PendingInLaneOrder(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	now := time.Now()
	var want []string // commit order
	for i := range 6 {
		order := fmt.Sprint(i % 2)
		status := []string{Confirmed, Awaiting}[i/2%2]
		r := IngestAt(t, b, tb, fmt.Sprint("t", i), order, status, fmt.Sprintf("2026-01-13 10:00:%02d", i), now)
		if r.State != bridge.EventDispatched {
			t.Fatalf("ingest %d: %s", i, r.State)
		}
		want = append(want, r.Deliveries[0].ID)
	}
	all := pending(t, b)
	if len(all) != len(want) {
		t.Fatalf("%d pending, want %d", len(all), len(want))
	}
	pos := map[string]int{}
	for i, d := range all {
		pos[d.ID] = i
	}
	for i := 2; i < len(want); i++ { // the lane of want[i] holds want[i-2] before it
		if pos[want[i-2]] > pos[want[i]] {
			t.Errorf("lane order broken: %s listed after %s", want[i-2], want[i])
		}
	}
	// Paging with the cursor: each exactly once.
	seen := map[string]int{}
	cursor := ""
	for range 10 {
		page, err := b.PendingAfter(context.Background(), cursor, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			seen[d.ID]++
		}
		cursor = page[len(page)-1].ID
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("delivery %s paged %d times, want once", id, seen[id])
		}
	}
	// Finished ones leave it.
	record(t, b, want[0], bridge.AttemptResult{State: bridge.Done})
	record(t, b, want[1], bridge.AttemptResult{State: bridge.Dead})
	if p := pending(t, b); len(p) != 4 || p[0].ID == want[0] || p[0].ID == want[1] {
		t.Errorf("pending after two finished = %v", p)
	}
}

// PendingByTarget counts unfinished deliveries per target with the oldest
// creation time.
func PendingByTarget(t *testing.T, f Factory) {
	b, _ := f(t)
	tb := Table(t, "k")
	now := time.Now()
	first := IngestAt(t, b, tb, "a", "1", Confirmed, "", now)
	IngestAt(t, b, tb, "b", "2", Confirmed, "", now)
	done := IngestAt(t, b, tb, "c", "3", Confirmed, "", now)
	record(t, b, done.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done})
	got, err := b.PendingByTarget(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := got["expertsender"]
	oldest := first.Deliveries[0].CreatedAt
	if len(got) != 1 || !ok || s.Pending != 2 || s.Oldest.Sub(oldest).Abs() > time.Millisecond {
		t.Errorf("PendingByTarget = %+v, want expertsender: 2, oldest %s", got, oldest)
	}
}

// ClaimsShowInFlight: a claimed pending delivery is shown and filtered as
// in_flight until it is released or recorded; a durable claim of a
// finished delivery is refused.
func ClaimsShowInFlight(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	tb := Table(t, "k")
	res := IngestAt(t, b, tb, "a", "1", Confirmed, "", time.Now())
	other := IngestAt(t, b, tb, "b", "2", Confirmed, "", time.Now())
	d := res.Deliveries[0]
	if err := b.Claim(ctx, &d, false); err != nil {
		t.Fatal(err)
	}
	if got := getDelivery(t, b, d.ID); got.State != bridge.InFlight {
		t.Errorf("claimed delivery shown %s, want in_flight", got.State)
	}
	ids := func(state string) []string {
		ds, _, err := b.ListDeliveries(ctx, bridge.DeliveryFilter{State: state})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.ID+":"+string(d.State))
		}
		return out
	}
	if got := ids(string(bridge.InFlight)); len(got) != 1 || got[0] != d.ID+":in_flight" {
		t.Errorf("in_flight listing = %v, want %s", got, d.ID)
	}
	if got := ids(string(bridge.Pending)); len(got) != 1 || got[0] != other.Deliveries[0].ID+":pending" {
		t.Errorf("pending listing = %v, want only %s", got, other.Deliveries[0].ID)
	}
	if err := b.Release(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if got := getDelivery(t, b, d.ID); got.State != bridge.Pending {
		t.Errorf("released delivery shown %s, want pending", got.State)
	}
	if err := b.Claim(ctx, &d, true); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	record(t, b, d.ID, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{StatusCode: 200}})
	if got := getDelivery(t, b, d.ID); got.State != bridge.Done {
		t.Errorf("recorded delivery shown %s, want done", got.State)
	}
	if got := ids(string(bridge.InFlight)); len(got) != 0 {
		t.Errorf("in_flight after the record = %v", got)
	}
	if err := b.Claim(ctx, &d, true); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Errorf("durable claim of a done delivery = %v, want ErrClaimRefused", err)
	}
}

// TriggeredKeys: a no-repeat key is recorded by a done delivery only.
func TriggeredKeys(t *testing.T, f Factory) {
	b, _ := f(t)
	ctx := context.Background()
	tb := Table(t, "k")
	a := IngestAt(t, b, tb, "a", "1", Confirmed, "", time.Now())
	c := IngestAt(t, b, tb, "c", "2", Confirmed, "", time.Now())
	record(t, b, a.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Pending, OnceKey: "everlytic/1/x/7", NextAttemptAt: time.Now()})
	if ok, err := b.Triggered(ctx, "everlytic/1/x/7"); err != nil || ok {
		t.Errorf("Triggered after a retry = %v, %v; want false", ok, err)
	}
	record(t, b, c.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, OnceKey: "everlytic/2/x/7"})
	if ok, err := b.Triggered(ctx, "everlytic/2/x/7"); err != nil || ok {
		t.Errorf("Triggered after dead = %v, %v; want false", ok, err)
	}
	record(t, b, a.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done, OnceKey: "everlytic/1/x/7"})
	if ok, err := b.Triggered(ctx, "everlytic/1/x/7"); err != nil || !ok {
		t.Errorf("Triggered after done = %v, %v; want true", ok, err)
	}
	if ok, err := b.Triggered(ctx, "everlytic/1/x/8"); err != nil || ok {
		t.Errorf("Triggered(another key) = %v, %v; want false", ok, err)
	}
}
