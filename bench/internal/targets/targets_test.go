package targets

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// run I of 2026-11-24 (README), with a disk figure and a floor.
var runI = Inputs{
	NoopPerS: 22007, IngestPerS: 6780, DeliverPerS: 4561,
	DiskBytesPerAck:   2400,
	AckP99Deliver1kMs: 7.1, NoopP99_1kMs: 2.0, FloorP99_1kMs: 2.5,
	RSSAnonMB: 22.6, Events: 100000, StoreBytesPerEvent: 1028,
}

func byKey(ts []Target) map[string]Target {
	m := map[string]Target{}
	for _, t := range ts {
		m[t.Key] = t
	}
	return m
}

func TestEvaluate(t *testing.T) {
	ts := Evaluate(runI)
	if len(ts) != 6 {
		t.Fatalf("%d targets, want 6", len(ts))
	}
	got := byKey(ts)
	for _, c := range []struct {
		key      string
		measured float64
		met      bool
	}{
		{"ingest_delivery_saturation_vs_noop", 4561.0 / 22007, true}, // 20.7% ≥ 15%
		{"durable_ingest_saturation_vs_noop", 6780.0 / 22007, true},  // 30.8% ≥ 25%
		{"disk_bytes_per_ack_ingest_delivery", 2400, true},
		{"ack_p99_1000_vs_noop_plus_floor", 7.1 / 4.5, false}, // 1.58 > 1.5
		{"rss_anon_mb_after_events", 22.6, true},
		{"store_bytes_per_event", 1028, true},
	} {
		g, ok := got[c.key]
		if !ok {
			t.Errorf("%s missing", c.key)
			continue
		}
		if math.Abs(g.Measured-c.measured) > 1e-9 || g.Met != c.met || g.Note != "" {
			t.Errorf("%s: measured %v met %v note %q, want %v %v", c.key, g.Measured, g.Met, g.Note, c.measured, c.met)
		}
	}
	for _, k := range []string{"ingest_delivery_saturation_vs_noop", "durable_ingest_saturation_vs_noop", "ack_p99_1000_vs_noop_plus_floor"} {
		if got[k].NoopPerS != 22007 {
			t.Errorf("%s: no-op rate %v beside the ratio, want 22007", k, got[k].NoopPerS)
		}
	}
}

func TestEvaluateLimits(t *testing.T) {
	in := runI
	in.DeliverPerS = 0.15 * in.NoopPerS // exactly the limit: met
	in.IngestPerS = 0.2499 * in.NoopPerS
	in.DiskBytesPerAck = 3001
	in.AckP99Deliver1kMs = 1.5 * 4.5
	in.RSSAnonMB = 30.01
	in.StoreBytesPerEvent = 1200
	got := byKey(Evaluate(in))
	for k, want := range map[string]bool{
		"ingest_delivery_saturation_vs_noop": true, "durable_ingest_saturation_vs_noop": false,
		"disk_bytes_per_ack_ingest_delivery": false, "ack_p99_1000_vs_noop_plus_floor": true,
		"rss_anon_mb_after_events": false, "store_bytes_per_event": true,
	} {
		if got[k].Met != want {
			t.Errorf("%s: met %v at %v, want %v", k, got[k].Met, got[k].Measured, want)
		}
	}
}

func TestNotMeasuredIsMissed(t *testing.T) {
	// A run that lost its no-op, its floor and its disk figure must not meet
	// anything that depends on them (a disk figure of 0 is not ≤ 3 KB).
	in := runI
	in.NoopPerS, in.FloorP99_1kMs, in.DiskBytesPerAck = 0, 0, 0
	in.Events = 2000
	got := byKey(Evaluate(in))
	for _, k := range []string{"ingest_delivery_saturation_vs_noop", "durable_ingest_saturation_vs_noop",
		"disk_bytes_per_ack_ingest_delivery", "ack_p99_1000_vs_noop_plus_floor"} {
		if got[k].Met || got[k].Note != "not measured" || got[k].Value() != "-" {
			t.Errorf("%s: %+v, want missed and not measured", k, got[k])
		}
	}
	for _, k := range []string{"rss_anon_mb_after_events", "store_bytes_per_event"} {
		if !strings.Contains(got[k].Note, "only 2,000 events") {
			t.Errorf("%s: note %q, want it to say only 2,000 events were stored", k, got[k].Note)
		}
	}
}

func TestWrite(t *testing.T) {
	var b strings.Builder
	if err := Write(&b, Evaluate(runI)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 {
		t.Fatalf("%d lines, want a header and 6 rows:\n%s", len(lines), out)
	}
	for _, want := range []struct{ row, text string }{
		{"ingest + delivery", "20.7%"}, {"ingest + delivery", "4,561/s ÷ no-op 22,007/s"}, {"ingest + delivery", "≥ 15%"},
		{"durable ingest", "30.8%"}, {"durable ingest", "≥ 25%"},
		{"disk bytes", "2,400 bytes"}, {"disk bytes", "≤ 3,000 bytes"},
		{"p99 ack", "1.58×"}, {"p99 ack", "7.10 ms ÷ (2.00 + 2.50 ms)"}, {"p99 ack", "22,007/s"}, {"p99 ack", "≤ 1.5×"},
		{"anonymous RSS", "22.6 MB"}, {"store size", "1,028 bytes"}, {"store size", "≤ 1,200 bytes"},
	} {
		found := false
		for _, l := range lines {
			if strings.Contains(l, want.row) && strings.Contains(l, want.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %q row with %q:\n%s", want.row, want.text, out)
		}
	}
	marks := map[string]string{"ingest + delivery": "✓", "p99 ack": "✗", "store size": "✓"}
	for _, l := range lines[1:] {
		for row, mark := range marks {
			if strings.HasPrefix(l, row) && !strings.HasSuffix(strings.TrimSpace(l), mark) {
				t.Errorf("row %q does not end in %s", l, mark)
			}
		}
	}
	// Every ratio row has the no-op rate; the others do not.
	ratios := []string{"ingest + delivery", "durable ingest", "p99 ack"}
	for _, l := range lines[1:] {
		isRatio := false
		for _, r := range ratios {
			isRatio = isRatio || strings.HasPrefix(l, r)
		}
		if strings.Contains(l, "22,007/s") != isRatio {
			t.Errorf("row %q: no-op rate shown %v, want %v", l, strings.Contains(l, "22,007/s"), isRatio)
		}
	}
}

func TestJSON(t *testing.T) {
	raw, err := json.Marshal(Evaluate(runI))
	if err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back[0]["met"] != true || back[0]["noop_per_s"] != 22007.0 || back[3]["met"] != false {
		t.Errorf("JSON: %s", raw)
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 22007.4: "22,007", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}
