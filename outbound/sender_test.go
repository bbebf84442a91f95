package outbound

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// grantingLeader hands the role out when told to, and takes it away.
type grantingLeader struct {
	grant chan chan struct{} // each value is a term's lost channel
}

func (g *grantingLeader) Acquire(ctx context.Context) (<-chan struct{}, func(), error) {
	select {
	case lost := <-g.grant:
		return lost, func() {}, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// The worker sends only while its replica is the sender, stops a hung send at
// once when the role is lost (not after the shutdown grace), and sends again
// when the role comes back.
func TestRunElectedSendsOnlyAsSender(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string // statuses received
	arrived := make(chan struct{}, 8)
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ OrderStatus string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body.OrderStatus)
		mu.Unlock()
		arrived <- struct{}{}
		if body.OrderStatus == "placed" {
			select { // hangs until the test ends or the client gives up
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "{}")
	}))
	defer es.Close()
	defer close(release)
	h := newHarness(t, &fake.Server{Server: es})
	senders, built := Build(h.cfg)
	w := NewWorker(h.out, senders, Policy{MaxAttempts: 3, Initial: time.Millisecond, Max: time.Millisecond, Concurrency: 2,
		Targets: built.Targets, ShutdownGrace: time.Hour}, slog.New(slog.DiscardHandler))
	g := &grantingLeader{grant: make(chan chan struct{})}
	sender := make(chan bool, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.RunElected(ctx, g, nil, func(on bool) { sender <- on }) }()
	defer func() { cancel(); <-done }()

	hung := h.ingest("t1", "6001", "x9q3wrlv0m7vzea8", "2026-01-13 10:00:00") // placed: hangs
	lost := make(chan struct{})
	g.grant <- lost
	if on := <-sender; !on {
		t.Fatal("not told it is the sender")
	}
	<-arrived
	close(lost)
	if on := <-sender; on { // only after the hung send was cancelled
		t.Fatal("told it is the sender again")
	}
	if d, _ := h.db.GetDelivery(context.Background(), hung.Deliveries[0].ID); d.State != bridge.Pending || len(d.Attempts) != 0 {
		t.Errorf("the cut-off delivery is %s with %d attempts, want pending with none", d.State, len(d.Attempts))
	}

	other := h.ingest("t2", "6002", confirmed, "2026-01-13 10:00:00")
	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("requests %v while no replica of ours was the sender, want one", got)
	}
	mu.Unlock()
	g.grant <- make(chan struct{})
	<-sender
	if d := h.waitDelivery(other.Deliveries[0].ID, bridge.Done); d.Attempts[0].StatusCode != http.StatusOK {
		t.Errorf("attempt %+v", d.Attempts[0])
	}
}
