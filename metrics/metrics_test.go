package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	raw, _ := io.ReadAll(rec.Body)
	return string(raw)
}

func hasLine(page, line string) bool {
	for _, l := range strings.Split(page, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// TestGaugesOfEveryConfiguredTarget: the outbox and breaker gauges of each
// configured target exist from the start at 0, and stay (at 0) once its
// backlog drains.
func TestGaugesOfEveryConfiguredTarget(t *testing.T) {
	var mu sync.Mutex
	stats := map[string]OutboxStat{}
	m := New(func() (map[string]OutboxStat, error) {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]OutboxStat{}
		for k, v := range stats {
			out[k] = v
		}
		return out, nil
	})
	m.Targets([]string{"expertsender", "http.crm"})
	want := func(lines ...string) {
		t.Helper()
		page := scrape(t, m)
		for _, l := range lines {
			if !hasLine(page, l) {
				t.Errorf("no line %q in /metrics", l)
			}
		}
	}
	zero := []string{
		`statusbridge_outbox_depth{target="expertsender"} 0`, `statusbridge_outbox_depth{target="http.crm"} 0`,
		`statusbridge_outbox_oldest_pending_seconds{target="expertsender"} 0`, `statusbridge_outbox_oldest_pending_seconds{target="http.crm"} 0`,
		`statusbridge_circuit_open{target="expertsender"} 0`, `statusbridge_circuit_open{target="http.crm"} 0`,
	}
	want(zero...)
	mu.Lock()
	stats["expertsender"] = OutboxStat{Pending: 3, OldestCreate: time.Now().Add(-time.Minute)}
	mu.Unlock()
	m.SetCircuitOpen("expertsender", true)
	want(`statusbridge_outbox_depth{target="expertsender"} 3`, `statusbridge_circuit_open{target="expertsender"} 1`, `statusbridge_outbox_depth{target="http.crm"} 0`)
	mu.Lock()
	delete(stats, "expertsender") // the backlog drained
	mu.Unlock()
	m.SetCircuitOpen("expertsender", false)
	want(zero...)
}

func TestSenderCircuitAndMappingGauges(t *testing.T) {
	m := New(nil)
	if out := scrape(t, m); !strings.Contains(out, "\nstatusbridge_sender 0\n") {
		t.Errorf("before SetSender, want statusbridge_sender 0 in:\n%s", out)
	}
	m.SetSender(true)
	m.SetCircuitOpen("expertsender", true)
	m.SetCircuitOpen("everlytic", false)
	m.SetMappingVersion("aaaaaaaaaaaa")
	m.SetMappingVersion("bbbbbbbbbbbb")
	out := scrape(t, m)
	for _, want := range []string{
		"\nstatusbridge_sender 1\n",
		`statusbridge_circuit_open{target="expertsender"} 1`,
		`statusbridge_circuit_open{target="everlytic"} 0`,
		`statusbridge_mapping_info{version="bbbbbbbbbbbb"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(out, "aaaaaaaaaaaa") {
		t.Error("statusbridge_mapping_info still has the previous version: it must have one series")
	}
	m.SetSender(false)
	if out := scrape(t, m); !strings.Contains(out, "\nstatusbridge_sender 0\n") {
		t.Error("SetSender(false) did not set statusbridge_sender to 0")
	}
}

// TestCommitterTime: each commit's parts add to their own series.
func TestCommitterTime(t *testing.T) {
	m := New(nil)
	m.Committer(time.Second, 2*time.Second, 3*time.Second, 4*time.Second, 5*time.Second, 6*time.Second)
	m.Committer(time.Second, 0, 0, 0, 500*time.Millisecond, 0)
	m.Committer(-time.Second, 0, 0, 0, 0, 0) // never panics, never decreases
	out := scrape(t, m)
	for _, want := range []string{
		`statusbridge_store_committer_seconds_total{part="idle"} 2`,
		`statusbridge_store_committer_seconds_total{part="linger"} 2`,
		`statusbridge_store_committer_seconds_total{part="apply"} 3`,
		`statusbridge_store_committer_seconds_total{part="spill"} 4`,
		`statusbridge_store_committer_seconds_total{part="sync"} 5.5`,
		`statusbridge_store_committer_seconds_total{part="rest"} 6`,
	} {
		if !hasLine(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
