package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// encodeDeliveryV1 is the delivery layout of statusbridge/2 (format byte
// 0x01), as old stores hold it.
func encodeDeliveryV1(x *bridge.Delivery) []byte {
	e := encoder{}
	e.b = append(e.b, recordV1)
	e.id(x.EventID)
	e.str(x.OrderID)
	e.str(x.Target)
	e.str(x.Status)
	e.str(x.StatusID)
	e.time(x.CreatedAt)
	e.str(string(x.State))
	e.str(x.Reason)
	e.str(x.Result)
	e.bool(x.Force)
	e.time(x.NextAttemptAt)
	e.time(x.UpdatedAt)
	e.uint(uint64(len(x.Attempts)))
	for _, a := range x.Attempts {
		e.time(a.At)
		e.uint(uint64(max(a.StatusCode, 0)))
		e.int(int64(a.Duration))
		e.str(a.Error)
		e.str(a.Excerpt)
	}
	return e.b
}

// TestDeliveryV2CarriesRequestsAndRetryLinks: the request each attempt sent
// and the retry links survive the record, compactly, and a delivery written
// by statusbridge/2 still reads.
func TestDeliveryV2CarriesRequestsAndRetryLinks(t *testing.T) {
	_, _, del, _ := sampleRecords(t)
	dkey, _ := idKey(del.ID)
	old := del
	old.Attempts = append([]bridge.Attempt(nil), del.Attempts...)
	del.Attempts = append([]bridge.Attempt(nil), del.Attempts...)
	oldRaw := encodeDeliveryV1(&old)
	del.RetryOf, del.ResolvedBy = del.EventID, del.EventID
	del.Attempts[1].Request = &bridge.SentRequest{Method: "PUT", URL: "https://api.ecdp.app/orders/status",
		Headers: map[string]string{"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "statusbridge", "X-Api-Key": redacted},
		Body:    `{"orderId":"12345","orderStatus":"paid","websiteId":7}`}
	del.Attempts[0].Request = &bridge.SentRequest{Method: "POST", URL: "https://crm.example.com/x", Body: strings.Repeat("é", 2048), BodySize: 9000}
	raw := encodeDelivery(&del)
	var got bridge.Delivery
	if err := decodeRecord(dkey, raw, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, del) {
		t.Errorf("round trip\n got %+v\nwant %+v", got, del)
	}
	withoutBig := del
	withoutBig.Attempts = []bridge.Attempt{del.Attempts[1]}
	small := encodeDelivery(&withoutBig)
	withoutBig.Attempts[0].Request = nil
	if cost := len(small) - len(encodeDelivery(&withoutBig)); cost > 110 {
		t.Errorf("an ExpertSender request costs %d bytes in the record, want at most 110", cost)
	}
	var fromV1 bridge.Delivery
	if err := decodeRecord(dkey, oldRaw, &fromV1); err != nil || !reflect.DeepEqual(fromV1, old) {
		t.Errorf("statusbridge/2 delivery: %+v %v, want %+v", fromV1, err, old)
	}
	for _, bad := range [][]byte{raw[:len(raw)-1], append(append([]byte{}, raw...), 0)} {
		if err := decodeRecord(dkey, bad, &got); !errors.Is(err, errCorrupt) {
			t.Errorf("damaged record: %v, want errCorrupt", err)
		}
	}
}

// TestOpenUpgradesSchema2AndRefusesUnknown: a statusbridge/2 store opens,
// is marked /3 and its old deliveries still read; a store of a version this
// build does not know is refused, as a /2 build refuses a /3 store.
func TestOpenUpgradesSchema2AndRefusesUnknown(t *testing.T) {
	_, _, del, _ := sampleRecords(t)
	dkey, _ := idKey(del.ID)
	for _, c := range []struct {
		schema string
		ok     bool
	}{{schemaVersion2, true}, {schemaVersion3, true}, {schemaVersion4, true}, {"statusbridge/6", false}} {
		path := filepath.Join(t.TempDir(), "old.db")
		bdb, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = bdb.Update(func(tx *bbolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketDeliveries).Put(dkey, encodeDeliveryV1(&del)); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put([]byte(metaSchemaKey), []byte(c.schema))
		})
		bdb.Close()
		if err != nil {
			t.Fatal(err)
		}
		db, err := Open(path, Options{})
		if !c.ok {
			if !errors.Is(err, ErrForeign) {
				t.Errorf("%s store: %v, want it refused", c.schema, err)
			}
			if err == nil {
				db.Close()
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s store: %v", c.schema, err)
		}
		got, err := db.GetDelivery(context.Background(), del.ID)
		if err != nil || got.Status != del.Status || len(got.Attempts) != 2 {
			t.Errorf("old delivery: %+v %v", got, err)
		}
		var schema string
		_ = db.view(func(tx *bbolt.Tx) error {
			schema = string(tx.Bucket(bucketMeta).Get([]byte(metaSchemaKey)))
			return nil
		})
		if schema != schemaVersion {
			t.Errorf("schema after open: %q, want %q", schema, schemaVersion)
		}
		if err := db.Record(context.Background(), del.ID, bridge.AttemptResult{State: bridge.Dead, Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 400,
			Request: &bridge.SentRequest{Method: "PUT", URL: "http://x/"}}}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got, err := db.GetDelivery(context.Background(), del.ID); err != nil || len(got.Attempts) != 3 || got.Attempts[2].Request == nil {
			t.Errorf("rewritten old delivery: %+v %v", got, err)
		}
		db.Close()
	}
}
