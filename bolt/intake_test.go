package bolt

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// TestDeliveryKindsRoundTrip: a ticket delivery is a deliveryV3 record that
// reads back whole; a status delivery stays deliveryV2 (no byte more) and
// reads back with kind status.
func TestDeliveryKindsRoundTrip(t *testing.T) {
	_, _, del, _ := sampleRecords(t)
	status := encodeDelivery(&del)
	if status[0] != deliveryV2 {
		t.Errorf("a status delivery is written as format %#x, want deliveryV2", status[0])
	}
	tk := del
	tk.EventID, tk.Kind, tk.IntakeID, tk.Status, tk.Result = "", bridge.KindTicket, "01a233bf-46b0-7dd9-8a09-5e0ff7b564c8", "", bridge.ResultOutcomeUnknown
	raw := encodeDelivery(&tk)
	if raw[0] != deliveryV3 {
		t.Fatalf("a ticket delivery is written as format %#x, want deliveryV3", raw[0])
	}
	key, _ := idKey(tk.ID)
	var got bridge.Delivery
	if err := decodeRecord(key, raw, &got); err != nil || !reflect.DeepEqual(got, tk) {
		t.Errorf("round trip: %v\n got %+v\nwant %+v", err, got, tk)
	}
	var old bridge.Delivery
	if err := decodeRecord(key, encodeDeliveryV1(&del), &old); err != nil || old.Kind != bridge.KindStatus {
		t.Errorf("a v1 delivery reads as kind %q (%v), want status", old.Kind, err)
	}
}

// TestIntakeRecordsKeepTheRawBody: an intake's body is kept byte for byte,
// also when the intake is rewritten without it; a damaged record is an error.
func TestIntakeRecordsKeepTheRawBody(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "sb.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw := []byte("{ \"orderId\" :\t\"7\", \"x\": [1, 2.50] }\n")
	id, _ := bridge.NewID()
	in := &bridge.Intake{ID: id, OrderID: "7", ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), State: bridge.IntakeNew,
		Source: bridge.SourceAdmin, Key: bytes.Repeat([]byte{7}, 32)}
	ctx := context.Background()
	err = db.Update(ctx, bridge.UpdateOptions{}, func(tx bridge.Tx) error {
		if err := tx.PutIntake(in, db.StoredPayload(raw)); err != nil {
			return err
		}
		in.DeliveryIDs = []string{id}
		return tx.PutIntake(in, nil) // rewritten: the body stays
	})
	if err != nil {
		t.Fatal(err)
	}
	got, body, err := db.GetIntake(ctx, id)
	if err != nil || !bytes.Equal(body, raw) || !reflect.DeepEqual(got, in) {
		t.Errorf("GetIntake = %+v %q %v, want %+v %q", got, body, err, in, raw)
	}
	if _, _, err := db.GetIntake(ctx, "01a233bf-46b0-7dd9-8a09-5e0ff7b564c8"); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("missing intake: %v", err)
	}
	var x bridge.Intake
	for _, bad := range [][]byte{{intakeV1}, {intakeV1, 0xff}, {0x09, 1, '{'}, {intakeV1, 2, '{', '!'}} {
		if err := decodeIntake(make([]byte, 16), bad, &x); err == nil {
			t.Errorf("damaged intake %x decoded", bad)
		}
	}
	var rec bridge.OrderIntake
	if err := decodeOrderIntake([]byte{0x09, '{', '}'}, &rec); err == nil {
		t.Error("an order intake of an unknown format decoded")
	}
}

// TestDurableClaimLeftAtStartIsClaimed: a durable claim committed before a
// crash shows as Claimed after a reopen; one this process holds does not.
func TestDurableClaimLeftAtStartIsClaimed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := bridge.TakeIntake(ctx, db, bridge.IncomingOrder{OrderID: "9", Key: [32]byte{1}, Raw: []byte(`{"orderId":"9","a":1}`),
		Source: bridge.SourceHTTP, ReceivedAt: time.Now()}, bridge.IntakePlan{Ticket: bridge.Step{On: true}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d := res.Deliveries[0]
	if err := db.Claim(ctx, &d, false); err != nil {
		t.Fatal(err)
	}
	if err := db.Claim(ctx, &d, false); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Errorf("a second claim: %v, want refused", err)
	}
	if err := db.Claim(ctx, &d, true); err != nil { // made durable before the request goes out
		t.Fatal(err)
	}
	if p, _ := db.PendingAfter(ctx, "", 10); len(p) != 1 || p[0].Claimed {
		t.Errorf("pending while this process holds the claim: %+v", p)
	}
	db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := db.PendingAfter(ctx, "", 10)
	if err != nil || len(p) != 1 || !p[0].Claimed {
		t.Fatalf("pending after the crash: %+v, %v; want it Claimed", p, err)
	}
	if err := db.Claim(ctx, &p[0], false); err != nil {
		t.Fatal(err)
	}
	if err := db.Record(ctx, d.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "outcome unknown", Result: bridge.ResultOutcomeUnknown}, time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = db.view(func(tx *bbolt.Tx) error {
		if k, _ := idKey(d.ID); tx.Bucket(bucketClaims).Get(k) != nil {
			t.Error("the durable claim outlived its record")
		}
		return nil
	})
}

// TestSchema3StoreIsUpgraded: a statusbridge/3 store (without the intake
// buckets) reads in read-only mode (no intakes) and is upgraded in place to
// statusbridge/4 when opened for writing.
func TestSchema3StoreIsUpgraded(t *testing.T) {
	_, _, del, _ := sampleRecords(t)
	path := filepath.Join(t.TempDir(), "v3.db")
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if bytes.Equal(b, bucketIntakes) || bytes.Equal(b, bucketOrderIntakes) {
				continue
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		k, _ := idKey(del.ID)
		if err := tx.Bucket(bucketDeliveries).Put(k, encodeDelivery(&del)); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte(metaSchemaKey), []byte(schemaVersion3))
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if rows, _, err := ro.ListIntakes(ctx, bridge.IntakeFilter{}); err != nil || len(rows) != 0 {
		t.Errorf("read-only /3 store: ListIntakes = %v, %v", rows, err)
	}
	if _, _, err := ro.GetIntake(ctx, del.ID); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("read-only /3 store: GetIntake = %v", err)
	}
	if _, err := bridge.Order(ctx, ro, "12345"); err != nil {
		t.Errorf("read-only /3 store: the order view of an order with a delivery: %v", err)
	}
	ro.Close()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var schema string
	_ = db.view(func(tx *bbolt.Tx) error {
		schema = string(tx.Bucket(bucketMeta).Get([]byte(metaSchemaKey)))
		return nil
	})
	if schema != schemaVersion {
		t.Errorf("schema after opening %q, want %q", schema, schemaVersion)
	}
	if d, err := db.GetDelivery(ctx, del.ID); err != nil || d.Kind != bridge.KindStatus || d.Status != del.Status {
		t.Errorf("the /3 delivery after the upgrade: %+v, %v", d, err)
	}
	if _, err := bridge.TakeIntake(ctx, db, bridge.IncomingOrder{OrderID: "1", Key: [32]byte{2}, Raw: []byte(`{"orderId":"1","b":2}`),
		Source: bridge.SourceHTTP, ReceivedAt: time.Now()}, bridge.IntakePlan{}, time.Now()); err != nil {
		t.Errorf("an intake after the upgrade: %v", err)
	}
}
