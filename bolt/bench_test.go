package bolt

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/digishare"
	bbolt "go.etcd.io/bbolt"
)

// BenchmarkIngest measures durable ingest through the group committer with
// 64 concurrent callers (as 64 HTTP connections would be): each op is one
// webhook decided, stored with its delivery, and fsynced before it returns.
// It also reports the store's size per event.
func BenchmarkIngest(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.db")
	var commits, total, dur atomic.Int64
	db, err := Open(path, Options{OnCommit: func(k int, d time.Duration) {
		commits.Add(1)
		total.Add(int64(k))
		dur.Add(int64(d))
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tb := backendtest.Table(b, "k")
	var n atomic.Int64
	defer reportCPU(b)()
	defer func() {
		if c := commits.Load(); c > 0 {
			b.ReportMetric(float64(total.Load())/float64(c), "writes/commit")
			b.ReportMetric(float64(dur.Load())/float64(c)/1e6, "ms/commit")
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
	if st, err := db.Stats(context.Background()); err == nil && st.Events > 0 {
		var used int64
		_ = db.view(func(tx *bbolt.Tx) error { used = tx.Size(); return nil })
		b.ReportMetric(float64(used)/float64(st.Events), "store-B/event")
	}
}

// BenchmarkIngestAndDeliver: see backendtest.BenchIngestAndDeliver.
func BenchmarkIngestAndDeliver(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	defer reportCPU(b)()
	backendtest.BenchIngestAndDeliver(b, db)
}

// reportCPU reports the CPU time this process uses per op (the store
// included: bbolt runs in it), to compare with the PostgreSQL backend's
// client and server CPU per op.
func reportCPU(b *testing.B) func() {
	cpu := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	start := cpu()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpu()-start)/float64(b.N)/1e3, "cpu-µs/op")
		}
	}
}
