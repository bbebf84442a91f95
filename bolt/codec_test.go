package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/internal/fake"
	bbolt "go.etcd.io/bbolt"
)

func sampleRecords(t testing.TB) (key []byte, ev bridge.Event, del bridge.Delivery, st bridge.OrderState) {
	id, did, did2 := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	at := time.Date(2026, 11, 24, 1, 2, 3, 456789012, time.UTC)
	ev = bridge.Event{
		ID: id.String(), ReceivedAt: at, Name: "ticket.updated", TicketID: "t-é\"x", OrderID: "12345",
		State: bridge.EventDispatched, Error: "",
		Decisions: []bridge.Decision{
			{Outcome: bridge.EventUnmapped, Reason: "status x is not mapped", OrderID: "12345", StatusID: "zzz",
				MappingVersion: "aaaaaaaaaaaa"},
			{Outcome: bridge.EventDispatched, OrderID: "12345", StatusID: "yqdwrbka7kz69v8e", StatusName: "Order Confirmed",
				ChangedAt: time.Date(2026, 1, 13, 16, 29, 51, 0, time.UTC), ChangedAtText: "2026-01-13 16:29:51",
				Deliveries:     []bridge.Planned{{Target: "expertsender", Status: "paid"}, {Target: "http.crm", Status: "x", Skip: "no api_key"}},
				MappingVersion: "eab75a6db305"},
		},
		DeliveryIDs: []string{did.String(), "not-a-uuid"},
		DedupKey:    []byte("0123456789abcdef"),
	}
	del = bridge.Delivery{
		ID: did.String(), EventID: id.String(), OrderID: "12345", Target: "http.crm", Kind: bridge.KindStatus, Status: "Paid 💸", StatusID: "yqdwrbka7kz69v8e",
		CreatedAt: at, State: bridge.Dead, Reason: "400 Bad Request", Result: "", Force: true,
		NextAttemptAt: at.Add(time.Hour), UpdatedAt: at.Add(time.Second),
		Attempts: []bridge.Attempt{
			{At: at, StatusCode: 0, Duration: 5 * time.Second, Error: "timeout"},
			{At: at.Add(time.Minute), StatusCode: 400, Duration: 1234567, Error: "400", Excerpt: `{"error":"bad"}`},
		},
	}
	st = bridge.OrderState{Watermark: at, Targets: map[string]bridge.TargetState{
		"expertsender": {Status: "paid", DeliveryID: did2.String()},
		"http.crm":     {Status: "Paid", DeliveryID: ""},
	}}
	return id[:], ev, del, st
}

// Every field survives the binary form, ids come back from the key, and the
// records are as small as the size budget assumes.
func TestRecordRoundTrip(t *testing.T) {
	key, ev, del, st := sampleRecords(t)
	dkey, _ := idKey(del.ID)
	for _, c := range []struct {
		name     string
		key      []byte
		in, out  any
		maxBytes int
	}{
		{"event", key, &ev, &bridge.Event{}, 260},
		{"delivery", dkey, &del, &bridge.Delivery{}, 180},
		{"order", []byte("12345"), &st, &bridge.OrderState{}, 60},
		{"empty event", key, &bridge.Event{ID: idString(key)}, &bridge.Event{}, 12},
	} {
		raw, err := encodeRecord(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(raw) > c.maxBytes {
			t.Errorf("%s: %d bytes, want at most %d", c.name, len(raw), c.maxBytes)
		}
		if err := decodeRecord(c.key, raw, c.out); err != nil {
			t.Fatalf("%s: decode: %v", c.name, err)
		}
		if !reflect.DeepEqual(c.in, c.out) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", c.name, c.out, c.in)
		}
	}
}

// Records written as JSON by statusbridge/1 still decode.
func TestRecordReadsJSON(t *testing.T) {
	key, ev, del, st := sampleRecords(t)
	dkey, _ := idKey(del.ID)
	for _, c := range []struct {
		key     []byte
		in, out any
	}{{key, &ev, &bridge.Event{}}, {dkey, &del, &bridge.Delivery{}}, {nil, &st, &bridge.OrderState{}}} {
		raw, _ := json.Marshal(c.in)
		if err := decodeRecord(c.key, raw, c.out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.in, c.out) {
			t.Errorf("JSON record\n got %+v\nwant %+v", c.out, c.in)
		}
	}
}

