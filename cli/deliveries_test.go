package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// TestDeadDeliveriesFoundRetriedAndResolved: the listings show ids a person
// can type, dead deliveries are listed and retried from the CLI, and once a
// retry is done the dead one leaves the dead list (--all shows it resolved)
// — on the file and through the server alike.
func TestDeadDeliveriesFoundRetriedAndResolved(t *testing.T) {
	for _, mode := range []string{"file", "server"} {
		t.Run(mode, func(t *testing.T) {
			s := newSite(t)
			e1 := s.ingest("t1", "2001", "2026-01-13 10:00:00")
			s.ingest("t2", "2002", "2026-01-13 10:00:00")
			dead := e1.Deliveries[0].ID
			if err := s.open().Record(context.Background(), dead, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: HTTP 400"}, time.Now()); err != nil {
				t.Fatal(err)
			}
			getenv, extra := noEnv, []string{"--config", s.cfg}
			if mode == "server" {
				getenv, extra = tokenEnv, append(extra, "--server", s.serve())
			} else {
				s.close()
			}
			run := func(cmd func([]string, Env) int, args ...string) string {
				t.Helper()
				code, out, errOut := s.run(getenv, cmd, append(args, extra...)...)
				if code != 0 {
					t.Fatalf("%v: exit %d: %s%s", args, code, out, errOut)
				}
				return out
			}
			out := run(Events, "list")
			evShort := firstField(out, "2001")
			if len(evShort) < bridge.MinShortID || len(evShort) >= 36 || !strings.HasSuffix(strings.ReplaceAll(e1.EventID, "-", ""), evShort) {
				t.Fatalf("events list shows %q for %s, want the end of its id:\n%s", evShort, e1.EventID, out)
			}
			if out := run(Events, "show", evShort); !strings.Contains(out, e1.EventID) {
				t.Errorf("events show %s:\n%s", evShort, out)
			}
			if out := run(Events, "list", "--delivery-state", "dead"); !strings.Contains(out, "2001") || strings.Contains(out, "2002") {
				t.Errorf("events list --delivery-state dead:\n%s", out)
			}
			out = run(Deliveries, "list", "--state", "dead")
			dShort := firstField(out, "2001")
			if !strings.HasSuffix(strings.ReplaceAll(dead, "-", ""), dShort) || len(dShort) < bridge.MinShortID || strings.Contains(out, "2002") {
				t.Fatalf("deliveries list --state dead:\n%s", out)
			}
			out = run(Deliveries, "retry", dShort)
			if !strings.Contains(out, "queued again as") {
				t.Fatalf("deliveries retry: %s", out)
			}
			// The retry is sent and done (as the worker would record it).
			var retry string
			if mode == "file" {
				s.open()
			}
			ds, _, err := s.db.ListDeliveries(context.Background(), bridge.DeliveryFilter{State: string(bridge.Pending), OrderID: "2001"})
			if err != nil || len(ds) != 1 || ds[0].RetryOf != dead {
				t.Fatalf("the retry: %+v %v", ds, err)
			}
			retry = ds[0].ID
			if err := s.db.Record(context.Background(), retry, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200}}, time.Now()); err != nil {
				t.Fatal(err)
			}
			if mode == "file" {
				s.close()
			}
			if out := run(Deliveries, "list", "--state", "dead"); strings.Contains(out, "2001") {
				t.Errorf("a resolved dead delivery is still listed:\n%s", out)
			}
			if out := run(Deliveries, "list", "--state", "dead", "--all"); !strings.Contains(out, "resolved by "+retry) {
				t.Errorf("deliveries list --state dead --all:\n%s", out)
			}
			if out := run(Events, "list", "--delivery-state", "dead"); strings.Contains(out, "2001") {
				t.Errorf("events list --delivery-state dead after the retry:\n%s", out)
			}
			if code, _, errOut := s.run(getenv, Deliveries, append([]string{"retry", dShort}, extra...)...); code != 1 || !strings.Contains(errOut, "only dead deliveries") && !strings.Contains(errOut, "newer delivery") {
				t.Errorf("retrying it again: %d %s", code, errOut)
			}
			if out := run(Replay, "--event", evShort, "--dry-run", "--force"); !strings.Contains(out, "events: 1 matched") {
				t.Errorf("replay --event %s:\n%s", evShort, out)
			}
		})
	}
}

// firstField returns the first column of the first line that mentions s.
func firstField(out, s string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			return strings.Fields(line)[0]
		}
	}
	return ""
}
