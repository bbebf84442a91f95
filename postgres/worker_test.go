package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
	"github.com/statusbridge/statusbridge/outbound"
)

// recorder is a Sender that records what it is sent; the first attempt of
// every third delivery fails (retried).
type recorder struct {
	mu    sync.Mutex
	sent  map[string]int      // delivery id → attempts
	ok    map[string]int      // delivery id → successful attempts
	order map[string][]string // order id → statuses as sent (successful attempts)
}

func (r *recorder) Send(ctx context.Context, m *outbound.Message) (outbound.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := m.Delivery
	r.sent[d.ID]++
	if r.sent[d.ID] == 1 && len(r.sent)%3 == 0 {
		return outbound.Response{StatusCode: 503}, &outbound.Error{Msg: "HTTP 503", StatusCode: 503}
	}
	r.ok[d.ID]++
	r.order[d.OrderID] = append(r.order[d.OrderID], d.Status)
	return outbound.Response{StatusCode: 200}, nil
}

// The delivery worker drains a PostgreSQL outbox that two replicas fill at
// once: every delivery is sent and recorded done, each order's statuses in
// the order its updates were decided, none sent twice after success.
func TestWorkerDeliversWhatTwoReplicasQueue(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	sender := openDSN(t, dsn, Options{Name: "sender"})
	other := openDSN(t, dsn, Options{Name: "other"})
	rec := &recorder{sent: map[string]int{}, ok: map[string]int{}, order: map[string][]string{}}
	w := outbound.NewWorker(sender, map[string]outbound.Sender{"expertsender": rec},
		outbound.Policy{MaxAttempts: 5, Initial: time.Millisecond, Max: 10 * time.Millisecond, Concurrency: 8},
		slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()

	tb := backendtest.Table(t, "k")
	const orders, updates = 20, 4
	statuses := []string{backendtest.Confirmed, backendtest.Awaiting}
	var wg sync.WaitGroup
	want := map[string][]string{} // order → statuses dispatched, in decision order
	var mu sync.Mutex
	for o := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := fmt.Sprint("o", o)
			for u := range updates {
				db := []*DB{sender, other}[(o+u)%2]
				raw := fake.Update{TicketID: fmt.Sprint(order, "-", u), OrderID: order, StatusID: statuses[u%2],
					DateStatus: fmt.Sprintf("2026-01-13 10:00:%02d", u)}.Payload()
				res, err := bridge.Ingest(ctx, db, backendtest.Incoming(t, raw), tb)
				if err != nil {
					t.Error(err)
					return
				}
				if res.State == bridge.EventDispatched {
					mu.Lock()
					want[order] = append(want[order], res.Deliveries[0].Status)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()

	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := sender.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still pending after a minute", st.Pending)
		}
		time.Sleep(20 * time.Millisecond) // polling the store for the worker's progress
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var done, superseded int
	err := bridge.EachDelivery(ctx, sender, bridge.DeliveryFilter{}, func(d *bridge.Delivery) {
		switch d.State {
		case bridge.Done:
			done++
			if n := rec.ok[d.ID]; n != 1 {
				t.Errorf("done delivery %s was sent successfully %d times", d.ID, n)
			}
		case bridge.Superseded:
			superseded++ // a newer delivery of its lane came while it waited to retry
		default:
			t.Errorf("delivery %s ended %s: %s", d.ID, d.State, d.Reason)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if done == 0 {
		t.Fatal("nothing delivered")
	}
	for order, got := range rec.order {
		w := want[order]
		// What was sent is what was dispatched, in that order, minus the
		// ones superseded while waiting to retry.
		i := 0
		for _, s := range got {
			for i < len(w) && w[i] != s {
				i++
			}
			if i == len(w) {
				t.Errorf("order %s: sent %v, dispatched %v: out of order", order, got, w)
				break
			}
			i++
		}
		if len(got) == 0 || got[len(got)-1] != w[len(w)-1] {
			t.Errorf("order %s: sent %v; the last dispatched status %s must be sent last", order, got, w[len(w)-1])
		}
	}
	if len(rec.order) != orders {
		t.Errorf("%d orders sent to, want %d", len(rec.order), orders)
	}
	t.Logf("%d done, %d superseded", done, superseded)
}
