package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/internal/fake"
)

const adminTok = "admin-secret-99"

type server struct {
	t      *testing.T
	addr   string
	cfg    string
	cancel context.CancelFunc
	exited chan struct{}
	logs   *fake.LogBuffer
}

func startServer(t *testing.T, yaml string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, addr: freeAddr(t), cfg: filepath.Join(dir, "config.yaml"), exited: make(chan struct{}), logs: &fake.LogBuffer{}}
	s.write(strings.ReplaceAll(strings.ReplaceAll(yaml, "ADDR", s.addr), "STORE", filepath.Join(dir, "sb.db")))
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.exited)
		run(ctx, []string{"serve", "--config", s.cfg}, noEnv, io.Discard, s.logs)
	}()
	waitHealthy(t, s.addr, s.exited)
	t.Cleanup(func() { cancel(); <-s.exited })
	return s
}

func (s *server) write(yaml string) {
	s.t.Helper()
	if err := os.WriteFile(s.cfg, []byte(yaml), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) call(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, "http://"+s.addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (s *server) metric(name string) string {
	s.t.Helper()
	resp, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

const adminConfig = `listen: ADDR
log: { level: debug, format: json }
store: { path: "STORE" }
admin: { token: admin-secret-99 }
targets: { expertsender: { base_url: "%s", api_key: k-1234567, timeout: 2s } }
delivery: { max_attempts: 1, backoff: { initial: 1ms, max: 1ms } }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
%s`

func TestAdminEndToEnd(t *testing.T) {
	es := fake.NewServer(t)
	s := startServer(t, fmt.Sprintf(adminConfig, es.URL, ""))
	hook := func(u fake.Update) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/webhooks/digishare", bytes.NewReader(u.Payload()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("webhook: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	// An unmapped status is held...
	hook(fake.Update{TicketID: "t1", OrderID: "100", StatusID: "shipped000000000", DateStatus: "2026-01-13 10:00:00"})
	code, body := s.call("GET", "/admin/events?state=unmapped", nil)
	if code != 200 || len(body["events"].([]any)) != 1 {
		t.Fatalf("unmapped events: %d %v", code, body)
	}
	// ...an invalid edit is refused with its line, the old mapping stays...
	s.write(strings.Replace(fmt.Sprintf(adminConfig, es.URL, "    shipped000000000: { name: Shipped, expertsender: completed, typo: 1 }\n"),
		"ADDR", s.addr, 1))
	code, body = s.call("POST", "/admin/mapping/reload", nil)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("invalid reload: %d %v", code, body)
	}
	problem := body["errors"].([]any)[0].(map[string]any)
	if problem["path"] != "mapping.statuses.shipped000000000.typo" || problem["line"] != float64(10) {
		t.Errorf("problem = %v", problem)
	}
	if code, _ := s.call("GET", "/readyz", nil); code != 200 {
		t.Errorf("readyz after a refused reload: %d", code)
	}
	// ...a valid one releases the held event to ExpertSender.
	s.write(strings.Replace(fmt.Sprintf(adminConfig, es.URL, "    shipped000000000: { name: Shipped, expertsender: completed }\n"), "ADDR", s.addr, 1))
	code, body = s.call("POST", "/admin/mapping/reload", nil)
	if code != 200 || body["redecided"] != float64(1) || len(body["added"].([]any)) != 1 {
		t.Fatalf("valid reload: %d %v", code, body)
	}
	// STORE was replaced by a path; the store section differs from the running one.
	if reqs := es.WaitRequests(1, 10*time.Second); len(reqs) != 1 || reqs[0].Status != "completed" || reqs[0].OrderID != "100" {
		t.Fatalf("ExpertSender after reload: %+v", reqs)
	}
	code, body = s.call("GET", "/admin/mapping", nil)
	if code != 200 || body["statuses"].(map[string]any)["shipped000000000"] == nil {
		t.Errorf("mapping after reload: %v", body)
	}

	// Replay: a dry run sends nothing; unchanged holds; force sends again.
	code, body = s.call("POST", "/admin/replay", map[string]any{"order_id": "100", "dry_run": true})
	if code != 200 || body["unchanged"] != float64(1) || body["dry_run"] != true {
		t.Fatalf("dry run: %d %v", code, body)
	}
	code, body = s.call("POST", "/admin/replay", map[string]any{"order_id": "100", "force": true, "dry_run": true})
	if code != 200 || body["dispatched"] != float64(1) || len(body["requests"].([]any)) != 1 {
		t.Fatalf("forced dry run: %d %v", code, body)
	}
	if n := len(es.Requests()); n != 1 {
		t.Errorf("dry runs sent %d requests", n-1)
	}
	code, body = s.call("POST", "/admin/replay", map[string]any{"order_id": "100", "force": true})
	if code != 200 || body["dispatched"] != float64(1) {
		t.Fatalf("forced replay: %d %v", code, body)
	}
	if reqs := es.WaitRequests(2, 10*time.Second); len(reqs) != 2 {
		t.Fatalf("forced replay not sent: %d requests", len(reqs))
	}
	for _, bad := range []map[string]any{{}, {"state": "nope"}, {"dead": true, "order_id": "1"}, {"order_id": "1", "targets": []string{"nope"}}, {"order_id": "1", "bogus": 1}} {
		if code, body := s.call("POST", "/admin/replay", bad); code != 400 {
			t.Errorf("replay %v: %d %v, want 400", bad, code, body)
		}
	}

	// A permanent failure ends dead; retry queues it again once the target is fixed.
	es.Default = fake.Answer{Code: 400, Body: `{"errors":["bad"]}`}
	hook(fake.Update{TicketID: "t2", OrderID: "200", StatusID: "yqdwrbka7kz69v8e", DateStatus: "2026-01-13 10:00:00"})
	es.WaitRequests(3, 10*time.Second)
	dead := s.deadDeliveries(1) // the attempt is recorded just after the fake answered
	es.Default = fake.Answer{Code: 200, Body: "{}"}
	id := dead[0].(map[string]any)["id"].(string)
	if code, body = s.call("POST", "/admin/deliveries/"+id+"/retry", nil); code != 200 {
		t.Fatalf("retry: %d %v", code, body)
	}
	if reqs := es.WaitRequests(4, 10*time.Second); len(reqs) != 4 || reqs[3].OrderID != "200" {
		t.Fatalf("retry not delivered: %+v", reqs)
	}
	if code, _ := s.call("POST", "/admin/deliveries/"+id+"/retry", nil); code != http.StatusConflict {
		t.Errorf("second retry of the same dead delivery: %d, want 409", code)
	}

	// Metrics moved with all of this.
	if v := s.metric(`statusbridge_webhooks_total{outcome="accepted"}`); v != "2" {
		t.Errorf("accepted webhooks = %q, want 2", v)
	}
	if v := s.metric(`statusbridge_mapping_reloads_total{result="failed"}`); v != "1" {
		t.Errorf("failed reloads = %q", v)
	}
	if v := s.metric(`statusbridge_delivery_attempts_total{result="dead",target="expertsender"}`); v != "1" {
		t.Errorf("dead attempts = %q", v)
	}
	if s.metric("go_goroutines") == "" {
		t.Error("no Go runtime metrics")
	}
	if v := s.metric("statusbridge_webhook_seconds_count"); v != "2" {
		t.Errorf("webhook latency observations = %q, want 2 (one per stored webhook)", v)
	}
	// Two ingests, the attempts' records, the retry: several group commits.
	if v, _ := strconv.Atoi(s.metric("statusbridge_store_commit_seconds_count")); v < 3 {
		t.Errorf("group commits observed = %d, want at least 3", v)
	}
	if v, _ := strconv.Atoi(s.metric("statusbridge_store_commit_writes_sum")); v < 5 {
		t.Errorf("writes through the committer = %d, want at least 5", v)
	}
	if strings.Contains(s.logs.String(), adminTok) {
		t.Error("admin token in the logs")
	}
}

func TestSIGHUPReloadsMapping(t *testing.T) {
	es := fake.NewServer(t)
	s := startServer(t, fmt.Sprintf(adminConfig, es.URL, ""))
	if v := s.metric(`statusbridge_mapping_reloads_total{result="ok"}`); v != "" {
		t.Fatalf("reloads before SIGHUP: %q", v)
	}
	// Every configured target's gauges exist from the start, at 0.
	for _, g := range []string{`statusbridge_outbox_depth{target="expertsender"}`,
		`statusbridge_outbox_oldest_pending_seconds{target="expertsender"}`, `statusbridge_circuit_open{target="expertsender"}`} {
		if v := s.metric(g); v != "0" {
			t.Errorf("%s at start = %q, want 0", g, v)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SIGHUP reloads the mapping", func() bool {
		return s.metric(`statusbridge_mapping_reloads_total{result="ok"}`) == "1"
	})
}

// eventually polls an observable condition of a running server (state that
// is only visible over HTTP, with no push to wait on) until it holds, or
// fails the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll pace
	}
}

// deadDeliveries waits until the admin API lists n dead deliveries.
func (s *server) deadDeliveries(n int) []any {
	s.t.Helper()
	var dead []any
	eventually(s.t, fmt.Sprintf("%d dead deliveries", n), func() bool {
		_, body := s.call("GET", "/admin/deliveries?state=dead", nil)
		dead = body["deliveries"].([]any)
		return len(dead) == n
	})
	return dead
}
