package bolt

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	bbolt "go.etcd.io/bbolt"
)

// benchBody returns the ~1.5 KB webhook of benchmark op i: Digishare's
// documented shape (fake.Update) with a fresh ticket id, order id and
// campaign order id, the time of the call in changes (as Digishare sends
// it: the time of the change), plus 500 characters of text that compresses
// like prose, not like a run of x. The JSON is made once; each op only
// splices its id and time in, so the benchmarks measure the store, not the
// making of their input.
var benchBody = func() func(i int64) []byte {
	words := strings.Fields("commande livraison adresse casablanca rabat client confirme paiement produit retour " +
		"colis suivi numero rue boulevard quartier appartement etage code postal telephone")
	var pb strings.Builder
	for i := 0; pb.Len() < 500; i++ {
		pb.WriteString(words[(i*7+i/3)%len(words)])
		pb.WriteByte(' ')
	}
	const idSlot, timeSlot = "@@ID@@", "@@TIME@@"
	tmpl := fake.Update{TicketID: "t" + idSlot, OrderID: idSlot, StatusID: confirmed,
		DateStatus: timeSlot, Campaign: map[string]any{"pad": pb.String(), "order_id": idSlot}}.Payload()
	var parts []string // text, slot, text, slot, …
	for rest := string(tmpl); ; {
		i, j := strings.Index(rest, idSlot), strings.Index(rest, timeSlot)
		if i < 0 && j < 0 {
			parts = append(parts, rest)
			break
		}
		if i < 0 || (j >= 0 && j < i) {
			parts = append(parts, rest[:j], timeSlot)
			rest = rest[j+len(timeSlot):]
		} else {
			parts = append(parts, rest[:i], idSlot)
			rest = rest[i+len(idSlot):]
		}
	}
	return func(i int64) []byte {
		id := strconv.FormatInt(i, 10)
		now := time.Now().UTC().Format(time.DateTime)
		out := make([]byte, 0, len(tmpl)+3*len(id))
		for k, p := range parts {
			switch {
			case k%2 == 0:
				out = append(out, p...)
			case p == idSlot:
				out = append(out, id...)
			default:
				out = append(out, now...)
			}
		}
		return out
	}
}()

// commitCounter adds up what the group commits of a benchmark did.
type commitCounter struct{ commits, writes, pages, dur atomic.Int64 }

func (c *commitCounter) add(s CommitStats) {
	c.commits.Add(1)
	c.writes.Add(int64(s.Writes))
	c.pages.Add(int64(s.Pages))
	c.dur.Add(int64(s.Duration))
}

// report adds writes/commit, pages/commit, ms/commit and disk-B/event (the
// bytes of the pages the commits wrote, ÷ events: what the disk is asked to
// write for each) to b's results.
func (c *commitCounter) report(b *testing.B, events int64) {
	n := c.commits.Load()
	if n == 0 {
		return
	}
	b.ReportMetric(float64(c.writes.Load())/float64(n), "writes/commit")
	b.ReportMetric(float64(c.pages.Load())/float64(n), "pages/commit")
	b.ReportMetric(float64(c.dur.Load())/float64(n)/1e6, "ms/commit")
	if events > 0 {
		b.ReportMetric(float64(c.pages.Load()*4096)/float64(events), "disk-B/event")
	}
}

func reportStoreSize(b *testing.B, db *DB) {
	if st, err := db.Stats(context.Background()); err == nil && st.Events > 0 {
		var used int64
		_ = db.view(func(tx *bbolt.Tx) error { used = tx.Size(); return nil })
		b.ReportMetric(float64(used)/float64(st.Events), "store-B/event")
	}
}

// BenchmarkIngest measures durable ingest through the group committer with
// 64 concurrent callers (as 64 HTTP connections would be): each op is one
// webhook decided, stored with its delivery (left pending), and fsynced
// before it returns. It also reports the store's size per event.
func BenchmarkIngest(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.db")
	var cc commitCounter
	db, err := Open(path, Options{OnCommit: cc.add})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tb := testTable(&testing.T{}, "k")
	var n atomic.Int64
	defer reportCPU(b)()
	b.SetParallelism(32) // 2 cores × 32 = 64 concurrent ingests
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			raw := benchBody(n.Add(1))
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
	cc.report(b, n.Load())
	reportStoreSize(b, db)
}

// BenchmarkIngestDeliver is BenchmarkIngest with each delivery recorded done
// right after its ingest, as the worker records an ExpertSender PUT that
// succeeded (the attempt with the request it sent), asynchronously: the
// records share the next ingests' commits, as they do in the service at
// saturation. disk-B/event is what the bench's "ingest + delivery" figure
// measures with write_bytes.
func BenchmarkIngestDeliver(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.db")
	var cc commitCounter
	db, err := Open(path, Options{OnCommit: cc.add})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tb := testTable(&testing.T{}, "k")
	var n atomic.Int64
	var recorded sync.WaitGroup
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			raw := benchBody(i)
			ev, err := digishare.Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			res, err := bridge.Ingest(context.Background(), db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}, tb)
			if err != nil {
				b.Fatal(err)
			}
			for _, d := range res.Deliveries {
				recorded.Add(1)
				if err := db.RecordAsync(context.Background(), d.ID, benchDone(d.OrderID), time.Now(), func(err error) {
					if err != nil {
						b.Error(err)
					}
					recorded.Done()
				}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	recorded.Wait()
	b.StopTimer()
	cc.report(b, n.Load())
	reportStoreSize(b, db)
}

// benchDone is the result of an ExpertSender PUT that succeeded, with the
// request as the worker keeps it.
func benchDone(orderID string) bridge.AttemptResult {
	return bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: time.Now().UTC(), StatusCode: 200, Duration: 1200 * time.Microsecond,
		Request: &bridge.SentRequest{Method: "PUT", URL: "https://api.ecdp.app/orders/status",
			Headers: map[string]string{"Content-Type": "application/json", "X-Api-Key": redacted, "User-Agent": "statusbridge"},
			Body:    `{"orderId":"` + orderID + `","orderStatus":"paid","websiteId":0}`}}}
}

// BenchmarkIngestAndDeliver: see backendtest.BenchIngestAndDeliver (the
// same load on every backend; BenchmarkIngestDeliver above is bbolt's own,
// with pages and disk bytes).
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
