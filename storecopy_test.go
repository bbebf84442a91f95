package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
)

const copyMapping = `mapping:
  ticket_types: [npvrxamq9l94y8dz]
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
    x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed }
    noaction0000000a: { name: Nothing to send }
`

// TestStoreCopyRoundTrip: a bbolt store with events in every state
// (dispatched with deliveries done, dead and still pending; unchanged,
// superseded, unmapped, no_status_change, ignored, no_order_id, no_action,
// invalid, and a duplicate) is copied with store copy, then read and served
// on PostgreSQL: events list and events show print the same, the pending
// delivery is delivered, done and dead ones are not sent again, and a repeat
// of an old webhook answers duplicate: true with the first event's id. A
// second copy into the now non-empty target is refused, and a copy while
// the server holds the file fails fast.
func TestStoreCopyRoundTrip(t *testing.T) {
	var down atomic.Bool // order 3's deliveries fail (503) while set
	down.Store(true)
	es := fake.NewServer(t)
	es.Respond = func(r fake.Request) fake.Answer {
		switch {
		case r.OrderID == "2":
			return fake.Answer{Code: 400, Body: `{"errors":[{"message":"unknown order"}]}`}
		case r.OrderID == "3" && down.Load():
			return fake.Answer{Code: 503, Body: "{}"}
		}
		return fake.Answer{Code: 200, Body: "{}"}
	}
	dir := t.TempDir()
	boltYAML := fmt.Sprintf(`listen: ADDR
log: { level: debug, format: json }
store: { path: "STORE" }
admin: { token: admin-secret-99 }
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { base_url: %q, api_key: k-1234567, timeout: 2s, circuit_breaker: { failures: 1000, cooldown: 1s } } }
delivery: { max_attempts: 1000, backoff: { initial: 100ms, max: 200ms } }
%s`, es.URL, copyMapping)
	s := startServer(t, boltYAML)
	post := func(body []byte) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post("http://"+s.addr+"/webhooks/digishare", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	first := fake.Update{TicketID: "t1", OrderID: "ORDER-1", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"}
	bodies := map[string][]byte{
		"dispatched":       first.Payload(),
		"unchanged":        fake.Update{TicketID: "t1", OrderID: "ORDER-1", StatusID: confirmed, DateStatus: "2026-01-13 10:05:00"}.Payload(),
		"superseded":       fake.Update{TicketID: "t1", OrderID: "ORDER-1", StatusID: "x9q3wrlv0m7vzea8", DateStatus: "2026-01-13 09:00:00"}.Payload(),
		"dead":             fake.Update{TicketID: "t2", OrderID: "ORDER-2", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"}.Payload(),
		"pending":          fake.Update{TicketID: "t3", OrderID: "ORDER-3", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"}.Payload(),
		"unmapped":         fake.Update{TicketID: "t4", OrderID: "ORDER-4", StatusID: "unknown000000000", DateStatus: "2026-01-13 10:00:00"}.Payload(),
		"no_status_change": fake.Update{TicketID: "t5", OrderID: "ORDER-5", DateStatus: "2026-01-13 10:00:00"}.Payload(),
		"ignored":          fake.Update{TicketID: "t6", OrderID: "ORDER-6", StatusID: confirmed, TypeID: "othertype0000000"}.Payload(),
		"no_order_id":      fake.Update{TicketID: "t7", OrderID: "", StatusID: confirmed}.Payload(),
		"no_action":        fake.Update{TicketID: "t8", OrderID: "ORDER-8", StatusID: "noaction0000000a"}.Payload(),
		"invalid":          []byte(`{"event":"ticket.updated","data":"not an object"}`),
	}
	order := []string{"dispatched", "unchanged", "superseded", "dead", "pending", "unmapped", "no_status_change", "ignored", "no_order_id", "no_action", "invalid"}
	ids := map[string]string{}
	for _, name := range order {
		code, ans := post(bodies[name])
		want := name
		if name == "dead" || name == "pending" {
			want = "dispatched" // the event's state; its delivery's is what the name says
		}
		if (code != 200 && code != 202) || ans["state"] != want {
			t.Fatalf("%s: %d %v", name, code, ans)
		}
		ids[name] = ans["event_id"].(string)
	}
	if code, ans := post(bodies["dispatched"]); code != 200 || ans["duplicate"] != true || ans["event_id"] != ids["dispatched"] {
		t.Fatalf("repeat on bbolt: %d %v", code, ans)
	}
	eventually(t, "done, dead and a retried pending delivery on bbolt", func() bool {
		_, out, _ := runWith(t, tokenEnv, "events", "list", "--config", s.cfg, "--limit", "100")
		n := 0
		for _, r := range es.Requests() {
			if r.OrderID == "3" {
				n++
			}
		}
		return strings.Contains(out, "1 done") && strings.Contains(out, "1 dead") && n >= 2
	})
	// A server holding the file: the copy fails fast.
	dsn := pgtest.NewDatabase(t)
	pgYAML := filepath.Join(dir, "pg.yaml")
	raw, _ := os.ReadFile(s.cfg)
	pgConf := strings.Replace(string(raw), fmt.Sprintf("store: { path: %q }", between(string(raw), `path: "`, `"`)),
		fmt.Sprintf("store: { driver: postgres, postgres: { dsn: %q } }", dsn), 1)
	if pgConf == string(raw) {
		t.Fatal("could not write the PostgreSQL config")
	}
	if err := os.WriteFile(pgYAML, []byte(pgConf), 0o600); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	code, _, errOut := runWith(t, noEnv, "store", "copy", "--to", pgYAML, "--config", s.cfg)
	if code != 1 || !strings.Contains(errOut, "stop the service before copying") || time.Since(start) > 5*time.Second {
		t.Errorf("copy while the server holds the file: exit %d after %v: %s", code, time.Since(start), errOut)
	}
	s.cancel()
	<-s.exited

	// The bbolt store as the CLI prints it, before the copy.
	commands := func(cfg string) [][]string {
		cmds := [][]string{{"events", "list", "--config", cfg, "--limit", "100"}}
		for _, name := range order {
			cmds = append(cmds, []string{"events", "show", ids[name], "--config", cfg})
		}
		return cmds
	}
	before := map[int]string{}
	for i, args := range commands(s.cfg) {
		code, out, errOut := runWith(t, noEnv, args...)
		if code != 0 {
			t.Fatalf("%v on bbolt: %d %s", args, code, errOut)
		}
		before[i] = out
	}
	if !strings.Contains(before[0], "pending") {
		t.Fatalf("no pending delivery left on bbolt to carry over:\n%s", before[0])
	}

	code, out, errOut := runWith(t, noEnv, "store", "copy", "--to", pgYAML, "--config", s.cfg)
	if code != 0 || !strings.Contains(out, "count check: ok") {
		t.Fatalf("store copy: %d\n%s%s", code, out, errOut)
	}
	t.Logf("store copy:\n%s%s", out, errOut)
	for _, kind := range []string{"events  ", "deliveries", "pending deliveries", "order states", "dedup keys", "jobs", "operator actions"} {
		if !strings.Contains(out, kind) {
			t.Errorf("the summary lacks %q", kind)
		}
	}
	if strings.Contains(out, "not carried") {
		t.Errorf("the summary says something is left behind:\n%s", out)
	}
	for i, args := range commands(pgYAML) {
		code, out, errOut := runWith(t, noEnv, args...)
		if code != 0 {
			t.Fatalf("%v on PostgreSQL: %d %s", args, code, errOut)
		}
		if out != before[i] {
			t.Errorf("%v on PostgreSQL printed\n%s\non bbolt\n%s", args, out, before[i])
		}
	}
	code, _, errOut = runWith(t, noEnv, "store", "copy", "--to", pgYAML, "--config", s.cfg)
	if code != 1 || !strings.Contains(errOut, "not empty") {
		t.Errorf("second copy into the same target: %d %s", code, errOut)
	}

	// Served on PostgreSQL: the pending delivery goes out, nothing else is
	// sent again, and an old webhook is a duplicate.
	down.Store(false)
	sentBefore := len(es.Requests())
	pg := startServer(t, strings.Replace(pgConf, between(pgConf, "listen: ", "\n"), "ADDR", 1))
	defer func() {
		if t.Failed() {
			t.Logf("PostgreSQL server's log:\n%s", pg.logs.String())
		}
	}()
	var shown string
	defer func() {
		if t.Failed() {
			t.Logf("events show of the pending event on PostgreSQL:\n%s", shown)
		}
	}()
	eventually(t, "the copied pending delivery delivered from PostgreSQL", func() bool {
		_, shown, _ = runWith(t, tokenEnv, "events", "show", ids["pending"], "--config", pg.cfg)
		return strings.Contains(shown, " done ")
	})
	for _, r := range es.Requests()[sentBefore:] {
		if r.OrderID != "3" {
			t.Errorf("PostgreSQL sent order %s again (status %s): it was done or dead on bbolt", r.OrderID, r.Status)
		}
	}
	s.addr = pg.addr
	for _, name := range []string{"dispatched", "dead", "invalid"} {
		code, ans := post(bodies[name])
		if (code != 200 && code != 202) || ans["duplicate"] != true || ans["event_id"] != ids[name] {
			t.Errorf("repeat of the %s webhook on PostgreSQL: %d %v, want duplicate of %s", name, code, ans, ids[name])
		}
	}
}

// TestStoreCopyUsage: help on stdout, usage errors exit 2, the wrong
// drivers are refused with a reason.
func TestStoreCopyUsage(t *testing.T) {
	for _, args := range [][]string{{"store", "copy", "--help"}, {"store", "--help"}, {"store", "compact", "--help"}} {
		if code, out, _ := runWith(t, noEnv, args...); code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("%v: exit %d %q", args, code, out)
		}
	}
	for _, args := range [][]string{{"store", "copy"}, {"store", "copy", "--to"}, {"store", "copy", "--to", "x.yaml", "extra"}, {"store", "frob"}} {
		if code, _, _ := runWith(t, noEnv, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	dir := t.TempDir()
	bolt := filepath.Join(dir, "bolt.yaml")
	os.WriteFile(bolt, []byte("store: { path: "+filepath.Join(dir, "sb.db")+" }\n"), 0o600)
	pg := filepath.Join(dir, "pg.yaml")
	os.WriteFile(pg, []byte("store: { driver: postgres, postgres: { dsn: \"postgres://u:pw-XYZ@127.0.0.1:1/x\" } }\n"), 0o600)
	if code, _, errOut := runWith(t, noEnv, "store", "copy", "--to", bolt, "--config", bolt); code != 1 || !strings.Contains(errOut, "copies into a PostgreSQL store") {
		t.Errorf("bbolt target: %d %s", code, errOut)
	}
	if code, _, errOut := runWith(t, noEnv, "store", "copy", "--to", pg, "--config", pg); code != 1 || !strings.Contains(errOut, "copies a bbolt store") || strings.Contains(errOut, "pw-XYZ") {
		t.Errorf("PostgreSQL source: %d %s", code, errOut)
	}
	if code, _, errOut := runWith(t, noEnv, "store", "copy", "--to", pg, "--config", bolt); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing bbolt file: %d %s", code, errOut)
	}
}
