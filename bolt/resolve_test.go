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

// TestShortIDsSeeIdsMadeAfterTheFirstLook: short ids come from an index of
// id tails built at the first look and kept up by the committer, so an id
// committed later that ends like a shown one makes both longer — whether
// it comes alone or among thousands (the index's merge), for events and
// deliveries alike.
func TestShortIDsSeeIdsMadeAfterTheFirstLook(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	ctx := context.Background()
	var ids, dels []string
	for i := range 20 {
		res := ingestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), confirmed, "", time.Now())
		ids = append(ids, res.EventID)
		dels = append(dels, res.Deliveries[0].ID)
	}
	short, err := db.ShortEventIDs(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if len(short[id]) != bridge.MinShortID {
			t.Fatalf("short id of %s before any twin: %q", id, short[id])
		}
	}
	if _, err := db.ShortDeliveryIDs(ctx, dels); err != nil {
		t.Fatal(err)
	}
	twin := func(id string, at int) string {
		k, _ := idKey(id)
		tw := append([]byte{}, k...)
		tw[at] ^= 0x01
		return idString(tw)
	}
	// A twin of ids[0] (differs in byte 0: shares 30 digits), alone; and
	// among 5,000 other new events, a twin of ids[1] (differs in byte 10:
	// shares 10 digits), with a twin of dels[0].
	evTwin, evTwin2, delTwin := twin(ids[0], 0), twin(ids[1], 10), twin(dels[0], 0)
	if err := db.Update(ctx, bridge.UpdateOptions{}, func(tx bridge.Tx) error {
		return tx.PutEvent(&bridge.Event{ID: evTwin, ReceivedAt: time.Now(), Name: "ticket.updated"}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	d, err := db.GetDelivery(ctx, dels[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, bridge.UpdateOptions{}, func(tx bridge.Tx) error {
		for range 5000 {
			id, err := bridge.NewID()
			if err != nil {
				return err
			}
			if err := tx.PutEvent(&bridge.Event{ID: id, ReceivedAt: time.Now(), Name: "ticket.updated"}, nil); err != nil {
				return err
			}
		}
		if err := tx.PutEvent(&bridge.Event{ID: evTwin2, ReceivedAt: time.Now(), Name: "ticket.updated"}, nil); err != nil {
			return err
		}
		dt := *d
		dt.ID = delTwin
		return tx.PutDelivery(&dt)
	}); err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{}, ids...), evTwin, evTwin2)
	short, err = db.ShortEventIDs(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ids[0]: 31, evTwin: 31, ids[1]: 11, evTwin2: 11, ids[2]: bridge.MinShortID}
	for id, n := range want {
		if len(short[id]) != n {
			t.Errorf("short id of %s = %q (%d digits), want %d", id, short[id], len(short[id]), n)
		}
	}
	for _, id := range all {
		if got, err := db.ResolveEventID(ctx, short[id]); err != nil || got != id {
			t.Errorf("ResolveEventID(%q) = %q, %v; want %s", short[id], got, err, id)
		}
	}
	sd, err := db.ShortDeliveryIDs(ctx, []string{dels[0], delTwin, dels[1]})
	if err != nil {
		t.Fatal(err)
	}
	if len(sd[dels[0]]) != 31 || len(sd[delTwin]) != 31 || len(sd[dels[1]]) != bridge.MinShortID {
		t.Errorf("delivery short ids %v: want the twins at 31 digits, the other at %d", sd, bridge.MinShortID)
	}
}
