// Command bench measures statusbridge against a no-op Echo server in one run
// and prints the figures of issues 5 and 15 as tables and as JSON.
//
//	go run ./bench [-short] [-store bbolt] [-gen auto|wrk|go] [-out bench/out/results.json]
//
// It builds the binary and starts, each as a child process on 127.0.0.1: a
// no-op Echo server (this program re-executed with -noop), one bbolt Update
// per request (-bolt, the issue-5 reference), statusbridge with its targets
// paused (deliveries recorded as skipped) and statusbridge delivering to a
// no-op ExpertSender served by this program, which records when each PUT
// arrives (end-to-end latency). It also runs bench/floor's bbolt group commit
// at 1,000/s in-process, the disk's floor for a durable ack in the same run.
//
// Load: saturation phases are driven by wrk (-t2 -c64, a Lua script written
// by the bench posts the ~1.3 KB documented body with a fresh ticket id each
// time), which costs the shared cores far less than a Go generator; when wrk
// is missing the bench installs Debian's package if it runs as root, and else
// falls back to the Go generator (vegeta, closed loop with 64 connections),
// saying so. With wrk it also runs the Go generator on the no-op once, to
// show how close it comes. Fixed-rate phases stay open loop on vegeta
// (requests sent on schedule whatever the answers, up to -inflight at once,
// latency from each request's intended send time).
//
// Before each phase it waits until the machine is quiet: all processes but
// the bench's own tree (its servers, wrk, and the store's processes) under
// -quiet-cpu of a core for 2 s, read from /proc/*/stat; after -quiet-max it
// runs anyway and says so in the table and the JSON.
//
// For each phase on a server it reads the server's disk writes
// (/proc/<pid>/io write_bytes; the servers are child processes, so the figure
// is theirs alone) and, for statusbridge, its own /metrics before and after:
// the server-side p99 (handler arrival → answer), group-commit p50/p99 and
// size, and CPU per stored webhook.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	noop := flag.String("noop", "", "run only the no-op Echo server on this address (used by the bench itself)")
	boltBase := flag.String("bolt", "", "run only the one-bbolt-Update-per-request Echo server on this address, storing in the file -bolt-path (used by the bench itself)")
	boltPath := flag.String("bolt-path", "", "the file of -bolt")
	var o options
	flag.BoolVar(&o.short, "short", false, "shorter phases (a quick look, noisier figures)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (the servers' stores and configurations) and print its path, to inspect the stores afterwards")
	flag.StringVar(&o.out, "out", "bench/out/results.json", "where to write the results as JSON")
	flag.IntVar(&o.events, "events", 100000, "events to store before measuring RSS and store size")
	flag.StringVar(&o.store, "store", "bbolt", "bbolt, or postgres: also measure statusbridge on a PostgreSQL server the bench starts (1 and 2 replicas), against the bbolt figures of the same run")
	flag.IntVar(&o.pgMaxConns, "pg-max-conns", 16, "-store postgres: store.postgres.max_conns of each replica (statusbridge's default is 16)")
	flag.StringVar(&o.gen, "gen", "auto", "generator of the saturation phases: auto (wrk, installed with apt-get when root; else the Go generator), wrk (fail without it) or go")
	flag.DurationVar(&o.quietMax, "quiet-max", 60*time.Second, "longest wait for a quiet machine before each phase (then it runs anyway)")
	flag.Float64Var(&o.quietCPU, "quiet-cpu", 0.2, "quiet: other processes together use less than this many cores for 2 s")
	flag.IntVar(&maxInFlight, "inflight", maxInFlight, "most requests in flight in a fixed-rate phase (0: no limit)")
	flag.Parse()
	if *noop != "" {
		if err := runNoop(*noop); err != nil {
			fmt.Fprintln(os.Stderr, "bench -noop:", err)
			os.Exit(1)
		}
		return
	}
	if *boltBase != "" {
		if err := runBolt(*boltBase, *boltPath); err != nil {
			fmt.Fprintln(os.Stderr, "bench -bolt:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the flags of a bench run.
type options struct {
	short  bool
	keep   bool // keep the temporary directory
	out    string
	events int
	store  string
	// pgMaxConns is store.postgres.max_conns of each replica (-store postgres).
	pgMaxConns int
	gen        string
	quietMax   time.Duration
	quietCPU   float64
}
