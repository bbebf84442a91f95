package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bench/internal/wrk"
)

func TestPayload(t *testing.T) {
	a, b := payload(1234567), payload(1234568)
	if string(a) == string(b) {
		t.Fatal("two ids, one body")
	}
	if n := len(a); n < 1200 || n > 1500 {
		t.Errorf("body is %d bytes, want the documented ~1.3 KB", n)
	}
	var p struct {
		Event string `json:"event"`
		Data  struct {
			ID   string `json:"id"`
			Data struct {
				ID           string `json:"id"`
				ExternalID   string `json:"external_id"`
				TicketNumber string `json:"ticket_number"`
				Information  struct {
					CampaignData map[string]any `json:"campaign_data"`
				} `json:"information"`
			} `json:"data"`
			Changes map[string]string `json:"changes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(a, &p); err != nil {
		t.Fatal(err)
	}
	d := p.Data
	if p.Event != "ticket.updated" || d.ID != "bench-1234567" || d.Data.ID != d.ID || d.Data.ExternalID != "ORDER-1234567" ||
		d.Data.TicketNumber != "1234567" || d.Data.Information.CampaignData["order_id"] != "1234567" ||
		d.Changes["ticket_status_id"] != "yqdwrbka7kz69v8e" {
		t.Errorf("decoded %+v", p)
	}
	ids, times := 0, 0
	for _, h := range body.Holes {
		switch h {
		case wrk.HoleID:
			ids++
		case wrk.HoleTime:
			times++
		}
	}
	if ids != 5 || times != 2 || len(body.Parts) != 8 {
		t.Errorf("the body has %d places for the id, want 5, and %d for the time, want 2", ids, times)
	}
	// The changes carry the time of the call, as Digishare's carry the time
	// of the change.
	for _, k := range []string{"date_status", "updated_at"} {
		at, err := time.Parse(time.DateTime, d.Changes[k])
		if err != nil || time.Since(at) > time.Minute || time.Until(at) > time.Minute {
			t.Errorf("changes.%s = %q, want the time of the call", k, d.Changes[k])
		}
	}
}

func TestHistQuantile(t *testing.T) {
	before := map[string]float64{
		`h_bucket{le="0.001"}`: 10, `h_bucket{le="0.002"}`: 10, `h_bucket{le="0.004"}`: 10, `h_bucket{le="+Inf"}`: 10, "h_count": 10,
	}
	after := map[string]float64{
		`h_bucket{le="0.001"}`: 60, `h_bucket{le="0.002"}`: 100, `h_bucket{le="0.004"}`: 108, `h_bucket{le="+Inf"}`: 110, "h_count": 110,
	}
	// 100 observed: 50 ≤ 1 ms, 40 in (1, 2], 8 in (2, 4], 2 above.
	if got := histQuantile(before, after, "h", 0.5); math.Abs(got-0.001) > 1e-12 {
		t.Errorf("p50 %v, want 0.001", got)
	}
	if got := histQuantile(before, after, "h", 0.7); math.Abs(got-0.0015) > 1e-12 {
		t.Errorf("p70 %v, want 0.0015", got)
	}
	// p99 is above the last finite bound: that bound, never +Inf.
	if got := histQuantile(before, after, "h", 0.99); got != 0.004 {
		t.Errorf("p99 %v, want 0.004 (the last finite bound)", got)
	}
	if got := histQuantile(before, before, "h", 0.99); got != 0 {
		t.Errorf("nothing observed: %v, want 0", got)
	}
}

func TestDrained(t *testing.T) {
	for _, c := range []struct {
		m    map[string]float64
		want bool
	}{
		{map[string]float64{}, false}, // the scrape failed
		{map[string]float64{`statusbridge_webhooks_total{outcome="accepted"}`: 5}, true},
		{map[string]float64{`statusbridge_webhooks_total{outcome="accepted"}`: 5, `statusbridge_outbox_depth{target="expertsender"}`: 3}, false},
		{map[string]float64{"process_cpu_seconds_total": 1, `statusbridge_outbox_depth{target="expertsender"}`: 0}, true},
	} {
		if got := drained(c.m); got != c.want {
			t.Errorf("drained(%v) = %v, want %v", c.m, got, c.want)
		}
	}
}

func TestReportJSONAndTable(t *testing.T) {
	// A run whose no-op measured nothing still makes valid JSON and a table.
	rep := &Report{Ratios: map[string]float64{"durable_ingest_saturation_vs_noop": div(100, 0)}, NotQuiet: []string{"ingest saturation"},
		Phases: []Result{{Name: "ingest saturation", Generator: "wrk", OK: 10}}}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := printReport(&out, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NOT QUIET", "not quiet before 1 phase(s)", "ISSUE #15 TARGET"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestStoreFlag(t *testing.T) {
	st, err := newStore("bbolt", "/tmp/x")
	if err != nil || st.name() != "bbolt" || st.configSection("deliver") != `store: { path: "/tmp/x/deliver.db" }` {
		t.Errorf("bbolt: %v %v", st, err)
	}
	pg, err := newStore("postgres", "/tmp/x")
	if err != nil || pg.name() != "postgres" || !strings.Contains(pg.configSection("pg1_deliver"), "driver: postgres") ||
		!strings.Contains(pg.configSection("pg1_deliver"), "schema: pg1_deliver") {
		t.Errorf("postgres: %v %v", pg, err)
	}
	for _, k := range []string{"sqlite", ""} {
		if _, err := newStore(k, "/tmp/x"); err == nil {
			t.Errorf("-store %q accepted", k)
		}
	}
}

func TestPostgresReport(t *testing.T) {
	var out strings.Builder
	f := &PostgresFigures{Ingest1PerS: 3000, Deliver1PerS: 2000, BboltDeliverPerS: 5000, Target: pgTarget}
	f.Deliver1VsBbolt = f.Deliver1PerS / f.BboltDeliverPerS
	f.Met = f.Deliver1VsBbolt >= pgTarget
	if err := printPostgres(&out, f); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2000 / 5000/s = 40.0% ✓ (target ≥ 33%)") {
		t.Errorf("report:\n%s", out.String())
	}
	out.Reset()
	f.Deliver1PerS, f.Deliver1VsBbolt, f.Met = 1000, 0.2, false
	_ = printPostgres(&out, f)
	if !strings.Contains(out.String(), "20.0% ✗") {
		t.Errorf("report:\n%s", out.String())
	}
	if err := printPostgres(&out, nil); err != nil {
		t.Error(err)
	}
}

func TestCommitterShares(t *testing.T) {
	k := func(p string) string { return `statusbridge_store_committer_seconds_total{part="` + p + `"}` }
	before := map[string]float64{k("idle"): 1, k("sync"): 1}
	after := map[string]float64{k("idle"): 2, k("linger"): 0.5, k("apply"): 0.5, k("sync"): 3, k("rest"): 0}
	got := committerShares(before, after)
	want := map[string]float64{"idle": 0.25, "linger": 0.125, "apply": 0.125, "spill": 0, "sync": 0.5, "rest": 0}
	for p, w := range want {
		if math.Abs(got[p]-w) > 1e-9 {
			t.Errorf("share of %s = %v, want %v", p, got[p], w)
		}
	}
	if committerShares(before, before) != nil {
		t.Error("no committer time between scrapes: want nil shares")
	}
	var out strings.Builder
	if err := printCommitter(&out, []Result{{Name: "ingest saturation", Committer: got}, {Name: "noop"}}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "ingest saturation") || !strings.Contains(s, "50.0%") || strings.Contains(s, "noop") {
		t.Errorf("committer table:\n%s", s)
	}
}
