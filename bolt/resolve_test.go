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
