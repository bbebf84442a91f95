package mapping

import (
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
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

func event(t *testing.T, u fake.Update) *digishare.Update {
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
	live := func(status string) bridge.OrderState {
		return bridge.OrderState{Targets: map[string]bridge.TargetState{TargetExpertSender: {Status: status, DeliveryID: "d", Live: true}}}
	}
	base := fake.Update{TicketID: "t1", OrderID: "ORDER-42", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}
	with := func(f func(*fake.Update)) fake.Update { u := base; f(&u); return u }

	cases := []struct {
		name  string
		tb    *Table
		u     fake.Update
		st    bridge.OrderState
		opt   bridge.DecideOptions
		want  bridge.EventState
		sends []bridge.Planned
	}{
		{"dispatched", tb, base, bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventDispatched, []bridge.Planned{{Target: TargetExpertSender, Status: "paid", Skip: ""}}},
		{"no status change", tb, with(func(u *fake.Update) { u.StatusID = "" }), bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventNoStatusChange, nil},
		{"ignored ticket type", typed, base, bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventIgnored, nil},
		{"no_status_change before ignored", typed, with(func(u *fake.Update) { u.StatusID = "" }), bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventNoStatusChange, nil},
		{"unmapped", tb, with(func(u *fake.Update) { u.StatusID = "unknown000000000" }), bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventUnmapped, nil},
		{"unmapped before no_order_id", tb, with(func(u *fake.Update) { u.StatusID = "unknown000000000"; u.OrderID = "" }), bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventUnmapped, nil},
		{"no order id", tb, with(func(u *fake.Update) { u.OrderID = "" }), bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventNoOrderID, nil},
		{"prefix only is no order id", tb, with(func(u *fake.Update) { u.OrderID = "ORDER-" }), bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventNoOrderID, nil},
		{"campaign_data key missing", fromCampaign, base, bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventNoOrderID, nil},
		{"no action: entry names no target", tb, with(func(u *fake.Update) { u.StatusID = nameOnly }), bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventNoAction, nil},
		{"no action: target not configured", noTargets, base, bridge.OrderState{}, bridge.DecideOptions{}, bridge.EventNoAction, nil},
		{"superseded by newer watermark", tb, base, bridge.OrderState{Watermark: ts("2026-01-13 16:30:00")}, bridge.DecideOptions{}, bridge.EventSuperseded, nil},
		{"equal timestamp is not superseded", tb, base, bridge.OrderState{Watermark: ts("2026-01-13 16:29:51")}, bridge.DecideOptions{}, bridge.EventDispatched, []bridge.Planned{{Target: TargetExpertSender, Status: "paid", Skip: ""}}},
		{"no timestamp is never superseded", tb, with(func(u *fake.Update) { u.DateStatus = "" }), bridge.OrderState{Watermark: ts("2030-01-01 00:00:00")}, bridge.DecideOptions{}, bridge.EventDispatched, []bridge.Planned{{Target: TargetExpertSender, Status: "paid", Skip: ""}}},
		{"force overrides superseded", tb, base, bridge.OrderState{Watermark: ts("2026-01-13 16:30:00")}, bridge.DecideOptions{Force: true}, bridge.EventDispatched, []bridge.Planned{{Target: TargetExpertSender, Status: "paid", Skip: ""}}},
		{"unchanged: same status live", tb, base, live("paid"), bridge.DecideOptions{}, bridge.EventUnchanged, nil},
		{"dead or skipped last delivery is retried", tb, base, bridge.OrderState{Targets: map[string]bridge.TargetState{TargetExpertSender: {Status: "paid", Live: false}}}, bridge.DecideOptions{}, bridge.EventDispatched, []bridge.Planned{{Target: TargetExpertSender, Status: "paid", Skip: ""}}},
		{"different status dispatches", tb, with(func(u *fake.Update) { u.StatusID = awaiting }), live("paid"), bridge.DecideOptions{}, bridge.EventDispatched, []bridge.Planned{{Target: TargetExpertSender, Status: "placed", Skip: ""}}},
		{"force overrides unchanged", tb, base, live("paid"), bridge.DecideOptions{Force: true}, bridge.EventDispatched, []bridge.Planned{{Target: TargetExpertSender, Status: "paid", Skip: ""}}},
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
	d := tb.Decide(event(t, fake.Update{TicketID: "t", OrderID: "ORDER-42", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}), bridge.OrderState{}, bridge.DecideOptions{})
	if d.OrderID != "42" || d.StatusName != "Order Confirmed" || d.ChangedAtText != "2026-01-13 16:29:51" {
		t.Errorf("decision = %+v", d)
	}
	other, _ := digishare.Decode([]byte(`{"event":"ticket.created","data":{"id":"t","data":{"external_id":"1"},"changes":{"ticket_status_id":"yqdwrbka7kz69v8e"}}}`))
	if d := tb.Decide(other, bridge.OrderState{}, bridge.DecideOptions{}); d.Outcome != bridge.EventIgnored {
		t.Errorf("ticket.created = %v, want ignored", d.Outcome)
	}
	disabled := table(t, func(c *config.Config) { c.Targets.ExpertSender.APIKey = "" })
	d = disabled.Decide(event(t, fake.Update{TicketID: "t", OrderID: "1", StatusID: confirmed}), bridge.OrderState{}, bridge.DecideOptions{})
	if d.Outcome != bridge.EventDispatched || d.Deliveries[0].Skip == "" {
		t.Errorf("disabled target: %+v, want dispatched with a skip reason", d)
	}
}

func TestAdvance(t *testing.T) {
	older, newer := ts("2026-01-01 00:00:00"), ts("2026-02-01 00:00:00")
	st := bridge.OrderState{Watermark: older}
	if got := bridge.Advance(st, bridge.Decision{Outcome: bridge.EventDispatched, ChangedAt: newer}); !got.Watermark.Equal(newer) {
		t.Errorf("dispatched newer: watermark = %v", got.Watermark)
	}
	if got := bridge.Advance(st, bridge.Decision{Outcome: bridge.EventUnchanged, ChangedAt: newer}); !got.Watermark.Equal(newer) {
		t.Errorf("unchanged newer: watermark = %v", got.Watermark)
	}
	if got := bridge.Advance(bridge.OrderState{Watermark: newer}, bridge.Decision{Outcome: bridge.EventDispatched, ChangedAt: older}); !got.Watermark.Equal(newer) {
		t.Errorf("forced older update moved the watermark back: %v", got.Watermark)
	}
	if got := bridge.Advance(st, bridge.Decision{Outcome: bridge.EventDispatched}); !got.Watermark.Equal(older) {
		t.Errorf("no timestamp moved the watermark: %v", got.Watermark)
	}
	if got := bridge.Advance(st, bridge.Decision{Outcome: bridge.EventUnmapped, ChangedAt: newer}); !got.Watermark.Equal(older) {
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
