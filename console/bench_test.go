package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// benchEvents is how many events the page benchmark stores.
const benchEvents = 100_000

var (
	benchOnce sync.Once
	bench     *env
	benchErr  error
)

// benchEnv fills one store with benchEvents events, once per test binary:
// 64 concurrent ingests, so the group committer writes them in batches.
// Every fourth is unmapped (held), the rest dispatched.
func benchEnv(b *testing.B) *env {
	benchOnce.Do(func() {
		t0 := time.Now()
		bench = newEnv(&onceTB{B: b})
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < benchEvents; i += 64 {
					status := confirmed
					if i%4 == 3 {
						status = "held000000000000"
					}
					raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(100000 + i%20000), StatusID: status,
						DateStatus: "2026-01-13 10:00:00"}.Payload()
					u, err := digishare.Decode(raw)
					if err == nil {
						_, err = bridge.Ingest(context.Background(), bench.db, bridge.Incoming{Raw: raw, Update: u, ReceivedAt: time.Now()}, bench.maps.Current())
					}
					for err == bridge.ErrOverloaded {
						_, err = bridge.Ingest(context.Background(), bench.db, bridge.Incoming{Raw: raw, Update: u, ReceivedAt: time.Now()}, bench.maps.Current())
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		benchErr = <-errs
		fmt.Fprintf(os.Stderr, "stored %d events in %v\n", benchEvents, time.Since(t0).Round(time.Millisecond))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return bench
}

// onceTB lets the shared store outlive the first benchmark that builds it
// (its temp dir and cleanups belong to the process, not to one benchmark).
type onceTB struct{ *testing.B }

func (o *onceTB) TempDir() string {
	d, err := os.MkdirTemp("", "console-bench-")
	if err != nil {
		o.B.Fatal(err)
	}
	return d
}

func (o *onceTB) Cleanup(func()) {}

// BenchmarkEventsPage renders the events page (50 rows, server side, the
// whole handler: session check, store read, template) over a store of
// 100,000 events.
func BenchmarkEventsPage(b *testing.B) {
	benchPages(b, "/ui/events", "/ui/events?state=unmapped", "/ui/events?order_id=100007")
}

// BenchmarkOtherPages: the overview (counters) and an order's timeline (five
// events among 100,000, found by a scan of the events).
func BenchmarkOtherPages(b *testing.B) {
	benchPages(b, "/ui/overview/live", "/ui/order?id=100007")
}

func benchPages(b *testing.B, paths ...string) {
	e := benchEnv(b)
	sess, err := e.ui.keys.newSession(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range paths {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess})
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				e.ui.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
