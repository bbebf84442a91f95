package mapping

import (
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
)

func TestChanged(t *testing.T) {
	paid := []bridge.Planned{{Target: "expertsender", Status: "paid"}}
	done := []bridge.Planned{{Target: "expertsender", Status: "completed"}}
	sent := []bridge.Delivery{{Target: "expertsender", Status: "paid"}}
	for _, tc := range []struct {
		name      string
		old, cand bridge.Decision
		ds        []bridge.Delivery
		want      bool
	}{
		{"same dispatch", bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: paid}, bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: paid}, sent, false},
		{"other status", bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: paid}, bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: done}, sent, true},
		{"unchanged counts as dispatched", bridge.Decision{Outcome: bridge.EventUnchanged}, bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: paid}, nil, false},
		{"unmapped becomes dispatched", bridge.Decision{Outcome: bridge.EventUnmapped}, bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: paid}, nil, true},
		{"dispatched becomes unmapped", bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: paid}, bridge.Decision{Outcome: bridge.EventUnmapped}, sent, true},
		{"superseded, other status than its event sent", bridge.Decision{Outcome: bridge.EventSuperseded}, bridge.Decision{Outcome: bridge.EventDispatched, Deliveries: done}, sent, true},
	} {
		if got := Changed(tc.old, tc.cand, tc.ds); got != tc.want {
			t.Errorf("%s: Changed = %v, want %v", tc.name, got, tc.want)
		}
	}
	if s := Sends(bridge.Decision{Deliveries: append(done, bridge.Planned{Target: "a", Status: "x"})}, nil); s != "(a=x, expertsender=completed)" {
		t.Errorf("Sends = %q", s)
	}
}
