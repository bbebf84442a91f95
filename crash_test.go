package main

import (
	"encoding/json"
	"fmt"
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

// TestCrashSuite runs the built binary against a fake ExpertSender and
// drives 3,000 webhooks over 300 orders (each order's 10 updates with
// increasing timestamps and a new status each) while SIGKILLing the process
// at random moments, at least 10 times, restarting it each time. The sender
// retries whatever got no 2xx, as Digishare does. It then checks, from what
// the fake received:
//   - every acknowledged event's delivery arrived;
//   - for each order the last status received is the newest update's;
//   - no order ever received an older status after a newer one.
func TestCrashSuite(t *testing.T) {
	const orders, updates, minKills = 300, 10, 10
	bin := buildBinary(t)
	es := fake.NewServer(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	var statuses strings.Builder
	for k := range updates {
		fmt.Fprintf(&statuses, "    s%015d: { name: S%d, expertsender: st%d }\n", k, k, k)
	}
	cfg := filepath.Join(dir, "config.yaml")
	yaml := fmt.Sprintf(`listen: %s
log: { level: warn, format: json }
store: { path: %q }
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { base_url: %q, api_key: crash-key-1, timeout: 2s } }
delivery: { max_attempts: 1000, backoff: { initial: 5ms, max: 50ms }, concurrency: 8 }
mapping:
  statuses:
%s`, addr, filepath.Join(dir, "sb.db"), es.URL, statuses.String())
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
	t.Cleanup(func() { // on every path, failures included: never leave a server running
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

	var acked, sent, duplicates atomic.Int64
	ackSignal := make(chan struct{}, 1)
	next := make(chan int, orders)
	for o := range orders {
		next <- o
	}
	close(next)
	var senders sync.WaitGroup
	send := func() {
		defer senders.Done()
		for o := range next {
			for k := range updates {
				u := fake.Update{TicketID: fmt.Sprintf("t%d-%d", o, k), OrderID: fmt.Sprint("ORDER-", o),
					StatusID: fmt.Sprintf("s%015d", k), DateStatus: fmt.Sprintf("2026-01-13 10:%02d:00", k)}
				for {
					sent.Add(1)
					code, id, dup := postRaw(addr, u.Payload())
					if code == 200 && id != "" {
						if dup {
							duplicates.Add(1)
						}
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
	}
	start()
	for range 6 {
		senders.Add(1)
		go send()
	}
	sendersDone := make(chan struct{})
	go func() { senders.Wait(); close(sendersDone) }()

	kills := 0
	threshold := int64(100 + rand.IntN(150))
	for kills < minKills {
		select {
		case <-ackSignal:
		case <-sendersDone:
			t.Fatalf("all events sent after only %d kills", kills)
		}
		if acked.Load() < threshold {
			continue
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		kills++
		threshold = acked.Load() + int64(100+rand.IntN(150))
		start()
	}
	<-sendersDone
	if got := acked.Load(); got != orders*updates {
		t.Fatalf("%d of %d events acknowledged", got, orders*updates)
	}

	// Wait until every order's newest status has arrived.
	final := fmt.Sprint("st", updates-1)
	deadline := time.Now().Add(60 * time.Second)
	var reqs []fake.Request
	for {
		reqs = es.Requests()
		done := map[string]bool{}
		for _, r := range reqs {
			if r.Status == final {
				done[r.OrderID] = true
			}
		}
		if len(done) == orders {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d orders received their newest status", len(done), orders)
		}
		es.WaitRequests(len(reqs)+1, time.Second)
	}
	received := map[string]map[string]bool{}
	sequence := map[string][]int{}
	regressions := 0
	for _, r := range reqs {
		if received[r.OrderID] == nil {
			received[r.OrderID] = map[string]bool{}
		}
		received[r.OrderID][r.Status] = true
		var k int
		fmt.Sscanf(r.Status, "st%d", &k)
		seq := sequence[r.OrderID]
		if len(seq) > 0 && k < seq[len(seq)-1] {
			regressions++
			t.Errorf("order %s received st%d after st%d", r.OrderID, k, seq[len(seq)-1])
		}
		sequence[r.OrderID] = append(seq, k)
	}
	missing := 0
	for o := range orders {
		for k := range updates {
			if !received[fmt.Sprint(o)][fmt.Sprint("st", k)] {
				missing++
			}
		}
		if seq := sequence[fmt.Sprint(o)]; len(seq) == 0 || seq[len(seq)-1] != updates-1 {
			t.Errorf("order %d ended with %v", o, seq)
		}
	}
	if missing > 0 {
		t.Errorf("%d acknowledged updates never reached ExpertSender", missing)
	}
	t.Logf("crash suite: %d events, %d kills, %d webhook calls, %d acknowledged (%d as duplicates after a lost ack), "+
		"%d deliveries expected, %d ExpertSender requests (%d repeats, at-least-once), %d missing, %d regressions",
		orders*updates, kills, sent.Load(), acked.Load(), duplicates.Load(), orders*updates, len(reqs),
		len(reqs)-orders*updates, missing, regressions)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Error("no graceful exit after SIGTERM")
		_ = cmd.Process.Kill()
	}
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("exit code after SIGTERM = %d", cmd.ProcessState.ExitCode())
	}
}

// httpClient bounds each call: a webhook cut by a kill must not hang.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// postRaw posts a webhook; code 0 means no answer (connection refused or cut).
func postRaw(addr string, body []byte) (code int, eventID string, duplicate bool) {
	resp, err := httpClient.Post("http://"+addr+"/webhooks/digishare", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return 0, "", false
	}
	defer resp.Body.Close()
	var out struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, "", false
	}
	return resp.StatusCode, out.EventID, out.Duplicate
}
