package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	bbolt "go.etcd.io/bbolt"
)

// BenchmarkPagesByBucket prints, for the ingest + delivery load of
// BenchmarkIngestDeliver on a store already holding STATUSBRIDGE_PAGES_FILL
// events (default 20,000), with STATUSBRIDGE_PAGES_CLIENTS concurrent
// ingests (default 64), how many B-tree nodes each bucket dirtied per group
// commit (the leaves written and the branch pages above them, before bbolt
// splits them into pages), and the bytes each bucket holds per event. It is
// how the layout's cost was found, bucket by bucket; it reads bbolt's
// unexported node maps by reflection, so it is a tool, not a test of
// behaviour, and it runs once whatever b.N:
//
//	go test -run '^$' -bench PagesByBucket -benchtime 1x -v ./bolt
func BenchmarkPagesByBucket(t *testing.B) {
	fill, clients := 20000, 64
	if v := os.Getenv("STATUSBRIDGE_PAGES_FILL"); v != "" {
		fmt.Sscan(v, &fill)
	}
	if v := os.Getenv("STATUSBRIDGE_PAGES_CLIENTS"); v != "" {
		fmt.Sscan(v, &clients)
	}
	var mu sync.Mutex
	measuring := false
	nodes := map[string]int{}
	commits := 0
	var cc commitCounter
	beforeCommit = func(tx *bbolt.Tx) {
		mu.Lock()
		defer mu.Unlock()
		if !measuring {
			return
		}
		commits++
		nodes["(root)"] += dirtyNodes(reflect.ValueOf(tx).Elem().FieldByName("root"))
		_ = tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			nodes[string(name)] += dirtyNodes(reflect.ValueOf(b).Elem())
			return nil
		})
	}
	defer func() { beforeCommit = nil }()
	db, err := Open(filepath.Join(t.TempDir(), "pages.db"), Options{OnCommit: func(s CommitStats) {
		mu.Lock()
		m := measuring
		mu.Unlock()
		if m {
			cc.add(s)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tb := testTable(t, "k")
	var n atomic.Int64
	load := func(events int) {
		var wg, recorded sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n.Load() < int64(events) {
					raw := benchBody(n.Add(1))
					ev, err := digishare.Decode(raw)
					if err != nil {
						t.Error(err)
						return
					}
					res, err := bridge.Ingest(context.Background(), db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}, tb)
					if err != nil {
						t.Error(err)
						return
					}
					for _, d := range res.Deliveries {
						recorded.Add(1)
						if err := db.RecordAsync(context.Background(), d.ID, benchDone(d.OrderID), time.Now(), func(error) { recorded.Done() }); err != nil {
							t.Error(err)
						}
					}
				}
			}()
		}
		wg.Wait()
		recorded.Wait()
	}
	load(fill)
	mu.Lock()
	measuring = true
	mu.Unlock()
	start := n.Load()
	load(fill + 5000)
	mu.Lock()
	defer mu.Unlock()
	events := n.Load() - start
	var names []string
	total := 0
	for k, v := range nodes {
		names = append(names, k)
		total += v
	}
	sort.Slice(names, func(i, j int) bool { return nodes[names[i]] > nodes[names[j]] })
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d events after %d, %d commits, %.1f writes and %.1f pages (bbolt) per commit, %.0f disk B/event\n",
		events, fill, commits, float64(cc.writes.Load())/float64(cc.commits.Load()), float64(cc.pages.Load())/float64(cc.commits.Load()),
		float64(cc.pages.Load()*4096)/float64(events))
	for _, k := range names {
		fmt.Fprintf(&sb, "  %-20s %5.2f nodes/commit\n", k, float64(nodes[k])/float64(commits))
	}
	fmt.Fprintf(&sb, "  %-20s %5.2f nodes/commit (+ splits, + the meta page)\n", "total", float64(total)/float64(commits))
	// Where the file's bytes are, per event stored.
	all := float64(n.Load())
	fmt.Fprintf(&sb, "store, per event of %d:\n", n.Load())
	var alloc, inuse int
	_ = db.bolt.View(func(tx *bbolt.Tx) error {
		fmt.Fprintf(&sb, "  %-20s %7.0f B/event\n", "file", float64(tx.Size())/all)
		fs := db.bolt.Stats()
		fmt.Fprintf(&sb, "  %-20s %7.0f B/event (%d pages free, %d pending)\n", "free", float64((fs.FreePageN+fs.PendingPageN)*4096)/all, fs.FreePageN, fs.PendingPageN)
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			st := b.Stats()
			a := st.BranchAlloc + st.LeafAlloc
			u := st.BranchInuse + st.LeafInuse + st.InlineBucketInuse
			alloc, inuse = alloc+a, inuse+u
			if a > 0 {
				fmt.Fprintf(&sb, "  %-20s %7.0f B/event allocated, %7.0f in use, %d keys\n", name, float64(a)/all, float64(u)/all, st.KeyN)
			}
			return nil
		})
	})
	fmt.Fprintf(&sb, "  %-20s %7.0f B/event allocated, %7.0f in use\n", "buckets", float64(alloc)/all, float64(inuse)/all)
	t.Log("\n" + sb.String())
	t.ReportMetric(float64(cc.pages.Load())/float64(cc.commits.Load()), "pages/commit")
}

// dirtyNodes counts the nodes a bucket has materialised in a write
// transaction (bbolt materialises a node only to change it, with its
// parents), an inline bucket's included.
func dirtyNodes(b reflect.Value) int {
	n := b.FieldByName("nodes").Len()
	if r := b.FieldByName("rootNode"); n == 0 && !r.IsNil() {
		n = 1
	}
	return n
}
