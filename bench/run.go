package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/statusbridge/statusbridge/bench/internal/floor"
	"github.com/statusbridge/statusbridge/bench/internal/latency"
	"github.com/statusbridge/statusbridge/bench/internal/proc"
	"github.com/statusbridge/statusbridge/bench/internal/targets"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// bench is one run's state.
type bench struct {
	dir    string       // temporary files, removed at the end
	gen    generator    // what drives the saturation phases
	store  storeBackend // statusbridge's store, and its config
	pg     *pgStore     // -store postgres: the PostgreSQL phases' store (else nil)
	quiet  proc.Waiter
	rep    *Report
	es     *expertSender
	satDur time.Duration // saturation phases (wrk's -d)
	fixDur time.Duration // fixed-rate phases
}

func run(o options) error {
	b := &bench{satDur: 8 * time.Second, fixDur: 10 * time.Second}
	overload := 20 * time.Second
	if o.short {
		b.satDur, b.fixDur, overload = 3*time.Second, 3*time.Second, 5*time.Second
	}
	if o.events < 1 || o.quietMax < 0 || o.quietCPU <= 0 {
		return fmt.Errorf("-events %d, -quiet-max %v, -quiet-cpu %v: must be positive", o.events, o.quietMax, o.quietCPU)
	}
	dir, err := os.MkdirTemp("", "statusbridge-bench-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	if o.keep {
		defer fmt.Fprintln(os.Stderr, "kept the run's stores and configurations in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b.dir = dir
	// statusbridge's phases run on bbolt; -store postgres adds the same on
	// PostgreSQL, in the same run.
	if b.store, err = newStore("bbolt", dir); err != nil {
		return err
	}
	switch o.store {
	case "bbolt":
	case "postgres":
		st, err := newStore(o.store, dir)
		if err != nil {
			return err
		}
		b.pg = st.(*pgStore)
		b.pg.maxConns = o.pgMaxConns
	default:
		return fmt.Errorf("-store %q: want bbolt or postgres", o.store)
	}
	if b.gen, err = chooseGenerator(o.gen, dir); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, b.gen.note)
	b.quiet = proc.Waiter{MaxCores: o.quietCPU, Window: 2 * time.Second, Max: o.quietMax,
		Sample: func() (proc.Snapshot, error) { return proc.Read(os.DirFS("/proc")) },
		Roots: func() []int {
			roots := append([]int{os.Getpid()}, b.store.ownPIDs()...)
			if b.pg != nil {
				roots = append(roots, b.pg.ownPIDs()...)
			}
			return roots
		},
		Sleep: time.Sleep, Now: time.Now}

	bin := filepath.Join(dir, "statusbridge")
	fmt.Fprintln(os.Stderr, "building statusbridge…")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	if b.es, err = newExpertSender(); err != nil {
		return err
	}
	defer b.es.Close()
	b.rep = &Report{When: time.Now().UTC(), Machine: machine(), Store: o.store, Ratios: map[string]float64{},
		Generator: b.gen.info(b.satDur), DiskBytesFrom: diskBytesFrom, NotQuiet: []string{}}
	fixed := func(perS int) vegeta.Rate { return vegeta.Rate{Freq: perS, Per: time.Second} }

	// 1. No-op Echo.
	noopAddr := freeAddr()
	noop, err := startProcess(self, []string{"-noop", noopAddr}, noopAddr)
	if err != nil {
		return fmt.Errorf("no-op Echo: %w", err)
	}
	fmt.Fprintln(os.Stderr, "no-op Echo:")
	noopSat, err := b.phase(noop, phaseOpts{}, func() (Result, error) { return b.saturate("noop saturation", noopAddr, b.satDur) })
	if err != nil {
		return err
	}
	if b.gen.wrk != "" {
		// The Go generator on the same no-op: how far it is from wrk.
		goSat, err := b.phase(noop, phaseOpts{}, func() (Result, error) {
			return attack("noop saturation (Go generator)", noopAddr, nil, vegeta.Rate{}, b.satDur)
		})
		if err != nil {
			return err
		}
		if noopSat.Throughput > 0 {
			b.rep.Generator.GoVsWrkNoop = goSat.Throughput / noopSat.Throughput
		}
	}
	noop1k, err := b.phase(noop, phaseOpts{}, func() (Result, error) { return attack("noop 1000/s", noopAddr, nil, fixed(1000), b.fixDur) })
	if err != nil {
		return err
	}
	noop.stop()

	// 1b. The disk's floor for a durable ack (bench/floor's bbolt design), in the same minutes.
	fmt.Fprintln(os.Stderr, "the disk's floor (bench/floor, bbolt group commit, in-process):")
	floor1k, err := b.phase(nil, phaseOpts{}, func() (Result, error) { return b.floor(1000, b.fixDur) })
	if err != nil {
		return err
	}

	// 1c. The issue-5 reference: one bbolt Update (two fdatasyncs) per request.
	boltAddr := freeAddr()
	boltSrv, err := startProcess(self, []string{"-bolt", boltAddr, "-bolt-path", filepath.Join(dir, "baseline.db")}, boltAddr)
	if err != nil {
		return fmt.Errorf("bbolt Update per request: %w", err)
	}
	fmt.Fprintln(os.Stderr, "one bbolt Update per request:")
	boltSat, err := b.phase(boltSrv, phaseOpts{}, func() (Result, error) {
		return b.saturate("bbolt Update/request saturation", boltAddr, b.satDur)
	})
	if err != nil {
		return err
	}
	bolt500, err := b.phase(boltSrv, phaseOpts{}, func() (Result, error) {
		return attack("bbolt Update/request 500/s", boltAddr, nil, fixed(500), b.fixDur)
	})
	if err != nil {
		return err
	}
	boltSrv.stop()

	// 2. Ingest only (deliveries recorded as skipped, nothing sent).
	ingestAddr := freeAddr()
	ingest, err := startBridge(bin, dir, "ingest", ingestAddr, "", b.store)
	if err != nil {
		return fmt.Errorf("statusbridge (targets paused): %w", err)
	}
	fmt.Fprintln(os.Stderr, "statusbridge, targets paused:")
	bridge := phaseOpts{bridge: true}
	ingestSat, err := b.phase(ingest, bridge, func() (Result, error) { return b.saturate("ingest saturation", ingestAddr, b.satDur) })
	if err != nil {
		return err
	}
	for _, perS := range []int{1000, 5000} {
		if _, err := b.phase(ingest, bridge, func() (Result, error) {
			return attack(fmt.Sprintf("ingest %d/s", perS), ingestAddr, nil, fixed(perS), b.fixDur)
		}); err != nil {
			return err
		}
	}
	capacity := ingestSat.Throughput
	over, err := b.phase(ingest, bridge, func() (Result, error) {
		return attack(fmt.Sprintf("overload 2× capacity (%.0f/s)", 2*capacity), ingestAddr, nil, fixed(int(2*capacity)), overload)
	})
	if err != nil {
		return err
	}
	ingest.stop()

	// 3. Ingest and delivery to the no-op ExpertSender.
	deliverAddr := freeAddr()
	deliver, err := startBridge(bin, dir, "deliver", deliverAddr, b.es.URL(), b.store)
	if err != nil {
		return fmt.Errorf("statusbridge (delivering): %w", err)
	}
	fmt.Fprintln(os.Stderr, "statusbridge delivering to a no-op ExpertSender:")
	delivering := phaseOpts{bridge: true, drain: true}
	deliverSat, err := b.phase(deliver, delivering, func() (Result, error) {
		return b.saturate("ingest+delivery saturation", deliverAddr, b.satDur)
	})
	if err != nil {
		return err
	}
	b.es.reset()
	deliver1k, err := b.phase(deliver, delivering, func() (Result, error) {
		return attack("ingest+delivery 1000/s", deliverAddr, b.es, fixed(1000), b.fixDur)
	})
	if err != nil {
		return err
	}

	// 4. Fill to the event count, then read RSS and the store's size.
	stored := deliverSat.OK + deliver1k.OK // every 2xx of a new id is a stored event
	if stored < o.events {
		fill, err := b.phase(deliver, delivering, func() (Result, error) { return b.fill(deliverAddr, o.events-stored, deliverSat.Throughput) })
		if err != nil {
			return err
		}
		stored += fill.OK
	}
	if !deliver.waitDrained(2 * time.Minute) {
		fmt.Fprintln(os.Stderr, "note: the outbox did not drain in 2 minutes; RSS is read with a backlog")
	}
	time.Sleep(2 * time.Second) // RSS in the steady state, not right after the last commit
	b.rep.RSSAnonMB, b.rep.RSSMB = rss(deliver.cmd.Process.Pid)
	deliver.stop()
	size, err := b.store.sizeBytes("deliver")
	if err != nil {
		return err
	}
	b.rep.Events = stored
	b.rep.StoreB = float64(size) / float64(max(b.rep.Events, 1))

	// 5. The same on PostgreSQL (-store postgres), against the bbolt figures above.
	if b.pg != nil {
		if err := b.postgresPhases(bin, b.pg, deliverSat); err != nil {
			return err
		}
	}

	b.rep.NoopPerS = noopSat.Throughput
	b.rep.NoopP99_1kMs = noop1k.P99ms
	b.rep.FloorP99_1kMs = floor1k.P99ms
	r := b.rep.Ratios
	r["noop_saturation_per_s"] = noopSat.Throughput // beside the ratios over it
	r["durable_ingest_saturation_vs_noop"] = div(ingestSat.Throughput, noopSat.Throughput)
	r["ingest_delivery_saturation_vs_noop"] = div(deliverSat.Throughput, noopSat.Throughput)
	r["ack_p99_1000_with_delivery_ms"] = deliver1k.P99ms
	r["ack_p99_1000_vs_noop_p99"] = div(deliver1k.P99ms, noop1k.P99ms)
	r["ack_p99_1000_vs_noop_plus_floor_p99"] = div(deliver1k.P99ms, noop1k.P99ms+floor1k.P99ms)
	r["floor_bbolt_group_commit_p99_1000_ms"] = floor1k.P99ms
	r["bolt_update_per_request_per_s"] = boltSat.Throughput
	r["bolt_update_per_request_p99_500_ms"] = bolt500.P99ms
	r["e2e_p99_1000_ms"] = deliver1k.E2EP99ms
	r["overload_throughput_vs_capacity"] = div(over.Throughput, capacity)
	r["overload_p99_ms"] = over.P99ms
	r["overload_refused_p99_ms"] = over.RefusedP99
	r["disk_bytes_per_ack_ingest_delivery"] = deliverSat.DiskBytesPerAck
	// The same latencies as the server saw them, and how far the generator
	// (on the same cores) kept to its rate: what the client-side figures
	// hold besides the server's own time.
	r["ack_p99_1000_with_delivery_server_ms"] = deliver1k.ServerP99ms
	r["overload_server_p99_ms"] = over.ServerP99ms
	if over.Intended > 0 {
		r["overload_sent_vs_asked"] = div(over.Rate, over.Intended)
	}
	b.rep.Targets = targets.Evaluate(targets.Inputs{
		NoopPerS: noopSat.Throughput, IngestPerS: ingestSat.Throughput, DeliverPerS: deliverSat.Throughput,
		DiskBytesPerAck:   deliverSat.DiskBytesPerAck,
		AckP99Deliver1kMs: deliver1k.P99ms, NoopP99_1kMs: noop1k.P99ms, FloorP99_1kMs: floor1k.P99ms,
		RSSAnonMB: b.rep.RSSAnonMB, Events: b.rep.Events, StoreBytesPerEvent: b.rep.StoreB,
	})
	if err := printReport(os.Stdout, b.rep); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	raw, err := json.MarshalIndent(b.rep, "", "  ")
	if err != nil {
		return fmt.Errorf("results JSON: %w", err)
	}
	if err := os.WriteFile(o.out, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("results JSON: %w", err)
	}
	return nil
}

// phaseOpts says what a phase reads around its load besides the quiet wait.
type phaseOpts struct {
	bridge bool     // a statusbridge: read its /metrics before and after
	drain  bool     // it delivers: wait for its outbox to drain before reading its disk writes
	pgCPU  *pgStore // its store's server: read that server's CPU over the phase too
}

// phase waits for a quiet machine, runs load, and adds what the server did
// meanwhile: its disk writes (srv nil: none, the phase runs in-process) and,
// for a statusbridge, the figures from its own metrics.
func (b *bench) phase(srv *process, o phaseOpts, load func() (Result, error)) (Result, error) {
	q, qerr := b.quiet.Wait()
	var before map[string]float64
	var io0 proc.IO
	var ioErr error
	if srv != nil {
		io0, ioErr = proc.ReadIO(os.DirFS("/proc"), srv.cmd.Process.Pid)
	}
	if o.bridge {
		before = scrape(srv.addr)
	}
	var pg0 proc.Snapshot
	if o.pgCPU != nil {
		pg0, _ = proc.Read(os.DirFS("/proc"))
	}
	r, err := load()
	if err != nil {
		return r, err
	}
	r.Quiet = q
	if qerr != nil {
		r.QuietError = qerr.Error()
	}
	if !q.Quiet {
		b.rep.NotQuiet = append(b.rep.NotQuiet, r.Name)
	}
	if o.bridge {
		after := scrape(srv.addr)
		if n := after["statusbridge_webhook_seconds_count"] - before["statusbridge_webhook_seconds_count"]; n > 0 {
			r.CPUPerReqUs = 1e6 * (after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]) / n
			if pg1, err := proc.Read(os.DirFS("/proc")); err == nil && pg0 != nil {
				ticks := proc.TreeTicks(pg0, pg1, o.pgCPU.ownPIDs())
				r.StoreCPUPerReqUs = 1e6 * float64(ticks) / proc.TicksPerSecond / n
			}
		}
		r.ServerP99ms = 1000 * histQuantile(before, after, "statusbridge_webhook_seconds", 0.99)
		r.CommitP50ms = 1000 * histQuantile(before, after, "statusbridge_store_commit_seconds", 0.50)
		r.CommitP99ms = 1000 * histQuantile(before, after, "statusbridge_store_commit_seconds", 0.99)
		if n := after["statusbridge_store_commit_writes_count"] - before["statusbridge_store_commit_writes_count"]; n > 0 {
			r.WritesPerCommit = (after["statusbridge_store_commit_writes_sum"] - before["statusbridge_store_commit_writes_sum"]) / n
		}
		r.Committer = committerShares(before, after)
		if n := after["statusbridge_store_commit_pages_count"] - before["statusbridge_store_commit_pages_count"]; n > 0 {
			r.PagesPerCommit = (after["statusbridge_store_commit_pages_sum"] - before["statusbridge_store_commit_pages_sum"]) / n
		}
	}
	if o.drain && !srv.waitDrained(2*time.Minute) {
		r.DiskNote = "outbox not drained in 2 minutes: some deliveries' writes are not counted"
	}
	if srv != nil {
		io1, err := proc.ReadIO(os.DirFS("/proc"), srv.cmd.Process.Pid)
		switch {
		case ioErr != nil || err != nil:
			r.DiskNote = fmt.Sprint("no disk figure: ", errors.Join(ioErr, err))
		default:
			r.DiskWriteBytes = io1.WriteBytes - io0.WriteBytes
			if r.OK > 0 {
				r.DiskBytesPerAck = float64(r.DiskWriteBytes) / float64(r.OK)
			}
		}
	}
	quiet := fmt.Sprintf("quiet after %.0f s", q.WaitedS)
	if !q.Quiet {
		quiet = fmt.Sprintf("NOT QUIET after %.0f s (others used %.2f cores): ran anyway", q.WaitedS, q.OtherCores)
		if qerr != nil {
			quiet = "quiet wait failed (" + qerr.Error() + "): ran anyway"
		}
	}
	fmt.Fprintf(os.Stderr, "  %-40s %8.0f/s  p99 %7.2f ms  ok %5.1f%%  server p99 %.2f ms  commit p50/p99 %.2f/%.2f ms × %.1f writes, %.1f pages  disk %.0f B/ack  [%s]\n",
		r.Name, r.Throughput, r.P99ms, 100*r.Success, r.ServerP99ms, r.CommitP50ms, r.CommitP99ms, r.WritesPerCommit, r.PagesPerCommit, r.DiskBytesPerAck, quiet)
	b.rep.Phases = append(b.rep.Phases, r)
	return r, nil
}

