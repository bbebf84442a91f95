package postgres

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
)

// TestCopyIntakesFromBolt: a bbolt store's intakes (raw bodies), order
// intake records (ticket, media id) and intake deliveries reach PostgreSQL
// whole, and a durable claim of a ticket stays one: the next sender finds it
// Claimed.
func TestCopyIntakesFromBolt(t *testing.T) {
	ctx := context.Background()
	src, err := bolt.Open(filepath.Join(t.TempDir(), "sb.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	done := backendtest.Take(t, src, backendtest.Order("A", `"total": 1.50`), backendtest.FullPlan)
	var ticketA bridge.Delivery
	for _, d := range done.Deliveries {
		if d.Kind == bridge.KindTicket {
			ticketA = d
		}
	}
	if err := bridge.RecordMediaID(ctx, src, "A", "media-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.RecordWith(ctx, src, ticketA.ID, bridge.AttemptResult{State: bridge.Done, Result: "ticket tk-1 created"},
		bridge.Outcome{Ticket: &bridge.Ticket{ID: "tk-1", Number: "1", MediaID: "media-1"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	sent := backendtest.Take(t, src, backendtest.Order("B", `"total": 2`), backendtest.FullPlan)
	var ticketB bridge.Delivery
	for _, d := range sent.Deliveries {
		if d.Kind == bridge.KindTicket {
			ticketB = d
		}
	}
	if err := src.Claim(ctx, &ticketB, true); err != nil { // sent, then the process stopped
		t.Fatal(err)
	}
	backendtest.Take(t, src, backendtest.Order("C", ""), backendtest.FullPlan)

	dst, _ := openTemp(t, Options{Name: "next-sender"})
	var deliveries []bridge.Delivery
	if err := bridge.EachDelivery(ctx, src, bridge.DeliveryFilter{IncludeResolved: true}, func(d *bridge.Delivery) {
		deliveries = append(deliveries, *d)
	}); err != nil {
		t.Fatal(err)
	}
	err = dst.Update(ctx, bridge.UpdateOptions{}, func(tx bridge.Tx) error {
		for i := len(deliveries) - 1; i >= 0; i-- { // commit order
			d := deliveries[i]
			if d.State == bridge.InFlight {
				d.State = bridge.Pending
			}
			if err := tx.PutDelivery(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var intakes []CopiedIntake
	var recs []bridge.OrderIntake
	if err := src.EachIntake(func(in *bridge.Intake, stored []byte) error {
		intakes = append(intakes, CopiedIntake{Intake: *in, Stored: stored})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := src.EachOrderIntake(func(rec *bridge.OrderIntake) error { recs = append(recs, *rec); return nil }); err != nil {
		t.Fatal(err)
	}
	claims, err := src.DurableClaims()
	if err != nil || len(claims) != 1 {
		t.Fatalf("durable claims %v %v", claims, err)
	}
	if err := dst.CopyIntakes(ctx, intakes, recs, claims); err != nil {
		t.Fatal(err)
	}
	n, o, c, err := dst.IntakeCounts(ctx)
	if err != nil || n != 3 || o != 3 || c != 1 {
		t.Errorf("counts %d intakes, %d orders, %d claims (%v); want 3, 3, 1", n, o, c, err)
	}
	for _, in := range intakes {
		got, raw, err := dst.GetIntake(ctx, in.Intake.ID)
		_, want, _ := src.GetIntake(ctx, in.Intake.ID)
		in.Intake.ReceivedAt = in.Intake.ReceivedAt.Truncate(time.Microsecond) // PostgreSQL's precision
		if err != nil || string(raw) != string(want) || !reflect.DeepEqual(*got, in.Intake) {
			t.Errorf("intake %s: %+v %q %v, want %+v %q", in.Intake.ID, got, raw, err, in.Intake, want)
		}
	}
	for _, rec := range recs {
		var got *bridge.OrderIntake
		if err := dst.View(ctx, func(tx bridge.Tx) error { got, err = tx.OrderIntake(rec.OrderID); return err }); err != nil {
			t.Fatal(err)
		}
		if rec.Ticket != nil {
			rec.Ticket.CreatedAt = rec.Ticket.CreatedAt.UTC()
			got.Ticket.CreatedAt = got.Ticket.CreatedAt.UTC()
		}
		if !reflect.DeepEqual(*got, rec) {
			t.Errorf("order %s:\n got %+v\nwant %+v", rec.OrderID, got, rec)
		}
	}
	p, err := dst.PendingAfter(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p {
		if (d.ID == ticketB.ID) != d.Claimed {
			t.Errorf("delivery %s (%s) Claimed %v after the copy", d.ID, d.Kind, d.Claimed)
		}
	}
}
