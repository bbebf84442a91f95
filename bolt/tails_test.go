package bolt

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// TestTailsAgreeWithTheScan: short ids and resolutions read from the tails
// indexes are the ones a pass over every key gives (the path of a store
// without them), for events and deliveries, twins that share long ends
// included, and after retention deleted some.
func TestTailsAgreeWithTheScan(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	ctx := context.Background()
	var evIDs, dIDs []string
	for i := range 300 {
		received := time.Now()
		if i < 40 {
			received = received.Add(-100 * 24 * time.Hour) // swept below
		}
		r := ingestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), confirmed, "", received)
		evIDs = append(evIDs, r.EventID)
		dIDs = append(dIDs, r.Deliveries[0].ID)
		if i < 40 {
			if err := db.Record(ctx, r.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done}, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := bridge.Sweep(ctx, db, time.Now().Add(-90*24*time.Hour)); err != nil || n != 40 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	evIDs, dIDs = evIDs[40:], dIDs[40:]
	// Twins ending with the same 17 and 24 hex digits as an event.
	k, _ := idKey(evIDs[10])
	err := db.bolt.Update(func(btx *bbolt.Tx) error {
		for _, keep := range []int{17, 24} {
			twin := append([]byte{}, k...)
			mask := byte(0x01) // the digit just before the shared end
			if keep%2 == 1 {
				mask = 0x10
			}
			twin[15-keep/2] ^= mask
			ev := &bridge.Event{ID: idString(twin), ReceivedAt: time.Now(), Name: "ticket.updated", State: bridge.EventNoStatusChange}
			if err := (&tx{db, btx}).PutEvent(ev, nil); err != nil {
				return err
			}
			evIDs = append(evIDs, ev.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func() (ev, del map[string]string, resolved map[string]string) {
		t.Helper()
		ev, err := db.ShortEventIDs(ctx, evIDs)
		if err != nil {
			t.Fatal(err)
		}
		del, err = db.ShortDeliveryIDs(ctx, dIDs)
		if err != nil {
			t.Fatal(err)
		}
		resolved = map[string]string{}
		for id, s := range ev {
			got, err := db.ResolveEventID(ctx, s)
			resolved["e"+id] = fmt.Sprint(got, err)
			got, err = db.ResolveEventID(ctx, s[1:]) // one digit short: may name several
			resolved["e-"+id] = fmt.Sprint(got, err)
		}
		for id, s := range del {
			got, err := db.ResolveDeliveryID(ctx, s)
			resolved["d"+id] = fmt.Sprint(got, err)
		}
		return ev, del, resolved
	}
	ev1, del1, res1 := read()
	if len(ev1[evIDs[10]]) != 25 || len(ev1[evIDs[len(evIDs)-1]]) != 25 || len(ev1[evIDs[len(evIDs)-2]]) != 18 {
		t.Errorf("short ids of the twins: %q %q %q", ev1[evIDs[10]], ev1[evIDs[len(evIDs)-2]], ev1[evIDs[len(evIDs)-1]])
	}
	for key, got := range res1 {
		if key[1] != '-' && got != key[1:]+"<nil>" { // a whole short id names its own id
			t.Errorf("resolving the short id of %s: %s", key[1:], got)
		}
	}
	// The same store without the tails buckets takes the scan.
	err = db.bolt.Update(func(btx *bbolt.Tx) error {
		if err := btx.DeleteBucket(bucketEventTails); err != nil {
			return err
		}
		return btx.DeleteBucket(bucketDeliveryTails)
	})
	if err != nil {
		t.Fatal(err)
	}
	ev2, del2, res2 := read()
	if !maps.Equal(ev1, ev2) || !maps.Equal(del1, del2) || !maps.Equal(res1, res2) {
		t.Errorf("tails and scan disagree:\nevents %v\n   vs %v\ndeliveries %v\n   vs %v", ev1, ev2, del1, del2)
		for k, v := range res1 {
			if res2[k] != v {
				t.Errorf("resolve %s: tails %s, scan %s", k, v, res2[k])
			}
		}
	}
}
