package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/internal/fake"
)

func tokenEnv(k string) (string, bool) {
	if k == "STATUSBRIDGE_ADMIN_TOKEN" {
		return adminTok, true
	}
	return "", false
}

func runWith(t *testing.T, getenv func(string) (string, bool), args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, getenv, &out, &errb)
	return code, out.String(), errb.String()
}

func hookTo(t *testing.T, addr string, u fake.Update) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/webhooks/digishare", "application/json", bytes.NewReader(u.Payload()))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestCLIAgainstServerAndFile(t *testing.T) {
	es := fake.NewServer(t)
	s := startServer(t, fmt.Sprintf(adminConfig, es.URL, ""))
	hookTo(t, s.addr, fake.Update{TicketID: "t1", OrderID: "300", StatusID: "yqdwrbka7kz69v8e", DateStatus: "2026-01-13 10:00:00"})
	hookTo(t, s.addr, fake.Update{TicketID: "t2", OrderID: "301", StatusID: "unknown000000000", DateStatus: "2026-01-13 10:00:00"})
	es.WaitRequests(1, 10*time.Second)

	// Through the server.
	code, out, errOut := runWith(t, tokenEnv, "events", "list", "--config", s.cfg)
	if code != 0 || !strings.Contains(out, "RECEIVED") || !strings.Contains(out, "DELIVERIES") ||
		!strings.Contains(out, "unmapped") || !strings.Contains(out, "Order Confirmed") {
		t.Fatalf("events list via server: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runWith(t, tokenEnv, "events", "list", "--config", s.cfg, "--state", "unmapped", "--json")
	if code != 0 || !strings.Contains(out, `"order_id": "301"`) || strings.Contains(out, `"order_id": "300"`) {
		t.Errorf("events list --state --json: %d %s", code, out)
	}
	code, out, _ = runWith(t, noEnv, "events", "list", "--config", s.cfg)
	if code != 1 {
		t.Errorf("without the admin token: exit %d, want 1", code)
	}
	code, out, errOut = runWith(t, tokenEnv, "replay", "--config", s.cfg, "--order", "300", "--dry-run", "--force")
	if code != 0 || !strings.Contains(out, "would send") || !strings.Contains(out, "dry run: events: 1 matched, 1 dispatched") || !strings.Contains(out, "deliveries: 1 would be sent") {
		t.Fatalf("replay --dry-run: %d\n%s%s", code, out, errOut)
	}
	if n := len(es.Requests()); n != 1 {
		t.Errorf("a dry run sent a request (%d)", n)
	}
	// Find the event id, then show it.
	code, out, _ = runWith(t, tokenEnv, "events", "list", "--config", s.cfg, "--order", "300", "--json")
	id := between(out, `"id": "`, `"`)
	// The attempt is recorded just after the fake answered: wait for it.
	eventually(t, "the attempt is recorded", func() bool {
		code, out, errOut = runWith(t, tokenEnv, "events", "show", id, "--config", s.cfg)
		return code != 0 || strings.Contains(out, "attempt 1")
	})
	if code != 0 || !strings.Contains(out, "expertsender") || !strings.Contains(out, "attempt 1") || !strings.Contains(out, "Payload") ||
		!strings.Contains(out, "sent PUT "+es.URL+"/orders/status") || !strings.Contains(out, "X-Api-Key: [redacted]") {
		t.Errorf("events show: %d\n%s%s", code, out, errOut)
	}
	// Explicit --server never falls back to the file.
	code, _, errOut = runWith(t, tokenEnv, "events", "list", "--config", s.cfg, "--server", "http://"+freeAddr(t))
	if code != 1 || !strings.Contains(errOut, "server") {
		t.Errorf("dead --server: %d %s", code, errOut)
	}
	// A candidate mapping's diff: the unmapped status gains an entry.
	cand := filepath.Join(t.TempDir(), "new.yaml")
	raw, _ := os.ReadFile(s.cfg)
	os.WriteFile(cand, []byte(string(raw)+"    unknown000000000: { name: Shipped, expertsender: completed }\n"), 0o600)
	code, out, errOut = runWith(t, tokenEnv, "mapping", "diff", "--config", cand, "--server", "http://"+s.addr)
	if code != 0 || !strings.Contains(out, "unmapped") || !strings.Contains(out, "dispatched (expertsender=completed)") ||
		!strings.Contains(out, "1 of 2 events would change") {
		t.Errorf("mapping diff: %d\n%s%s", code, out, errOut)
	}

	// The server stops: the CLI reads and replays on the file itself.
	s.cancel()
	<-s.exited
	code, out, errOut = runWith(t, noEnv, "events", "list", "--config", s.cfg)
	if code != 0 || !strings.Contains(out, "unmapped") {
		t.Fatalf("events list on the file: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runWith(t, noEnv, "replay", "--config", s.cfg, "--order", "300", "--force")
	if code != 0 || !strings.Contains(out, "replayed: events: 1 matched, 1 dispatched") {
		t.Fatalf("replay on the file: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runWith(t, noEnv, "store", "compact", "--config", s.cfg)
	if code != 0 || !strings.Contains(out, "compacted") {
		t.Errorf("store compact: %d %s %s", code, out, errOut)
	}
	// A process holds the file but no server answers: say so, exit 1.
	storePath := between(string(raw), `path: "`, `"`)
	db, err := bolt.Open(storePath, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if st, _ := db.Stats(context.Background()); st.Pending != 1 {
		t.Errorf("the file replay queued %d deliveries, want 1", st.Pending)
	}
	code, _, errOut = runWith(t, noEnv, "events", "list", "--config", s.cfg)
	if code != 1 || !strings.Contains(errOut, "holds the store file but does not answer") {
		t.Errorf("locked file, no server: %d %s", code, errOut)
	}
	code, _, errOut = runWith(t, noEnv, "store", "compact", "--config", s.cfg)
	if code != 1 || !strings.Contains(errOut, "stop it before compacting") {
		t.Errorf("compact while held: %d %s", code, errOut)
	}
}

func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{{"replay"}, {"replay", "--order", "1", "--dead"}, {"events"}, {"events", "show"}, {"mapping"}, {"store"}, {"mapping", "diff", "--last", "0"},
		{"deliveries"}, {"deliveries", "retry"}, {"deliveries", "list", "--state", "bogus"}} {
		if code, _, _ := runWith(t, noEnv, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	for _, args := range [][]string{{"events", "list", "--help"}, {"replay", "--help"}, {"mapping", "diff", "--help"}, {"store", "compact", "--help"}, {"events", "--help"},
		{"deliveries", "--help"}, {"deliveries", "list", "--help"}, {"deliveries", "retry", "--help"}} {
		if code, out, _ := runWith(t, noEnv, args...); code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("%v: exit %d %q", args, code, out)
		}
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}
