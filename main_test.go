package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
)

const confirmed = "yqdwrbka7kz69v8e"

func noEnv(string) (string, bool) { return "", false }

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, noEnv, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLIHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"config", "check", "--help"}, {"config", "--help"}} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (help belongs on stdout)", args, code, out, errOut)
		}
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "statusbridge ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "version", "--help"); code != 0 || !strings.HasPrefix(out, "Usage: statusbridge version") {
		t.Errorf("version --help: %d %q, want its usage", code, out)
	}
	// Each events command's help lists its own flags only.
	if code, out, _ := runCLI(t, "events", "show", "--help"); code != 0 || !strings.Contains(out, "events show ID") ||
		strings.Contains(out, "-state") || strings.Contains(out, "-since") || !strings.Contains(out, "-json") {
		t.Errorf("events show --help: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "events", "list", "--help"); code != 0 || !strings.Contains(out, "-state") {
		t.Errorf("events list --help: %d %q", code, out)
	}
	// --config has the same default in every command's help.
	for _, args := range [][]string{{"serve", "--help"}, {"config", "check", "--help"}, {"events", "list", "--help"}, {"replay", "--help"}} {
		if _, out, _ := runCLI(t, args...); !strings.Contains(strings.Join(strings.Fields(out), " "), config.FlagUsage) {
			t.Errorf("%v: --config not described as %q:\n%s", args, config.FlagUsage, out)
		}
	}
	if code, _, errOut := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, _, _ := runCLI(t); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
}

func TestConfigCheck(t *testing.T) {
	code, out, _ := runCLI(t, "config", "check", "--config", "config.example.yaml")
	// Without credentials every target is disabled, as serve warns: say so, and why.
	if code != 0 || !strings.Contains(out, "ok") || !strings.Contains(out, "targets enabled: none") ||
		!strings.Contains(out, "expertsender: targets.expertsender has no api_key") ||
		!strings.Contains(out, "order intake (POST /webhooks/orders): refused (intake.token is empty)") {
		t.Errorf("example config: %d %q", code, out)
	}
	var intakeOut bytes.Buffer
	env := func(k string) (string, bool) { return "intake-tok", k == "STATUSBRIDGE_INTAKE_TOKEN" }
	if code := run(context.Background(), []string{"config", "check", "--config", "config.example.yaml"}, env, &intakeOut, io.Discard); code != 0 ||
		!strings.Contains(intakeOut.String(), "ticket (digishare) recorded as skipped: targets.digishare has no token") {
		t.Errorf("example config with an intake token: %d %q", code, intakeOut.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:1\nwebhok: {}\ndelivery: { max_attempts: 0 }\n"), 0o600)
	code, _, errOut := runCLI(t, "config", "check", "--config", bad)
	if code != 1 || !strings.Contains(errOut, "line 2: webhok: unknown key") || !strings.Contains(errOut, "line 3: delivery.max_attempts") {
		t.Errorf("bad config: %d %q", code, errOut)
	}
	// serve refuses the same config with exit 2, before listening.
	code, _, errOut = runCLI(t, "serve", "--config", bad)
	if code != 2 || !strings.Contains(errOut, "webhok") {
		t.Errorf("serve with bad config: %d %q", code, errOut)
	}
}

func TestServeStartupFailuresExit1(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	os.WriteFile(foreign, bytes.Repeat([]byte("junk"), 2000), 0o600)
	cfg := writeConfig(t, dir, "127.0.0.1:0", foreign, "http://127.0.0.1:9")
	code, _, errOut := runCLI(t, "serve", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "not a statusbridge store") {
		t.Errorf("foreign store: %d %q", code, errOut)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg = writeConfig(t, dir, ln.Addr().String(), filepath.Join(dir, "ok.db"), "http://127.0.0.1:9")
	code, _, errOut = runCLI(t, "serve", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "address already in use") {
		t.Errorf("address in use: %d %q", code, errOut)
	}
}

func writeConfig(t *testing.T, dir, listen, storePath, esURL string) string {
	t.Helper()
	targets := ""
	if esURL != "" {
		targets = fmt.Sprintf("targets: { expertsender: { base_url: %q, api_key: test-api-key, timeout: 2s } }\n", esURL)
	}
	yaml := fmt.Sprintf(`listen: %s
log: { level: info, format: json }
store: { path: %q }
webhook: { token: hook-token-1 }
order_id: { strip_prefix: "ORDER-" }
%sdelivery: { max_attempts: 50, backoff: { initial: 5ms, max: 50ms }, concurrency: 8 }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
`, listen, storePath, targets)
	path := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHealthy polls /healthz until the server answers (start-up only).
func waitHealthy(t *testing.T, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatal("server exited during start-up")
		default:
		}
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // start-up poll, not synchronisation of results
	}
	t.Fatal("server did not become healthy")
}

func postWebhook(addr string, u fake.Update) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/digishare", bytes.NewReader(u.Payload()))
	req.Header.Set("Authorization", "Bearer hook-token-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestServeInProcess runs the whole service through run(): webhook in,
// PUT to the fake ExpertSender out, graceful shutdown on cancel.
func TestServeInProcess(t *testing.T) {
	es := fake.NewServer(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, addr, filepath.Join(dir, "sb.db"), es.URL)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var code int
	var logs bytes.Buffer
	go func() {
		defer close(exited)
		code = run(ctx, []string{"serve", "--config", cfg}, noEnv, &bytes.Buffer{}, &logs)
	}()
	waitHealthy(t, addr, exited)
	status, err := postWebhook(addr, fake.Update{TicketID: "t1", OrderID: "ORDER-77", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"})
	if err != nil || status != 200 {
		t.Fatalf("webhook: %d %v", status, err)
	}
	reqs := es.WaitRequests(1, 10*time.Second)
	if len(reqs) != 1 || reqs[0].OrderID != "77" || reqs[0].Status != "paid" {
		t.Fatalf("ExpertSender got %+v", reqs)
	}
	cancel()
	<-exited
	if code != 0 {
		t.Errorf("exit %d after shutdown; logs:\n%s", code, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"shut down","duration":`) || !strings.Contains(logs.String(), `"pending":0`) {
		t.Errorf("no final shutdown line with its duration and the pending deliveries; logs:\n%s", logs.String())
	}
	for _, secret := range []string{"hook-token-1", "test-api-key", "ahmed.alami@example.com", "212600000000"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

// TestReleaseWhenIdle: memory is given back once per busy spell, a period
// after its last commit, and never while commits go on.
func TestReleaseWhenIdle(t *testing.T) {
	var commits atomic.Int64
	released := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go releaseWhenIdle(ctx, commits.Load, 5*time.Millisecond, func() { released <- struct{}{} })
	time.Sleep(30 * time.Millisecond)
	if len(released) != 0 {
		t.Fatal("released before any commit")
	}
	for range 20 { // busy: a commit every 2 ms
		commits.Add(1)
		time.Sleep(2 * time.Millisecond)
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("not released after the busy spell")
	}
	time.Sleep(50 * time.Millisecond)
	for len(released) > 0 { // a slow machine may have seen a pause in the spell
		<-released
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(released); n != 0 {
		t.Errorf("released %d more times while idle, want once per spell", n)
	}
}
