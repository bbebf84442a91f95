package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/statusbridge/statusbridge/bench/internal/proc"
	"github.com/statusbridge/statusbridge/bench/internal/targets"
)

// Result is one measured phase.
type Result struct {
	Name         string  `json:"name"`
	Generator    string  `json:"generator"`                // wrk, go (vegeta closed loop), vegeta (open loop), in-process
	Rate         float64 `json:"rate_per_s"`               // requests answered per second (sent, for open loop)
	Intended     float64 `json:"intended_per_s,omitempty"` // the fixed rate asked for (0: closed loop)
	Throughput   float64 `json:"throughput_per_s"`         // 2xx per second
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	Success      float64 `json:"success_ratio"`
	OK           int     `json:"ok"`
	NonOK        int     `json:"non_2xx"`       // answered otherwise, or not at all (vegeta)
	SocketErrors int     `json:"socket_errors"` // wrk: connect, read, write errors and timeouts
	Refused      int     `json:"refused_503"`   // vegeta only: wrk does not tell 503s apart
	RefusedP99   float64 `json:"refused_p99_ms,omitempty"`
	E2EP50ms     float64 `json:"e2e_p50_ms,omitempty"`
	E2EP99ms     float64 `json:"e2e_p99_ms,omitempty"`
	// Server-side figures from statusbridge's own histograms (bucket
	// resolution): time in the handler for stored webhooks, and group commits.
	ServerP99ms     float64 `json:"server_p99_ms,omitempty"`
	CommitP50ms     float64 `json:"commit_p50_ms,omitempty"`
	CommitP99ms     float64 `json:"commit_p99_ms,omitempty"`
	WritesPerCommit float64 `json:"writes_per_commit,omitempty"`
	// PagesPerCommit is the pages (4 KB) each group commit wrote
	// (statusbridge_store_commit_pages).
	PagesPerCommit float64 `json:"pages_per_commit,omitempty"`
	CPUPerReqUs    float64 `json:"server_cpu_us_per_stored_webhook,omitempty"`
	// StoreCPUPerReqUs is the store server's CPU (PostgreSQL's processes)
	// per stored webhook.
	StoreCPUPerReqUs float64 `json:"store_cpu_us_per_stored_webhook,omitempty"`
	// GenCPUPerReqUs is the generator's CPU per request: wrk's own, or this
	// program's (the Go generators, and in delivery phases the no-op
	// ExpertSender), which share the machine's cores with the server.
	GenCPUPerReqUs float64 `json:"generator_cpu_us_per_request,omitempty"`
	// The server's disk writes over the phase (deliveries drained): see
	// Report.DiskBytesFrom.
	DiskWriteBytes  uint64  `json:"disk_write_bytes"`
	DiskBytesPerAck float64 `json:"disk_bytes_per_ack"`
	DiskNote        string  `json:"disk_note,omitempty"`
	// Committer is where statusbridge's bbolt group committer spent the
	// phase, as shares of its time by part (idle, linger, apply, spill,
	// sync, rest: statusbridge_store_committer_seconds_total); empty for
	// other servers and PostgreSQL.
	Committer map[string]float64 `json:"committer_share,omitempty"`
	// The wait for a quiet machine before the phase.
	Quiet      proc.Outcome `json:"quiet_wait"`
	QuietError string       `json:"quiet_error,omitempty"`
}

// Report is everything one run measured.
type Report struct {
	When      time.Time     `json:"when"`
	Machine   string        `json:"machine"`
	Store     string        `json:"store"`
	Generator GeneratorInfo `json:"generator"`
	Phases    []Result      `json:"phases"`
	// Phases that ran without a quiet machine (the wait gave up).
	NotQuiet      []string `json:"not_quiet_phases"`
	DiskBytesFrom string   `json:"disk_bytes_from"`
	RSSAnonMB     float64  `json:"rss_anon_mb"`
	RSSMB         float64  `json:"rss_total_mb"`
	StoreB        float64  `json:"store_bytes_per_event"`
	Events        int      `json:"events_stored"`
	// The denominators of the ratios, beside them.
	NoopPerS      float64            `json:"noop_per_s"`
	NoopP99_1kMs  float64            `json:"noop_p99_1000_ms"`
	FloorP99_1kMs float64            `json:"floor_bbolt_p99_1000_ms"`
	Ratios        map[string]float64 `json:"ratios"`
	// Issue #15's targets, each met or missed.
	Targets []targets.Target `json:"targets"`
	// Postgres holds issue #12's figures (-store postgres).
	Postgres *PostgresFigures `json:"postgres,omitempty"`
}

