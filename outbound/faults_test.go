package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// TestDownstreamFaults: a faulty ExpertSender answers 30% 500s, hangs past
// the timeout, resets connections, sends 429 with Retry-After, and answers
// 200 with an errors body for some orders; then it recovers. Everything
// retryable is delivered; only the errors-body deliveries end dead, each with
// its reason; no order ever gets an older status after a newer one.
func TestDownstreamFaults(t *testing.T) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 11))
	var healthy atomic.Bool
	var got []string
	counts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b struct{ OrderID, OrderStatus string }
		_ = json.Unmarshal(body, &b)
		if strings.HasPrefix(b.OrderID, "perm") {
			_, _ = io.WriteString(w, `{"errors":["orderId unknown"]}`)
			return
		}
		mu.Lock()
		roll := rng.Float64()
		mu.Unlock()
		fault := "ok"
		if !healthy.Load() {
			switch {
			case roll < 0.30:
				fault = "500"
			case roll < 0.40:
				fault = "hang"
			case roll < 0.50:
				fault = "reset"
			case roll < 0.55:
				fault = "429"
			}
		}
		mu.Lock()
		counts[fault]++
		if fault == "ok" {
			got = append(got, b.OrderID+":"+b.OrderStatus)
		}
		mu.Unlock()
		switch fault {
		case "500":
			w.WriteHeader(500)
		case "hang":
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		case "reset":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST, not FIN
				}
				conn.Close()
			}
		case "429":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		default:
			_, _ = io.WriteString(w, "{}")
		}
	}))
	defer srv.Close()
	h := newHarnessYAML(t, fmt.Sprintf(`
targets: { expertsender: { base_url: %q, api_key: k-123456, timeout: 300ms, circuit_breaker: { failures: 1000 } } }
mapping:
  statuses:
    x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed }
    yqdwrbka7kz69v8e: { name: Confirmed, expertsender: paid }
`, srv.URL))
	h.start(Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, MaxAttempts: 1000, Concurrency: 16})
	var all []bridge.IngestResult
	for i := range 60 {
		order := fmt.Sprint("o", i)
		if i%10 == 0 {
			order = fmt.Sprint("perm", i)
		}
		all = append(all, h.ingest("a"+order, order, awaiting, "2026-01-13 10:00:00"))
		all = append(all, h.ingest("b"+order, order, confirmed, "2026-01-13 11:00:00"))
	}
	// Let the faults bite for a while, then recover.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		faults := counts["500"] + counts["hang"] + counts["reset"] + counts["429"]
		mu.Unlock()
		if faults >= 40 || time.Now().After(deadline) {
			break
		}
		select {
		case <-h.out.recorded:
		case <-time.After(100 * time.Millisecond):
		}
	}
	healthy.Store(true)
	dead := 0
	for _, r := range all {
		id := r.Deliveries[0].ID
		d := h.waitTerminal(id) // done, dead, or superseded by the order's next delivery
		switch {
		case strings.HasPrefix(d.OrderID, "perm"):
			if d.State != bridge.Dead && d.State != bridge.Superseded {
				t.Errorf("permanent failure %s ended %s", d.ID, d.State)
			}
			if d.State == bridge.Dead {
				dead++
				if !strings.Contains(d.Reason, "errors") {
					t.Errorf("dead reason %q does not say why", d.Reason)
				}
			}
		case d.State == bridge.Dead:
			t.Errorf("retryable delivery %s for %s ended dead: %s", d.ID, d.OrderID, d.Reason)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	last := map[string]string{}
	for _, g := range got {
		o, s, _ := strings.Cut(g, ":")
		if last[o] == "paid" && s == "placed" {
			t.Errorf("order %s got placed after paid", o)
		}
		last[o] = s
	}
	for i := range 60 {
		if o := fmt.Sprint("o", i); i%10 != 0 && last[o] != "paid" {
			t.Errorf("order %s ended with %q, want paid", o, last[o])
		}
	}
	if dead == 0 {
		t.Error("no permanent failure ended dead")
	}
	t.Logf("faults injected: %v; %d permanent failures dead", counts, dead)
}

// TestBoundedWhileTargetDown: with the target down and 20,000 deliveries
// pending, the worker holds a fixed number of goroutines and bounded memory.
func TestBoundedWhileTargetDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close() // connection refused from now on
	h := newHarnessYAML(t, fmt.Sprintf(`
targets: { expertsender: { base_url: %q, api_key: k-123456, timeout: 1s, circuit_breaker: { failures: 1000000 } } }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Confirmed, expertsender: paid } } }
`, url))
	const pending = 20000
	var wg sync.WaitGroup
	work := make(chan int)
	for range 60 { // many concurrent ingests (within the 512-deep queue): batched commits

		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: confirmed}.Payload()
				ev, _ := digishare.Decode(raw)
				if _, err := bridge.Ingest(context.Background(), h.db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}, h.table); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range pending {
		work <- i
	}
	close(work)
	wg.Wait()
	runtime.GC()
	base := runtime.NumGoroutine()
	const maxHeld = 2000
	h.start(Policy{Initial: time.Second, Max: time.Minute, MaxAttempts: 1000, Concurrency: 16, MaxHeld: maxHeld})
	// The worker holds the first 2,000 of the backlog; sample while it works
	// through them.
	deadline := time.Now().Add(60 * time.Second)
	peak := 0
	for h.out.records.Load() < 2000 {
		if n := runtime.NumGoroutine(); n > peak {
			peak = n
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d attempts in a minute", h.out.records.Load())
		}
		select {
		case <-h.out.recorded:
		case <-time.After(50 * time.Millisecond):
		}
	}
	if st, _ := h.db.Stats(context.Background()); st.Pending != pending {
		t.Errorf("%d pending, want %d (nothing may be dropped while the target is down)", st.Pending, pending)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if peak > base+64 {
		t.Errorf("goroutines grew from %d to %d with %d deliveries pending", base, peak, pending)
	}
	if ms.HeapInuse > 256<<20 {
		t.Errorf("heap in use %d MiB with %d pending", ms.HeapInuse>>20, pending)
	}
	if held := h.w.peakHeld.Load(); held > maxHeld {
		t.Errorf("the worker held %d deliveries of the target, limit %d", held, maxHeld)
	}
	t.Logf("%d pending, target down: goroutines %d → peak %d, %d held in memory, heap in use %d MiB",
		pending, base, peak, h.w.peakHeld.Load(), ms.HeapInuse>>20)
}
