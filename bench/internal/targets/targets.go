// Package targets turns one bench run's figures into issue #15's targets:
// each figure, how it was computed, whether it meets its target (✓ / ✗),
// and the no-op Echo rate of the same run beside every ratio, so a reader
// sees how fast the shared machine was when the ratio was taken.
package targets

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Inputs are the figures of one run the targets are computed from.
type Inputs struct {
	NoopPerS    float64 // no-op Echo at saturation (2xx/s)
	IngestPerS  float64 // durable ingest (targets paused) at saturation
	DeliverPerS float64 // ingest + delivery to the no-op ExpertSender at saturation

	// Disk bytes written by the server (/proc/<pid>/io write_bytes) per
	// acknowledged event, ingest + delivery at saturation, deliveries drained.
	DiskBytesPerAck float64

	AckP99Deliver1kMs float64 // client p99 of the ack at 1,000/s with delivery
	NoopP99_1kMs      float64 // no-op Echo's p99 at 1,000/s
	FloorP99_1kMs     float64 // bench/floor's bbolt group commit p99 at 1,000/s

	RSSAnonMB          float64 // anonymous RSS after Events events, outbox drained (MiB)
	Events             int     // events stored when RSS and size were read
	StoreBytesPerEvent float64 // store size ÷ Events
}

// WantEvents is the event count the RSS and size targets are stated for.
const WantEvents = 100000

// Target is one row of the table.
type Target struct {
	Key      string  `json:"key"`
	Figure   string  `json:"figure"`
	Measured float64 `json:"measured"` // 0 with Note "not measured"
	Unit     string  `json:"unit"`     // ratio, bytes, MB
	Op       string  `json:"op"`       // ">=" or "<="
	Limit    float64 `json:"limit"`
	Met      bool    `json:"met"`
	// How Measured was computed, in the figures it came from.
	Detail string `json:"detail"`
	// NoopPerS is the no-op rate of the same run, beside every ratio.
	NoopPerS float64 `json:"noop_per_s,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// Evaluate computes every target from in. A figure that was not measured
// (zero, or a zero it would be divided by) is missed, with a note: a target
// is never met by a figure the run lacks.
func Evaluate(in Inputs) []Target {
	ratio := func(key, figure string, num, den, limit float64) Target {
		t := Target{Key: key, Figure: figure, Unit: "ratio", Op: ">=", Limit: limit, NoopPerS: in.NoopPerS,
			Detail: fmt.Sprintf("%s/s ÷ no-op %s/s", thousands(num), thousands(den))}
		if num <= 0 || den <= 0 {
			t.Note = "not measured"
			return t
		}
		t.Measured = num / den
		t.Met = t.Measured >= limit
		return t
	}
	atMost := func(key, figure, unit string, v, limit float64, detail string) Target {
		t := Target{Key: key, Figure: figure, Unit: unit, Op: "<=", Limit: limit, Detail: detail}
		if v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			t.Note = "not measured"
			return t
		}
		t.Measured = v
		t.Met = v <= limit
		return t
	}
	ts := []Target{
		ratio("ingest_delivery_saturation_vs_noop", "ingest + delivery at saturation ÷ no-op Echo", in.DeliverPerS, in.NoopPerS, 0.15),
		ratio("durable_ingest_saturation_vs_noop", "durable ingest at saturation ÷ no-op Echo", in.IngestPerS, in.NoopPerS, 0.25),
		atMost("disk_bytes_per_ack_ingest_delivery", "disk bytes written per acknowledged event, ingest + delivery", "bytes",
			in.DiskBytesPerAck, 3000, "server's write_bytes ÷ 2xx, saturation phase, deliveries drained"),
	}
	p99 := Target{Key: "ack_p99_1000_vs_noop_plus_floor", Figure: "p99 ack at 1,000/s with delivery ÷ (no-op p99 + bbolt floor p99)",
		Unit: "ratio", Op: "<=", Limit: 1.5, NoopPerS: in.NoopPerS,
		Detail: fmt.Sprintf("%.2f ms ÷ (%.2f + %.2f ms)", in.AckP99Deliver1kMs, in.NoopP99_1kMs, in.FloorP99_1kMs)}
	if in.AckP99Deliver1kMs > 0 && in.NoopP99_1kMs > 0 && in.FloorP99_1kMs > 0 {
		p99.Measured = in.AckP99Deliver1kMs / (in.NoopP99_1kMs + in.FloorP99_1kMs)
		p99.Met = p99.Measured <= p99.Limit
	} else {
		p99.Note = "not measured"
	}
	ts = append(ts, p99)
	events := fmt.Sprintf("after %s events", thousands(float64(in.Events)))
	rss := atMost("rss_anon_mb_after_events", "anonymous RSS after 100,000 events", "MB", in.RSSAnonMB, 30, events+", outbox drained")
	size := atMost("store_bytes_per_event", "store size per event", "bytes", in.StoreBytesPerEvent, 1200, "file size ÷ events, "+events)
	for _, t := range []*Target{&rss, &size} {
		if t.Note == "" && in.Events < WantEvents {
			t.Note = fmt.Sprintf("only %s events stored (-events); the target is stated for 100,000", thousands(float64(in.Events)))
		}
	}
	return append(ts, rss, size)
}

// Mark is ✓ for a met target and ✗ for a missed one.
func (t Target) Mark() string {
	if t.Met {
		return "✓"
	}
	return "✗"
}

// Value is Measured as the table shows it.
func (t Target) Value() string {
	if t.Note == "not measured" {
		return "-"
	}
	switch t.Unit {
	case "ratio":
		if t.Op == ">=" {
			return fmt.Sprintf("%.1f%%", 100*t.Measured)
		}
		return fmt.Sprintf("%.2f×", t.Measured)
	case "MB":
		return fmt.Sprintf("%.1f MB", t.Measured)
	default:
		return thousands(t.Measured) + " " + t.Unit
	}
}

// Want is the target as the table shows it.
func (t Target) Want() string {
	op := map[string]string{">=": "≥", "<=": "≤"}[t.Op]
	switch {
	case t.Unit == "ratio" && t.Op == ">=":
		return fmt.Sprintf("%s %.0f%%", op, 100*t.Limit)
	case t.Unit == "ratio":
		return fmt.Sprintf("%s %.1f×", op, t.Limit)
	case t.Unit == "MB":
		return fmt.Sprintf("%s %.0f MB", op, t.Limit)
	default:
		return fmt.Sprintf("%s %s %s", op, thousands(t.Limit), t.Unit)
	}
}

// Write prints the table: figure, measured, how, the no-op rate, target, ✓/✗.
func Write(w io.Writer, ts []Target) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ISSUE #15 TARGET\tMEASURED\tFROM\tNO-OP\tTARGET\tMET")
	for _, t := range ts {
		noop := "-"
		if t.NoopPerS > 0 {
			noop = thousands(t.NoopPerS) + "/s"
		}
		from := t.Detail
		if t.Note != "" {
			from += " (" + t.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Figure, t.Value(), from, noop, t.Want(), t.Mark())
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("targets table: %w", err)
	}
	return nil
}

// thousands formats v rounded to a whole number with commas: 22007 → 22,007.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
