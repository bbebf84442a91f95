package postgres

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/digishare"
)

// BenchmarkIngest measures durable ingest with 64 concurrent callers (as 64
// HTTP connections would be), as bolt's BenchmarkIngest does: each op is
// one webhook decided, stored with its delivery and committed (fsync on,
// synchronous_commit on) before it returns. PostgreSQL groups concurrent
// commits into one WAL flush itself, so throughput needs the concurrency.
// It also reports the database's size per event (tables, indexes, TOAST).
func BenchmarkIngest(b *testing.B) {
	var commits, dur atomic.Int64
	db, _ := openTemp(b, Options{MaxConns: *benchConns, OnCommit: func(_ int, d time.Duration) {
		commits.Add(1)
		dur.Add(int64(d))
	}})
	tb := backendtest.Table(b, "k")
	var n atomic.Int64
	defer reportCPU(b, db)()
	defer func() {
		if c := commits.Load(); c > 0 {
			b.ReportMetric(float64(dur.Load())/float64(c)/1e6, "ms/tx")
		}
	}()
	b.SetParallelism(32) // 2 cores × 32 = 64 concurrent ingests
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			raw := backendtest.BenchPayload(i)
			ev, err := digishare.Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := bridge.Ingest(context.Background(), db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}, tb); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	var events, size, payloads int64
	err := db.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM events),
		(SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = current_schema() AND c.relkind = 'r'),
		(SELECT coalesce(sum(octet_length(payload)), 0) FROM events)`).Scan(&events, &size, &payloads)
	if err == nil && events > 0 {
		b.ReportMetric(float64(size)/float64(events), "store-B/event")
		b.ReportMetric(float64(payloads)/float64(events), "payload-B/event")
	}
}

// BenchmarkIngestAndDeliver: see backendtest.BenchIngestAndDeliver.
func BenchmarkIngestAndDeliver(b *testing.B) {
	db, _ := openTemp(b, Options{MaxConns: *benchConns})
	defer reportCPU(b, db)()
	backendtest.BenchIngestAndDeliver(b, db)
}

// reportCPU starts counting the CPU time the server and this process use;
// the function it returns reports both per op. CPU per op is the steadier
// figure on a shared machine, where the time per op follows the neighbours.
func reportCPU(b *testing.B, db *DB) func() {
	pg0, pgOK := serverCPU(db)
	go0 := processCPU()
	return func() {
		if b.N == 0 {
			return
		}
		if pg1, ok := serverCPU(db); ok && pgOK {
			b.ReportMetric(float64(pg1-pg0)/float64(b.N)/1e3, "pg-cpu-µs/op")
		}
		b.ReportMetric(float64(processCPU()-go0)/float64(b.N)/1e3, "go-cpu-µs/op")
	}
}

// serverCPU returns the CPU time (ns) the database server's processes have
// used: the postmaster and its children, found from a backend's parent in
// /proc (Linux; false elsewhere). Backends that exited are not counted, so
// it is read while the pool holds its connections.
func serverCPU(db *DB) (int64, bool) {
	var pid int
	if err := db.pool.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return 0, false
	}
	stat := func(pid int) (ppid int, ticks int64, ok bool) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, 0, false
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) < 13 {
			return 0, 0, false
		}
		ppid, _ = strconv.Atoi(f[1])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return ppid, u + s, true
	}
	postmaster, _, ok := stat(pid)
	if !ok {
		return 0, false
	}
	_, total, ok := stat(postmaster)
	if !ok {
		return 0, false
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if ppid, ticks, ok := stat(p); ok && ppid == postmaster {
			total += ticks
		}
	}
	return total * 1e9 / 100, true // USER_HZ is 100 on Linux
}

// processCPU returns this process's CPU time (ns).
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