// A damaged record is an error, never a panic or a huge allocation; whatever
// decodes re-encodes to a record that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	key, ev, del, st := sampleRecords(f)
	for _, v := range []any{&ev, &del, &st} {
		raw, _ := encodeRecord(v)
		f.Add(raw)
		f.Add(raw[:len(raw)/2])
	}
	f.Add([]byte{recordV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte(`{"id":1}`))
	if raw, err := encodeRecord(eventPayload{&ev, []byte("stored payload")}); err == nil {
		f.Add(raw)
	}
	ticket := del
	ticket.EventID, ticket.Kind, ticket.IntakeID, ticket.Status = "", bridge.KindTicket, del.ID, ""
	if raw, err := encodeRecord(&ticket); err == nil {
		f.Add(raw) // deliveryV3 (statusbridge/4)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, fresh := range []func() any{
			func() any { return &bridge.Event{} }, func() any { return &bridge.Delivery{} }, func() any { return &bridge.OrderState{} },
		} {
			v := fresh()
			if err := decodeRecord(key, raw, v); err != nil || raw[0] == '{' {
				continue
			}
			again, err := encodeRecord(v)
			if err != nil {
				t.Fatal(err)
			}
			w := fresh()
			if err := decodeRecord(key, again, w); err != nil {
				t.Fatalf("re-encoded %T does not decode: %v", v, err)
			}
			if !reflect.DeepEqual(v, w) {
				t.Fatalf("%T changed on re-encoding\n%+v\n%+v", v, v, w)
			}
		}
	})
}

func TestDecodeRecordRefusesDamage(t *testing.T) {
	key, ev, _, _ := sampleRecords(t)
	raw, _ := encodeRecord(&ev)
	for _, bad := range [][]byte{nil, {0x7f}, raw[:len(raw)-1], append(append([]byte{}, raw...), 0)} {
		var got bridge.Event
		if err := decodeRecord(key, bad, &got); !errors.Is(err, errCorrupt) {
			t.Errorf("decode %x: err %v, want errCorrupt", bad, err)
		}
	}
}

// A statusbridge/1 store (JSON records, 32-byte dedup keys, payloads
// compressed without the dictionary) is upgraded in place: everything in it
// reads back, repeats of its events are still duplicates, its deliveries
// finish, its orders' states still decide, and retention removes its records.
func TestOpenUpgradesSchema1Store(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	tb := backendtest.Table(t, "k")
	raw := fake.Update{TicketID: "t1", OrderID: "ORDER-7", StatusID: backendtest.Confirmed, DateStatus: "2026-01-13 16:29:51",
		Campaign: map[string]any{"note": string(make([]byte, 300))}}.Payload()
	in := backendtest.Incoming(t, raw)
	old := time.Date(2026, 1, 13, 16, 30, 0, 0, time.UTC)
	evID, delID := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	d := tb.Decide(in.Update, bridge.OrderState{}, bridge.DecideOptions{})
	ev := bridge.Event{ID: evID.String(), ReceivedAt: old, Name: in.Update.Name, TicketID: in.Update.TicketID, OrderID: "7",
		State: d.Outcome, Decisions: []bridge.Decision{d}, DeliveryIDs: []string{delID.String()}, DedupKey: in.Update.DedupKey[:]}
	del := bridge.Delivery{ID: delID.String(), EventID: ev.ID, OrderID: "7", Target: "expertsender", Status: "paid",
		StatusID: backendtest.Confirmed, CreatedAt: old, UpdatedAt: old, State: bridge.Pending}
	st := bridge.Advance(bridge.OrderState{Targets: map[string]bridge.TargetState{
		"expertsender": {Status: "paid", DeliveryID: del.ID}}}, d)
	plain, _ := zstd.NewWriter(nil)
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		put := func(bucket, k []byte, v any) {
			j, _ := json.Marshal(v)
			if err := tx.Bucket(bucket).Put(k, j); err != nil {
				t.Fatal(err)
			}
		}
		put(bucketEvents, evID[:], &ev)
		put(bucketDeliveries, delID[:], &del)
		put(bucketOrders, []byte("7"), &st)
		_ = tx.Bucket(bucketPending).Put(delID[:], nil)
		_ = tx.Bucket(bucketPayloads).Put(evID[:], plain.EncodeAll(raw, nil))
		_ = tx.Bucket(bucketDedup).Put(in.Update.DedupKey[:], evID[:])
		return tx.Bucket(bucketMeta).Put([]byte(metaSchemaKey), []byte(schemaVersion1))
	})
	if err != nil {
		t.Fatal(err)
	}
	bdb.Close()

	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	got, payload, err := db.GetEvent(context.Background(), ev.ID)
	if err != nil || got.OrderID != "7" || string(payload) != string(raw) {
		t.Fatalf("old event: %+v, payload equal %v, err %v", got, string(payload) == string(raw), err)
	}
	res, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, raw), tb)
	if err != nil || !res.Duplicate || res.EventID != ev.ID {
		t.Fatalf("repeat of an old event: %+v %v, want a duplicate of %s", res, err, ev.ID)
	}
	// Opened again, now as statusbridge/2, it still consults the old keys.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	if res, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, raw), tb); err != nil || !res.Duplicate || res.EventID != ev.ID {
		t.Fatalf("repeat of an old event after reopening: %+v %v, want a duplicate of %s", res, err, ev.ID)
	}
	pending, err := db.PendingAfter(context.Background(), "", 10)
	if err != nil || len(pending) != 1 || pending[0].ID != del.ID {
		t.Fatalf("old pending delivery: %+v %v", pending, err)
	}
	if err := db.Record(context.Background(), del.ID, bridge.AttemptResult{Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200}, State: bridge.Done}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if d, err := db.GetDelivery(context.Background(), del.ID); err != nil || d.State != bridge.Done || len(d.Attempts) != 1 {
		t.Fatalf("old delivery after its attempt: %+v %v", d, err)
	}
	// The same status again for the old order: its state says already sent.
	again := fake.Update{TicketID: "t2", OrderID: "ORDER-7", StatusID: backendtest.Confirmed, DateStatus: "2026-01-13 17:00:00"}.Payload()
	if res, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, again), tb); err != nil || res.State != bridge.EventUnchanged {
		t.Fatalf("new event on an old order: %+v %v, want unchanged", res, err)
	}
	if n, err := bridge.Sweep(context.Background(), db, old.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v, want the old event deleted", n, err)
	}
	if res, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, raw), tb); err != nil || res.Duplicate {
		t.Fatalf("after its event is swept, a repeat is new again: %+v %v", res, err)
	}
	var schema string
	_ = db.view(func(tx *bbolt.Tx) error {
		schema = string(tx.Bucket(bucketMeta).Get([]byte(metaSchemaKey)))
		return nil
	})
	if schema != schemaVersion {
		t.Errorf("schema %q after opening, want %q", schema, schemaVersion)
	}
}