// floor runs bench/floor's bbolt group commit in this process, open loop.
func (b *bench) floor(rate int, d time.Duration) (Result, error) {
	f, err := floor.Run(b.dir, false, rate, d)
	if err != nil {
		return Result{}, err
	}
	n := len(f.Acks)
	return Result{Name: fmt.Sprintf("bbolt floor (bench/floor) %d/s", rate), Generator: "in-process",
		Rate: float64(n) / d.Seconds(), Intended: float64(rate), Throughput: float64(n) / d.Seconds(),
		P50ms: latency.Ms(f.Acks, .5), P99ms: latency.Ms(f.Acks, .99), Success: 1, OK: n}, nil
}

// fill stores about n more events at saturation (rate: the last measured
// one, to size the rounds), in at most 20 rounds of at most 2 minutes.
func (b *bench) fill(addr string, n int, rate float64) (Result, error) {
	fmt.Fprintf(os.Stderr, "storing %d more events for RSS and size…\n", n)
	total := Result{Name: "fill", Generator: b.gen.name()}
	var secs float64
	for round := 0; total.OK < n && round < 20; round++ {
		d := time.Duration(float64(n-total.OK)/max(rate, 100)*float64(time.Second)) + time.Second
		d = min(d, 2*time.Minute)
		r, err := b.saturate("fill", addr, d)
		if err != nil {
			return total, err
		}
		secs += float64(r.OK) / max(r.Throughput, 1)
		total.OK += r.OK
		total.NonOK += r.NonOK
		total.SocketErrors += r.SocketErrors
	}
	if total.OK < n {
		fmt.Fprintf(os.Stderr, "note: fill stored %d of %d events in 20 rounds\n", total.OK, n)
	}
	if secs > 0 {
		total.Throughput = float64(total.OK) / secs
		total.Rate = float64(total.OK+total.NonOK) / secs
	}
	total.Success = float64(total.OK) / float64(max(total.OK+total.NonOK+total.SocketErrors, 1))
	return total, nil
}

// div is a ÷ b, 0 when b is not positive (a figure the run lacks: JSON has
// no infinity).
func div(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
