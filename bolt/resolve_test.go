package bolt

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// TestShortIDsAreUniqueEndsAndResolve: ids made within the same minute
// share their beginning; the short form is the end of the id, at least 8
// hex digits, longer where another id ends the same, and it resolves back.
func TestShortIDsAreUniqueEndsAndResolve(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	var ids []string
	for i := range 20 {
		ids = append(ids, ingestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), confirmed, "", time.Now()).EventID)
	}
	// Two more events whose ids end with the same 10 hex digits as the first.
	k0, _ := idKey(ids[0])
	twin1, twin2 := append([]byte{}, k0...), append([]byte{}, k0...)
	twin1[0], twin2[0], twin2[10] = 0x7f, 0x7e, k0[10]^0x10 // twin2 differs in the 11th digit from the end
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		for _, k := range [][]byte{twin1, twin2} {
			if err := putRecord(tx.Bucket(bucketEvents), k, &bridge.Event{ID: idString(k), ReceivedAt: time.Now(), Name: "ticket.updated"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all := append(ids, idString(twin1), idString(twin2))
	short, err := db.ShortEventIDs(context.Background(), all)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range all {
		s := short[id]
		if len(s) < bridge.MinShortID || !strings.HasSuffix(strings.ReplaceAll(id, "-", ""), s) {
			t.Errorf("short id of %s = %q, want an end of it of at least %d digits", id, s, bridge.MinShortID)
		}
		if got, err := db.ResolveEventID(context.Background(), s); err != nil || got != id {
			t.Errorf("ResolveEventID(%q) = %q, %v; want %s", s, got, err, id)
		}
		if strings.HasPrefix(id, ids[1][:8]) && s == strings.ReplaceAll(id, "-", "")[:len(s)] {
			t.Errorf("short id %q of %s is its (shared) beginning", s, id)
		}
	}
	// twin1 ends with the same 30 digits as ids[0]; twin2 with the same 11.
	if n, n2 := len(short[ids[0]]), len(short[idString(twin2)]); n != 31 || n2 != 12 {
		t.Errorf("short ids %q and %q: %d and %d digits, want 31 and 12 (unique against the twins)", short[ids[0]], short[idString(twin2)], n, n2)
	}
	last8 := hex.EncodeToString(k0)[24:]
	_, err = db.ResolveEventID(context.Background(), last8)
	var ae *bridge.AmbiguousError
	if !errors.As(err, &ae) || len(ae.Candidates) != 3 || !strings.Contains(ae.Error(), ids[0]) {
		t.Errorf("ResolveEventID(%q) with three matches = %v, want an AmbiguousError naming them", last8, err)
	}
	if _, err := db.ResolveEventID(context.Background(), last8[:7]); !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "at least 8") {
		t.Errorf("7 digits: %v", err)
	}
	if _, err := db.ResolveEventID(context.Background(), "ffffffffff"); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("no match: %v", err)
	}
	if got, err := db.ResolveEventID(context.Background(), strings.ToUpper(ids[3])); err != nil || got != ids[3] {
		t.Errorf("whole id: %q %v", got, err)
	}
}

// TestDoneRetryResolvesTheDead: a dead delivery retried by hand, or whose
// event is replayed, is marked resolved_by its successor once that is done,
// and leaves the default listings of dead deliveries and of events with a
// dead delivery.
func TestDoneRetryResolvesTheDead(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	dead := func(id string) {
		t.Helper()
		if err := db.Record(context.Background(), id, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: HTTP 400"}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	done := func(id string) {
		t.Helper()
		if err := db.Record(context.Background(), id, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	listDead := func(all bool) []string {
		t.Helper()
		ds, _, err := db.ListDeliveries(context.Background(), bridge.DeliveryFilter{State: string(bridge.Dead), IncludeResolved: all})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.ID)
		}
		return ids
	}
	deadEvents := func(all bool) int {
		evs, _, err := db.ListEvents(context.Background(), bridge.EventFilter{DeliveryState: string(bridge.Dead), IncludeResolved: all})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	a := ingestAt(t, db, tb, "a", "1", confirmed, "", time.Now())
	b := ingestAt(t, db, tb, "b", "2", confirmed, "", time.Now())
	da, db0 := a.Deliveries[0].ID, b.Deliveries[0].ID
	dead(da)
	dead(db0)
	if got := listDead(false); len(got) != 2 || deadEvents(false) != 2 {
		t.Fatalf("dead deliveries %v, events with one %d; want 2 and 2", got, deadEvents(false))
	}
	// a: retried by hand; the retry fails, is retried again, and that one is done.
	r1, err := bridge.RetryDelivery(context.Background(), db, da, time.Now())
	if err != nil || r1.RetryOf != da {
		t.Fatalf("retry = %+v %v", r1, err)
	}
	dead(r1.ID)
	r2, err := bridge.RetryDelivery(context.Background(), db, r1.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	done(r2.ID)
	for _, id := range []string{da, r1.ID} {
		if d, _ := db.GetDelivery(context.Background(), id); d.ResolvedBy != r2.ID {
			t.Errorf("delivery %s resolved_by %q, want %s", id, d.ResolvedBy, r2.ID)
		}
	}
	// b: its event is replayed; the replay's delivery is done.
	sum, err := bridge.Replay(context.Background(), db, bridge.ReplaySelector{EventIDs: []string{b.EventID}}, tb, bridge.ReplayOptions{}, time.Now())
	if err != nil || sum.Dispatched != 1 {
		t.Fatalf("replay = %+v %v", sum, err)
	}
	if got := listDead(false); len(got) != 1 || got[0] != db0 {
		t.Errorf("dead deliveries before the replay's is done = %v, want [%s]", got, db0)
	}
	pending, _ := db.PendingAfter(context.Background(), "", 10)
	if len(pending) != 1 || pending[0].RetryOf != db0 {
		t.Fatalf("the replay's delivery = %+v, want retry_of %s", pending, db0)
	}
	done(pending[0].ID)
	if got := listDead(false); len(got) != 0 || deadEvents(false) != 0 {
		t.Errorf("after the successes: dead deliveries %v, events with one %d; want none", got, deadEvents(false))
	}
	if got := listDead(true); len(got) != 3 || deadEvents(true) != 2 {
		t.Errorf("with the resolved ones: %v and %d events, want 3 deliveries and 2 events", got, deadEvents(true))
	}
	if ds, _, _ := db.ListDeliveries(context.Background(), bridge.DeliveryFilter{OrderID: "2"}); len(ds) != 2 {
		t.Errorf("deliveries of order 2: %d, want 2", len(ds))
	}
}