// Payloads of any size come back byte for byte, whether or not they are
// compressed and whatever the encoder's window.
func TestPayloadCompressionRoundTrip(t *testing.T) {
	big := make([]byte, 300_000)
	for i := range big {
		big[i] = byte('a' + (i*7+i/1000)%26)
	}
	for _, raw := range [][]byte{[]byte(`{}`), fake.Update{TicketID: "t", OrderID: "1", StatusID: backendtest.Confirmed}.Payload(), big} {
		stored := compress(raw)
		back, err := decompress(stored)
		if err != nil || string(back) != string(raw) {
			t.Fatalf("%d bytes: round trip failed (%v)", len(raw), err)
		}
		if len(raw) > 1000 && len(stored) >= len(raw) {
			t.Errorf("%d bytes stored as %d: not compressed", len(raw), len(stored))
		}
	}
}

// An event written with its payload inline decodes to the same event, gives
// the payload back, and keeps it when the event is rewritten (a replay
// appending a decision) without the writer knowing about the payload.
func TestEventInlinePayload(t *testing.T) {
	key, ev, _, _ := sampleRecords(t)
	stored := compress(fake.Update{TicketID: "t", OrderID: "1", StatusID: backendtest.Confirmed,
		Campaign: map[string]any{"note": strings.Repeat("livraison rapide ", 30)}}.Payload())
	raw, err := encodeRecord(eventPayload{&ev, stored})
	if err != nil {
		t.Fatal(err)
	}
	if raw[0] != eventV2 {
		t.Fatalf("format %#x, want the inline-payload form", raw[0])
	}
	var got bridge.Event
	if err := decodeRecord(key, raw, &got); err != nil || !reflect.DeepEqual(got, ev) {
		t.Fatalf("decoded %+v (%v), want %+v", got, err, ev)
	}
	if p := inlinePayload(raw); string(p) != string(stored) {
		t.Fatalf("inline payload %d bytes, want %d", len(p), len(stored))
	}
	for _, cut := range []int{1, 2, len(raw) - len(stored) - 1} {
		var e bridge.Event
		if err := decodeRecord(key, raw[:cut], &e); err == nil {
			t.Errorf("record cut at %d decoded", cut)
		}
	}

	db, _ := openTemp(t)
	err = db.bolt.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if err := putRecord(b, key, eventPayload{&ev, stored}); err != nil {
			return err
		}
		var e bridge.Event
		if _, err := getRecord(b, key, &e); err != nil {
			return err
		}
		e.Decisions = append(e.Decisions, bridge.Decision{Outcome: bridge.EventDispatched, MappingVersion: "x"})
		return putRecord(b, key, &e)
	})
	if err != nil {
		t.Fatal(err)
	}
	got2, payload, err := db.GetEvent(context.Background(), ev.ID)
	if err != nil || len(got2.Decisions) != len(ev.Decisions)+1 {
		t.Fatalf("rewritten event: %+v %v", got2, err)
	}
	if want, _ := decompress(stored); string(payload) != string(want) {
		t.Fatalf("payload lost or changed by the rewrite: %d bytes, want %d", len(payload), len(want))
	}
}

// deliveryState reads the same state as a whole decode, from every form a
// delivery is stored in.
func TestDeliveryStateAlone(t *testing.T) {
	_, _, del, _ := sampleRecords(t)
	key, _ := idKey(del.ID)
	for _, state := range []bridge.DeliveryState{bridge.Pending, bridge.Done, bridge.Dead, bridge.Skipped, bridge.Superseded} {
		del.State = state
		j, _ := json.Marshal(&del)
		for name, raw := range map[string][]byte{"v2": encodeDelivery(&del), "v1": encodeDeliveryV1(&del), "json": j} {
			if got, err := deliveryState(key, raw); err != nil || got != state {
				t.Errorf("%s %s: %q %v", name, state, got, err)
			}
		}
	}
	if _, err := deliveryState(key, []byte{deliveryV2, 0x03}); err == nil {
		t.Error("a cut record: no error")
	}
}
