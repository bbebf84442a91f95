package mapping

import (
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
)

const (
	confirmed = "yqdwrbka7kz69v8e"
	awaiting  = "x9q3wrlv0m7vzea8"
	nameOnly  = "nameonly00000000"
)

func table(t *testing.T, mutate func(*config.Config)) *Table {
	t.Helper()
	cfg, err := config.Parse([]byte(`
order_id: { from: external_id, strip_prefix: "ORDER-" }
targets: { expertsender: { api_key: k } }
mapping:
  statuses:
    x9q3wrlv0m7vzea8: { name: Awaiting confirmation, expertsender: placed }
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
    nameonly00000000: { name: Just a name }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	return New(cfg)
}

func event(t *testing.T, u fake.Update) *digishare.Event {
	t.Helper()
	ev, err := digishare.Decode(u.Payload())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func ts(s string) time.Time {
	t, err := digishare.ParseTime(s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDecide(t *testing.T) {
	tb := table(t, nil)
	typed := table(t, func(c *config.Config) { c.Mapping.TicketTypes = []string{"othertype0000000"} })
	noTargets := table(t, func(c *config.Config) { c.Targets.ExpertSender = nil })
	fromCampaign := table(t, func(c *config.Config) { c.OrderID.From = "campaign_data.order_ref" })
	live := func(status string) OrderState {
		return OrderState{Targets: map[string]TargetState{TargetExpertSender: {Status: status, DeliveryID: "d", Live: true}}}
	}
	base := fake.Update{TicketID: "t1", OrderID: "ORDER-42", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}
	with := func(f func(*fake.Update)) fake.Update { u := base; f(&u); return u }

	cases := []struct {
		name  string
		tb    *Table
		u     fake.Update
		st    OrderState
		opt   Options
		want  Outcome
		sends []Planned
	}{
		{"dispatched", tb, base, OrderState{}, Options{}, Dispatched, []Planned{{TargetExpertSender, "paid", ""}}},
		{"no status change", tb, with(func(u *fake.Update) { u.StatusID = "" }), OrderState{}, Options{}, NoStatusChange, nil},
		{"ignored ticket type", typed, base, OrderState{}, Options{}, Ignored, nil},
		{"no_status_change before ignored", typed, with(func(u *fake.Update) { u.StatusID = "" }), OrderState{}, Options{}, NoStatusChange, nil},
		{"unmapped", tb, with(func(u *fake.Update) { u.StatusID = "unknown000000000" }), OrderState{}, Options{}, Unmapped, nil},
		{"unmapped before no_order_id", tb, with(func(u *fake.Update) { u.StatusID = "unknown000000000"; u.OrderID = "" }), OrderState{}, Options{}, Unmapped, nil},
		{"no order id", tb, with(func(u *fake.Update) { u.OrderID = "" }), OrderState{}, Options{}, NoOrderID, nil},
		{"prefix only is no order id", tb, with(func(u *fake.Update) { u.OrderID = "ORDER-" }), OrderState{}, Options{}, NoOrderID, nil},
		{"campaign_data key missing", fromCampaign, base, OrderState{}, Options{}, NoOrderID, nil},
		{"no action: entry names no target", tb, with(func(u *fake.Update) { u.StatusID = nameOnly }), OrderState{}, Options{}, NoAction, nil},
		{"no action: target not configured", noTargets, base, OrderState{}, Options{}, NoAction, nil},
		{"superseded by newer watermark", tb, base, OrderState{Watermark: ts("2026-01-13 16:30:00")}, Options{}, Superseded, nil},
		{"equal timestamp is not superseded", tb, base, OrderState{Watermark: ts("2026-01-13 16:29:51")}, Options{}, Dispatched, []Planned{{TargetExpertSender, "paid", ""}}},
		{"no timestamp is never superseded", tb, with(func(u *fake.Update) { u.DateStatus = "" }), OrderState{Watermark: ts("2030-01-01 00:00:00")}, Options{}, Dispatched, []Planned{{TargetExpertSender, "paid", ""}}},
		{"force overrides superseded", tb, base, OrderState{Watermark: ts("2026-01-13 16:30:00")}, Options{Force: true}, Dispatched, []Planned{{TargetExpertSender, "paid", ""}}},
		{"unchanged: same status live", tb, base, live("paid"), Options{}, Unchanged, nil},
		{"dead or skipped last delivery is retried", tb, base, OrderState{Targets: map[string]TargetState{TargetExpertSender: {Status: "paid", Live: false}}}, Options{}, Dispatched, []Planned{{TargetExpertSender, "paid", ""}}},
		{"different status dispatches", tb, with(func(u *fake.Update) { u.StatusID = awaiting }), live("paid"), Options{}, Dispatched, []Planned{{TargetExpertSender, "placed", ""}}},
		{"force overrides unchanged", tb, base, live("paid"), Options{Force: true}, Dispatched, []Planned{{TargetExpertSender, "paid", ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.tb.Decide(event(t, c.u), c.st, c.opt)
			if d.Outcome != c.want {
				t.Fatalf("Decide(%s) = %v (%s), want %v", c.name, d.Outcome, d.Reason, c.want)
			}
			if len(d.Deliveries) != len(c.sends) {
				t.Fatalf("deliveries = %v, want %v", d.Deliveries, c.sends)
			}
			for i := range c.sends {
				if d.Deliveries[i] != c.sends[i] {
					t.Errorf("delivery %d = %v, want %v", i, d.Deliveries[i], c.sends[i])
				}
			}
			if d.MappingVersion != c.tb.Version() || len(d.MappingVersion) != 12 {
				t.Errorf("mapping version = %q", d.MappingVersion)
			}
		})
	}
}

func TestDecideDetails(t *testing.T) {
	tb := table(t, nil)
	d := tb.Decide(event(t, fake.Update{TicketID: "t", OrderID: "ORDER-42", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}), OrderState{}, Options{})
	if d.OrderID != "42" || d.StatusName != "Order Confirmed" || d.ChangedAtText != "2026-01-13 16:29:51" {
		t.Errorf("decision = %+v", d)
	}
	other, _ := digishare.Decode([]byte(`{"event":"ticket.created","data":{"id":"t","data":{"external_id":"1"},"changes":{"ticket_status_id":"yqdwrbka7kz69v8e"}}}`))
	if d := tb.Decide(other, OrderState{}, Options{}); d.Outcome != Ignored {
		t.Errorf("ticket.created = %v, want ignored", d.Outcome)
	}
	disabled := table(t, func(c *config.Config) { c.Targets.ExpertSender.APIKey = "" })
	d = disabled.Decide(event(t, fake.Update{TicketID: "t", OrderID: "1", StatusID: confirmed}), OrderState{}, Options{})
	if d.Outcome != Dispatched || d.Deliveries[0].Skip == "" {
		t.Errorf("disabled target: %+v, want dispatched with a skip reason", d)
	}
}

func TestAdvance(t *testing.T) {
	older, newer := ts("2026-01-01 00:00:00"), ts("2026-02-01 00:00:00")
	st := OrderState{Watermark: older}
	if got := Advance(st, Decision{Outcome: Dispatched, ChangedAt: newer}); !got.Watermark.Equal(newer) {
		t.Errorf("dispatched newer: watermark = %v", got.Watermark)
	}
	if got := Advance(st, Decision{Outcome: Unchanged, ChangedAt: newer}); !got.Watermark.Equal(newer) {
		t.Errorf("unchanged newer: watermark = %v", got.Watermark)
	}
	if got := Advance(OrderState{Watermark: newer}, Decision{Outcome: Dispatched, ChangedAt: older}); !got.Watermark.Equal(newer) {
		t.Errorf("forced older update moved the watermark back: %v", got.Watermark)
	}
	if got := Advance(st, Decision{Outcome: Dispatched}); !got.Watermark.Equal(older) {
		t.Errorf("no timestamp moved the watermark: %v", got.Watermark)
	}
	if got := Advance(st, Decision{Outcome: Unmapped, ChangedAt: newer}); !got.Watermark.Equal(older) {
		t.Errorf("unmapped moved the watermark: %v", got.Watermark)
	}
}

func TestVersionChangesWithMapping(t *testing.T) {
	a := table(t, nil)
	b := table(t, func(c *config.Config) {
		c.Mapping.Statuses["new00000000000000"] = config.Status{Name: "n", ExpertSender: "x"}
	})
	if a.Version() == b.Version() {
		t.Error("a different mapping must have a different version")
	}
	if a.Version() != table(t, nil).Version() {
		t.Error("the same mapping must have the same version")
	}
}
