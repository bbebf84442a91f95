package outbound

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// TestCircuitBreakerSendsOneProbe: once the breaker is open, each cool-down
// lets exactly one request through; the other deliveries wait for its
// answer instead of going out with it.
func TestCircuitBreakerSendsOneProbe(t *testing.T) {
	es := fake.NewServer(t)
	es.Default = fake.Answer{Code: 503}
	h := newHarness(t, es)
	cooldown := 300 * time.Millisecond
	for i := range 4 {
		h.ingest(fmt.Sprint("t", i), fmt.Sprint("o", i), confirmed, "")
	}
	circuit := &circuitRecorder{}
	h.obs = circuit
	h.start(Policy{Initial: time.Millisecond, Max: time.Millisecond, MaxAttempts: 100, Concurrency: 4,
		Targets: map[string]TargetPolicy{"expertsender": {BreakerFailures: 1, BreakerCooldown: cooldown}}})
	reqs := es.WaitRequests(8, 10*time.Second)
	if len(reqs) < 8 {
		t.Fatalf("%d requests, want 8", len(reqs))
	}
	// The first four were in flight together before any answer; every one
	// after them is a probe, a cool-down after the previous one.
	for i := 4; i < 8; i++ {
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < cooldown*9/10 {
			t.Errorf("request %d went %v after request %d, want one probe per %v cool-down", i+1, gap, i, cooldown)
		}
	}
	if got := circuit.get(); got != "expertsender=true" {
		t.Errorf("circuit gauge changes = %q, want one open", got)
	}
	// The target answers again: the next probe closes the breaker.
	es.Default = fake.Answer{Code: 200, Body: "{}"}
	deadline := time.Now().Add(10 * time.Second)
	for circuit.get() != "expertsender=true expertsender=false" && time.Now().Before(deadline) {
		es.WaitRequests(len(es.Requests())+1, time.Second)
	}
	if got := circuit.get(); got != "expertsender=true expertsender=false" {
		t.Errorf("circuit gauge changes = %q, want open then closed", got)
	}
}

// circuitRecorder is an Observer that keeps the breaker's gauge changes.
type circuitRecorder struct {
	mu      sync.Mutex
	changes []string
}

func (c *circuitRecorder) Attempt(string, string, time.Duration) {}

func (c *circuitRecorder) SetCircuitOpen(target string, open bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, fmt.Sprintf("%s=%v", target, open))
}

func (c *circuitRecorder) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.changes, " ")
}

// TestRetryAtMovesWithTheBreaker: a delivery held back by an open breaker
// shows (next_attempt_at) when it will really be retried, whether it failed
// itself or was waiting behind the one that did.
func TestRetryAtMovesWithTheBreaker(t *testing.T) {
	es := fake.NewServer(t, fake.Answer{Code: 503})
	h := newHarness(t, es)
	cooldown := 1500 * time.Millisecond
	a := h.ingest("t1", "o1", confirmed, "")
	b := h.ingest("t2", "o2", confirmed, "")
	h.start(Policy{Initial: time.Millisecond, Max: time.Millisecond, MaxAttempts: 10, Concurrency: 4,
		Targets: map[string]TargetPolicy{"expertsender": {Concurrency: 1, BreakerFailures: 1, BreakerCooldown: cooldown}}})
	da := h.waitFor(a.Deliveries[0].ID, "one failed attempt", func(d *bridge.Delivery) bool { return len(d.Attempts) == 1 })
	opened := da.Attempts[0].At
	if got := da.NextAttemptAt.Sub(opened); got < cooldown-100*time.Millisecond {
		t.Errorf("failed delivery shows its retry %v after its attempt, want after the %v cool-down", got, cooldown)
	}
	db := h.waitFor(b.Deliveries[0].ID, "a retry time", func(d *bridge.Delivery) bool { return !d.NextAttemptAt.IsZero() || len(d.Attempts) > 0 })
	if len(db.Attempts) > 0 {
		t.Fatalf("the waiting delivery was sent while the breaker was open: %+v", db.Attempts)
	}
	if got := db.NextAttemptAt.Sub(opened); got < cooldown-100*time.Millisecond {
		t.Errorf("waiting delivery shows its attempt %v after the breaker opened, want after the %v cool-down", got, cooldown)
	}
	reqs := es.WaitRequests(3, 10*time.Second)
	if len(reqs) < 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	if early := da.NextAttemptAt.Sub(reqs[1].At); early > 50*time.Millisecond {
		t.Errorf("the retry went %v before the time shown", early)
	}
	if late := reqs[1].At.Sub(da.NextAttemptAt); late > 500*time.Millisecond {
		t.Errorf("the retry went %v after the time shown", late)
	}
}

// TestRetryAtMovesWithTheRateLimit: deliveries queued behind a rate limit
// show when their turn comes.
func TestRetryAtMovesWithTheRateLimit(t *testing.T) {
	es := fake.NewServer(t)
	h := newHarness(t, es)
	var last bridge.IngestResult
	for i := range 4 {
		last = h.ingest(fmt.Sprint("t", i), fmt.Sprint("o", i), confirmed, "")
	}
	start := time.Now()
	h.start(Policy{Initial: time.Millisecond, Concurrency: 4, Targets: map[string]TargetPolicy{"expertsender": {Rate: 1}}})
	d := h.waitFor(last.Deliveries[0].ID, "a retry time", func(d *bridge.Delivery) bool { return !d.NextAttemptAt.IsZero() || d.State == bridge.Done })
	if d.State == bridge.Done {
		t.Fatal("the fourth delivery went before its turn at 1/s")
	}
	if wait := d.NextAttemptAt.Sub(start); wait < 2*time.Second {
		t.Errorf("fourth delivery at 1/s shows it goes %v after the start, want about 3s", wait)
	}
	shown := d.NextAttemptAt
	d = h.waitDelivery(last.Deliveries[0].ID, bridge.Done)
	if off := d.Attempts[0].At.Sub(shown); off < -time.Second || off > time.Second {
		t.Errorf("it went %v from the time shown", off)
	}
}
