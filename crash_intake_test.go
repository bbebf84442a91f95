package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/internal/fake"
)

// TestCrashIntakes runs the built binary with the order intake pointed at
// fakes (Digishare, ExpertSender, the invoice host) and posts a stream of
// intakes (each order once, a third of them updated later) while
// SIGKILLing the process at random moments, at least 6 times, restarting
// it each time; the sender retries what got no 200. Digishare answers each
// ticket a few milliseconds after creating it, so kills land between a
// ticket's creation and its record. It then checks:
//   - every acknowledged order is stored;
//   - no order got two tickets;
//   - every order ends with its ticket recorded or its ticket delivery dead
//     with a reason (a ticket whose outcome is unknown says what to look for).
func TestCrashIntakes(t *testing.T) {
	if testing.Short() {
		t.Skip("crash suite: not with -short")
	}
	const orders, minKills = 150, 6
	bin := buildBinary(t)
	ds := fake.NewDigishare(t, loopPAT)
	ds.AnswerDelay = 3 * time.Millisecond
	es := fake.NewServer(t)
	osys := fake.NewOrderSystem(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	yaml := strings.NewReplacer("ADDR", addr, "STORE", filepath.Join(dir, "sb.db")).Replace(loopConfig(ds.URL, es.URL, osys.URL))
	yaml = strings.Replace(yaml, "log: { level: info, format: json }", "log: { level: warn, format: json }", 1)
	yaml = strings.Replace(yaml, "delivery: { max_attempts: 5, backoff: { initial: 5ms, max: 50ms } }",
		"delivery: { max_attempts: 1000, backoff: { initial: 5ms, max: 50ms }, concurrency: 8 }", 1)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	var cmd *exec.Cmd
	var exited chan struct{}
	t.Cleanup(func() {
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	start := func() {
		cmd = exec.Command(bin, "serve", "--config", cfg)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited = make(chan struct{})
		go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, exited)
		waitHealthy(t, addr, exited)
	}

	seed := string(seedOrderOn(t, osys.URL))
	body := func(o int, total string) []byte {
		b := strings.Replace(seed, `"orderId": "44212809"`, fmt.Sprintf(`"orderId": "%d"`, 70000+o), 1)
		return []byte(strings.Replace(b, `"orderTotal": 1000.0`, `"orderTotal": `+total, 1))
	}
	var acked, sent atomic.Int64
	ackSignal := make(chan struct{}, 1)
	next := make(chan []byte, 2*orders)
	for o := range orders {
		next <- body(o, "1000.0")
	}
	for o := 0; o < orders; o += 3 {
		next <- body(o, "1001.0")
	}
	close(next)
	var senders sync.WaitGroup
	send := func() {
		defer senders.Done()
		for b := range next {
			for {
				sent.Add(1)
				if postIntake(addr, b) == 200 {
					acked.Add(1)
					select {
					case ackSignal <- struct{}{}:
					default:
					}
					break
				}
				time.Sleep(5 * time.Millisecond) // the sender's retry pace while the bridge is down
			}
		}
	}
	start()
	for range 4 {
		senders.Add(1)
		go send()
	}
	sendersDone := make(chan struct{})
	go func() { senders.Wait(); close(sendersDone) }()
	kills := 0
	threshold := int64(10 + rand.IntN(20))
	for kills < minKills {
		select {
		case <-ackSignal:
		case <-sendersDone:
			// Everything is taken: kill while the worker still sends.
		}
		if acked.Load() < threshold && !closed(sendersDone) {
			continue
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		kills++
		threshold = acked.Load() + int64(10+rand.IntN(20))
		start()
	}
	<-sendersDone

	// Wait until every order's ticket step has ended.
	type row struct {
		OrderID string          `json:"order_id"`
		Ticket  json.RawMessage `json:"ticket"`
		State   string          `json:"ticket_state"`
	}
	var rows []row
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, out := getAdmin(t, addr, "/admin/orders?limit=1000")
		raw, _ := json.Marshal(out["orders"])
		rows = nil
		_ = json.Unmarshal(raw, &rows)
		ended := 0
		for _, r := range rows {
			if len(r.Ticket) > 0 && string(r.Ticket) != "null" || r.State == "dead" {
				ended++
			}
		}
		if code == 200 && len(rows) == orders && ended == orders {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d orders listed (want %d), %d with their ticket step ended", 90*time.Second, len(rows), orders, ended)
		}
		ds.WaitPath("/tickets", len(ds.On("/tickets"))+1, 200*time.Millisecond) // woken by the next ticket, or soon
	}
	created, dead, unknown := 0, 0, 0
	for ext, n := range ds.TicketCounts() {
		if n > 1 {
			t.Errorf("%s got %d tickets", ext, n)
		}
	}
	for _, r := range rows {
		if len(r.Ticket) > 0 && string(r.Ticket) != "null" {
			created++
			continue
		}
		dead++
		_, detail := getAdmin(t, addr, "/admin/orders/"+r.OrderID)
		ds, _ := detail["deliveries"].([]any)
		why := ""
		for _, d := range ds {
			m := d.(map[string]any)
			if m["kind"] == "ticket" && m["state"] == "dead" {
				why, _ = m["reason"].(string)
				if m["result"] == "outcome_unknown" {
					unknown++
					if !strings.Contains(why, "look for a ticket with external_id ORDER-"+r.OrderID) {
						t.Errorf("order %s: unknown-outcome reason %q", r.OrderID, why)
					}
				}
			}
		}
		if why == "" {
			t.Errorf("order %s has no ticket and no dead ticket delivery saying why", r.OrderID)
		}
	}
	t.Logf("intake crash suite: %d orders (%d intakes acknowledged, %d posts), %d kills; %d tickets recorded, %d dead (%d of unknown outcome); "+
		"Digishare created %d tickets, got %d ticket requests",
		orders, acked.Load(), sent.Load(), kills, created, dead, unknown, len(ds.TicketCounts()), len(ds.On("/tickets")))
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Error("no graceful exit after SIGTERM")
		_ = cmd.Process.Kill()
	}
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// postIntake posts an order; 0 means no answer (refused or cut).
func postIntake(addr string, body []byte) int {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/orders", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+loopIntakeToken)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func getAdmin(t *testing.T, addr, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