func printReport(out io.Writer, r *Report) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "statusbridge benchmark, %s, %s, store %s\n", r.When.Format(time.RFC3339), r.Machine, r.Store)
	fmt.Fprintf(w, "generators: saturation %s; fixed rate %s\n\n", r.Generator.Saturation, r.Generator.FixedRate)
	fmt.Fprintln(w, "PHASE\tGEN\tSENT/S\tOK/S\tP50 MS\tP99 MS\tNON-2XX\t503s\tE2E P99 MS\tSERVER P99 MS\tCOMMIT P50/P99 MS\tWRITES/COMMIT\tPAGES/COMMIT\tCPU µs/REQ\tGEN CPU µs/REQ\tDISK B/ACK\tQUIET")
	dash := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	whole := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", v)
	}
	for _, p := range r.Phases {
		commit := "-"
		if p.CommitP99ms > 0 {
			commit = dash(p.CommitP50ms) + " / " + dash(p.CommitP99ms)
		}
		refused := fmt.Sprint(p.Refused)
		if p.Generator == "wrk" || p.Generator == "in-process" {
			refused = "-"
		}
		quiet := fmt.Sprintf("%.0fs", p.Quiet.WaitedS)
		if !p.Quiet.Quiet {
			quiet += " NOT QUIET"
		}
		fmt.Fprintf(w, "%s\t%s\t%.0f\t%.0f\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Generator, p.Rate, p.Throughput, dash(p.P50ms), dash(p.P99ms),
			p.NonOK, refused, dash(p.E2EP99ms), dash(p.ServerP99ms), commit, dash(p.WritesPerCommit), dash(p.PagesPerCommit), whole(p.CPUPerReqUs), whole(p.GenCPUPerReqUs),
			whole(p.DiskBytesPerAck), quiet)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var notes []string
	for _, p := range r.Phases {
		if p.Intended > 0 && p.Rate < 0.9*p.Intended {
			notes = append(notes, fmt.Sprintf("%s: the load generator sent %.0f/s of the %.0f/s asked (it shares the CPU); "+
				"latency counts from the intended send times, so its lag is in the figures", p.Name, p.Rate, p.Intended))
		}
		if p.DiskNote != "" {
			notes = append(notes, p.Name+": "+p.DiskNote)
		}
		if p.QuietError != "" {
			notes = append(notes, p.Name+": quiet wait failed: "+p.QuietError)
		}
	}
	if len(r.NotQuiet) > 0 {
		notes = append(notes, fmt.Sprintf("the machine was not quiet before %d phase(s) (others above the CPU limit for the whole wait), which ran anyway: %s",
			len(r.NotQuiet), strings.Join(r.NotQuiet, "; ")))
	}
	notes = append(notes, r.Generator.Note)
	if g := r.Generator.GoVsWrkNoop; g > 0 {
		verdict := "enough to stand in for wrk (≥ 90%)"
		if g < 0.9 {
			verdict = "not enough to stand in for wrk (< 90%)"
		}
		notes = append(notes, fmt.Sprintf("the Go generator reached %.0f%% of wrk's rate on the no-op: %s", 100*g, verdict))
	}
	for _, n := range notes {
		fmt.Fprintln(out, "note: "+n)
	}

	if err := printCommitter(out, r.Phases); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nRSS after %d events: %.1f MB anonymous, %.1f MB total; store %.0f bytes per event\n\n", r.Events, r.RSSAnonMB, r.RSSMB, r.StoreB)
	fmt.Fprintln(w, "FIGURE (issue 5)\tMEASURED\tNO-OP\tTARGET")
	noop := fmt.Sprintf("%.0f/s", r.NoopPerS)
	noopP99 := fmt.Sprintf("%.0f/s, p99 %.2f ms", r.NoopPerS, r.NoopP99_1kMs)
	rows := []struct {
		name, target string
		v            float64
		pct          bool
		noop         string
	}{
		{"one bbolt Update per request, saturation (req/s)", "reference", r.Ratios["bolt_update_per_request_per_s"], false, ""},
		{"  … its p99 at 500/s (ms)", "reference", r.Ratios["bolt_update_per_request_p99_500_ms"], false, ""},
		{"bbolt group commit floor (bench/floor), p99 at 1,000/s (ms)", "reference", r.FloorP99_1kMs, false, ""},
		{"durable ingest at saturation ÷ no-op Echo", "≥ 25%", r.Ratios["durable_ingest_saturation_vs_noop"], true, noop},
		{"ingest + delivery at saturation ÷ no-op Echo", "≥ 15%", r.Ratios["ingest_delivery_saturation_vs_noop"], true, noop},
		{"p99 ack at 1,000/s with delivery (ms)", "≤ 3 ms", r.Ratios["ack_p99_1000_with_delivery_ms"], false, ""},
		{"  … ÷ no-op p99", "≤ 5×", r.Ratios["ack_p99_1000_vs_noop_p99"], false, noopP99},
		{"  … server-side, handler → answer (ms)", "reference", r.Ratios["ack_p99_1000_with_delivery_server_ms"], false, ""},
		{"end-to-end p99 at 1,000/s (ms)", "≤ 4 ms", r.Ratios["e2e_p99_1000_ms"], false, ""},
		{"throughput during 2× overload ÷ capacity", "≥ 90%", r.Ratios["overload_throughput_vs_capacity"], true, noop},
		{"  p99 of accepted during overload (ms)", "≤ 50 ms or fast 503s", r.Ratios["overload_p99_ms"], false, ""},
		{"  p99 of 503s during overload (ms)", "fast", r.Ratios["overload_refused_p99_ms"], false, ""},
		{"  p99 of accepted, server-side (ms)", "reference", r.Ratios["overload_server_p99_ms"], false, ""},
		{"  rate the generator sent ÷ asked", "reference", r.Ratios["overload_sent_vs_asked"], true, ""},
		{"anonymous RSS after the events (MB)", "≤ 30 MB", r.RSSAnonMB, false, ""},
		{"store size per event (bytes)", "≤ 1,200", r.StoreB, false, ""},
	}
	for _, row := range rows {
		v := fmt.Sprintf("%.2f", row.v)
		if row.pct {
			v = fmt.Sprintf("%.1f%%", 100*row.v)
		}
		n := row.noop
		if n == "" {
			n = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", row.name, v, n, row.target)
	}
	fmt.Fprintln(w)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := targets.Write(out, r.Targets); err != nil {
		return err
	}
	return printPostgres(out, r.Postgres)
}

// printPostgres writes issue #12's figures, when the run has them.
func printPostgres(out io.Writer, f *PostgresFigures) error {
	if f == nil {
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nPOSTGRESQL (issue 12)\tMEASURED\n")
	fmt.Fprintf(w, "durable ingest at saturation, 1 replica\t%.0f/s\n", f.Ingest1PerS)
	fmt.Fprintf(w, "durable ingest at saturation, 2 replicas\t%.0f/s\n", f.Ingest2PerS)
	fmt.Fprintf(w, "ingest + delivery at saturation, 1 replica\t%.0f/s\n", f.Deliver1PerS)
	fmt.Fprintf(w, "ingest + delivery at saturation, 2 replicas\t%.0f/s\n", f.Deliver2PerS)
	fmt.Fprintf(w, "p99 ack at 1,000/s with delivery, 1 replica\t%.2f ms (server-side %.2f ms, end-to-end %.2f ms)\n",
		f.AckP99_1kMs, f.ServerP99_1kMs, f.E2EP99_1kMs)
	fmt.Fprintf(w, "CPU per webhook at saturation, ingest + delivery, 1 replica\tstatusbridge %.0f µs, PostgreSQL %.0f µs\n",
		f.CPUPerWebhookUs, f.PostgresCPUPerReq)
	fmt.Fprintf(w, "commit p50 / p99, same phase\t%.2f / %.2f ms\n", f.CommitP50ms, f.CommitP99ms)
	fmt.Fprintf(w, "store size per event (tables and indexes)\t%.0f bytes\n", f.BytesPerEvent)
	mark := "✗"
	if f.Met {
		mark = "✓"
	}
	fmt.Fprintf(w, "ISSUE #12 TARGET\t1 replica ingest + delivery ÷ bbolt ingest + delivery = %.0f / %.0f/s = %.1f%% %s (target ≥ %.0f%%)\n",
		f.Deliver1PerS, f.BboltDeliverPerS, 100*f.Deliver1VsBbolt, mark, 100*f.Target)
	fmt.Fprintf(w, "settings\t%s\n", f.Settings)
	return w.Flush()
}

// committerParts are the parts of statusbridge_store_committer_seconds_total,
// in the order of a commit's life.
var committerParts = []string{"idle", "linger", "apply", "spill", "sync", "rest"}

// committerShares reads, from two scrapes, the share of the committer's time
// each part took between them (nil when the server has no committer).
func committerShares(before, after map[string]float64) map[string]float64 {
	d, total := map[string]float64{}, 0.0
	for _, p := range committerParts {
		k := `statusbridge_store_committer_seconds_total{part="` + p + `"}`
		d[p] = after[k] - before[k]
		total += d[p]
	}
	if total <= 0 {
		return nil
	}
	for p := range d {
		d[p] /= total
	}
	return d
}

// printCommitter writes, for the phases that have it, where the group
// committer's time went.
func printCommitter(out io.Writer, phases []Result) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := false
	for _, p := range phases {
		if p.Committer == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nCOMMITTER'S TIME (bbolt)\tIDLE\tLINGER\tAPPLY\tSPILL\tSYNC\tREST")
			header = true
		}
		fmt.Fprint(w, p.Name)
		for _, part := range committerParts {
			fmt.Fprintf(w, "\t%.1f%%", 100*p.Committer[part])
		}
		fmt.Fprintln(w)
	}
	if header {
		fmt.Fprintln(w, "idle: waiting for a first write; linger: waiting for more to share the commit; apply: the writes (decide, encode, put);"+
			" spill: bbolt encoding pages; sync: pwrite + fdatasync of pages and meta; rest: begin, dedup merges, answering")
	}
	return w.Flush()
}
