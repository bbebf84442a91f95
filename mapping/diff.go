package mapping

import (
	"sort"
	"strings"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
)

// Redecide is what "mapping diff" makes of a stored update under t: the
// decision of the mapping itself, without the order's history (as if the
// order had no state, forced), so superseded and unchanged never come out.
func (t *Table) Redecide(u *digishare.Update) bridge.Decision {
	return t.Decide(u, bridge.OrderState{}, bridge.DecideOptions{Force: true})
}

// Class folds the outcomes that depend on order history (superseded,
// unchanged) into dispatched: what the mapping itself decided.
func Class(o bridge.EventState) bridge.EventState {
	if o == bridge.EventSuperseded || o == bridge.EventUnchanged {
		return bridge.EventDispatched
	}
	return o
}

// Sends describes what a decision sends, "(expertsender=paid, http.crm=x)";
// a decision that planned nothing (superseded, unchanged) is described by
// the deliveries ds its event made ("" when there are none either).
func Sends(d bridge.Decision, ds []bridge.Delivery) string {
	var parts []string
	for _, p := range d.Deliveries {
		parts = append(parts, p.Target+"="+p.Status)
	}
	if len(parts) == 0 {
		for _, del := range ds {
			parts = append(parts, del.Target+"="+del.Status)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return "(" + strings.Join(parts, ", ") + ")"
}

// Changed reports whether cand (from Redecide) differs from old, the stored
// event's last decision whose deliveries are ds: another outcome class, or
// other statuses sent by a dispatch.
func Changed(old, cand bridge.Decision, ds []bridge.Delivery) bool {
	if Class(old.Outcome) != Class(cand.Outcome) {
		return true
	}
	oldSends := Sends(old, ds)
	return Class(cand.Outcome) == bridge.EventDispatched && oldSends != "" && oldSends != Sends(cand, nil)
}

// Compare decides a stored event again under t as "mapping diff" does
// (Redecide) and reports its last decision, the candidate's and whether
// they differ (Changed). ok is false for an event that cannot be decided:
// stored as invalid, or a payload that does not decode.
func (t *Table) Compare(d *bridge.EventDetail) (old, cand bridge.Decision, changed, ok bool) {
	if d.Event.State == bridge.EventInvalid {
		return old, cand, false, false
	}
	u, err := digishare.Decode(d.Payload)
	if err != nil {
		return old, cand, false, false
	}
	if n := len(d.Event.Decisions); n > 0 {
		old = d.Event.Decisions[n-1]
	}
	cand = t.Redecide(u)
	return old, cand, Changed(old, cand, d.Deliveries), true
}
