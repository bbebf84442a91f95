package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
	"github.com/statusbridge/statusbridge/mapping"
	"github.com/statusbridge/statusbridge/orders"
	"github.com/statusbridge/statusbridge/outbound"
)

// TestIntakeLoopOnPostgres runs the delivery worker on a PostgreSQL store:
// statuses queued before the order's intake wait behind its upsert, the
// ticket is created once and recorded, and a ticket a previous sender had
// claimed durably is dead with an unknown outcome for the next sender,
// never sent again.
func TestIntakeLoopOnPostgres(t *testing.T) {
	ds := fake.NewDigishare(t, "pat-1234")
	es := fake.NewServer(t)
	osys := fake.NewOrderSystem(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
order_id: { strip_prefix: "ORDER-" }
targets:
  expertsender: { base_url: %q, api_key: es-key-1234, orders: {} }
  digishare:
    base_url: %q
    token: pat-1234
    ticket: { type_ticket_id: npvrxamq9l94y8dz, ticket_status_id: x9q3wrlv0m7vzea8, invoice: { allowed_hosts: [127.0.0.1] } }
  order_system: { base_url: %q, phone_region: MA }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid } } }
`, es.URL, ds.URL+"/v1", osys.URL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDatabase(t)
	db := openDSN(t, dsn, Options{Name: "sender-1"})
	ctx := context.Background()
	table, plan := mapping.New(cfg), outbound.Plan(cfg)
	seed, err := os.ReadFile("../orders/testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	seed = []byte(strings.ReplaceAll(string(seed), "https://storage.googleapis.com/", osys.URL+"/invoices/"))
	take := func(raw []byte) bridge.IntakeResult {
		t.Helper()
		o, err := orders.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		res, err := bridge.TakeIntake(ctx, db, bridge.IncomingOrder{OrderID: o.ID, Key: o.Key, Raw: raw, Source: bridge.SourceHTTP,
			ReceivedAt: time.Now()}, plan, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	raw := fake.Update{TicketID: "tk-x", OrderID: "ORDER-44212809", StatusID: "yqdwrbka7kz69v8e", DateStatus: "2026-01-13 10:00:00"}.Payload()
	up, _ := digishare.Decode(raw)
	st, err := bridge.Ingest(ctx, db, bridge.Incoming{Raw: raw, Update: up, ReceivedAt: time.Now()}, table)
	if err != nil {
		t.Fatal(err)
	}
	res := take(seed)
	// A second order whose ticket a previous sender claimed durably before it died.
	other := take([]byte(strings.Replace(string(seed), `"orderId": "44212809"`, `"orderId": "44212810"`, 1)))
	var otherTicket bridge.Delivery
	for _, d := range other.Deliveries {
		if d.Kind == bridge.KindTicket {
			otherTicket = d
		}
	}
	gone := openDSN(t, dsn, Options{Name: "sender-0", ClaimLease: time.Millisecond})
	if err := gone.Claim(ctx, &otherTicket, true); err != nil {
		t.Fatal(err)
	}
	senders, pol := outbound.Build(cfg)
	pol.Initial, pol.Max = time.Millisecond, 10*time.Millisecond
	w := outbound.NewWorker(db, senders, pol, slog.New(slog.DiscardHandler))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	wait := func(id string, what string, ok func(*bridge.Delivery) bool) *bridge.Delivery {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			d, err := db.GetDelivery(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ok(d) {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("delivery %s (%s) is %s (%q), want %s", id, d.Kind, d.State, d.Reason, what)
			}
			es.WaitRequests(len(es.Requests())+1, 20*time.Millisecond) // woken by a request, or soon
		}
	}
	terminal := func(d *bridge.Delivery) bool { return d.State.Terminal() }
	for _, d := range res.Deliveries {
		if got := wait(d.ID, "done", terminal); got.State != bridge.Done {
			t.Errorf("%s delivery: %s (%q)", got.Kind, got.State, got.Reason)
		}
	}
	if got := wait(st.Deliveries[0].ID, "done", terminal); got.State != bridge.Done {
		t.Errorf("status delivery: %s (%q)", got.State, got.Reason)
	}
	var seq []string
	for _, r := range es.Requests() {
		if strings.Contains(string(r.Body), "44212809") {
			seq = append(seq, r.Method+" "+r.Path)
		}
	}
	if strings.Join(seq, ",") != "POST /orders,PUT /orders/status" {
		t.Errorf("ExpertSender got %v for the order, want the POST before the PUT queued before it", seq)
	}
	d := wait(otherTicket.ID, "dead", terminal)
	if d.State != bridge.Dead || d.Result != bridge.ResultOutcomeUnknown || !strings.Contains(d.Reason, "ORDER-44212810") {
		t.Errorf("the ticket a previous sender claimed durably: %s %q %q", d.State, d.Result, d.Reason)
	}
	if ds.TicketsFor("ORDER-44212809") != 1 || ds.TicketsFor("ORDER-44212810") != 0 {
		t.Errorf("tickets created: %v", ds.TicketCounts())
	}
	var rec *bridge.OrderIntake
	if err := db.View(ctx, func(tx bridge.Tx) error { rec, err = tx.OrderIntake("44212809"); return err }); err != nil {
		t.Fatal(err)
	}
	if rec.Ticket == nil || rec.Ticket.ID != "tk-1" || rec.MediaID == "" {
		t.Errorf("order intake record %+v", rec)
	}
}
