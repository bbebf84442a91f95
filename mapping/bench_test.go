package mapping

import (
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
)

func BenchmarkDecide(b *testing.B) {
	tb := table(&testing.T{}, nil)
	ev, err := digishare.Decode(fake.Update{TicketID: "t", OrderID: "ORDER-42", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}.Payload())
	if err != nil {
		b.Fatal(err)
	}
	st := bridge.OrderState{Targets: map[string]bridge.TargetState{TargetExpertSender: {Status: "placed", DeliveryID: "d", Live: true}}}
	b.ReportAllocs()
	for b.Loop() {
		if d := tb.Decide(ev, st, bridge.DecideOptions{}); d.Outcome != bridge.EventDispatched {
			b.Fatal(d.Outcome)
		}
	}
}
