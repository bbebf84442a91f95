package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/mapping"
)

const (
	confirmed = "yqdwrbka7kz69v8e"
	awaiting  = "x9q3wrlv0m7vzea8"
)

// notifyingOutbox is the real store, plus a signal after every Record so
// tests wait for progress instead of sleeping.
type notifyingOutbox struct {
	*bolt.DB
	recorded chan struct{}
	records  atomic.Int64
}

func (n *notifyingOutbox) RecordAsync(ctx context.Context, id string, o bridge.AttemptResult, now time.Time, done func(error)) error {
	return n.DB.RecordAsync(ctx, id, o, now, func(err error) {
		done(err)
		n.records.Add(1)
		select {
		case n.recorded <- struct{}{}:
		default:
		}
	})
}

func (n *notifyingOutbox) Record(ctx context.Context, id string, o bridge.AttemptResult, now time.Time) error {
	err := n.DB.Record(ctx, id, o, now)
	n.records.Add(1)
	select {
	case n.recorded <- struct{}{}:
	default:
	}
	return err
}

type harness struct {
	t      *testing.T
	db     *bolt.DB
	path   string
	out    *notifyingOutbox
	cfg    *config.Config
	table  *mapping.Table
	cancel context.CancelFunc
	done   chan error
	w      *Worker  // the running worker, once started
	obs    Observer // told the worker's results, when set before start
}

// newHarness is a store, a mapping and (on start) a worker for an
// ExpertSender-only config pointed at es.
func newHarness(t *testing.T, es *fake.Server) *harness {
	t.Helper()
	return newHarnessYAML(t, fmt.Sprintf(`
targets: { expertsender: { base_url: %q, api_key: secret-key-123, website_id: 7, timeout: 2s } }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }, x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed } } }
`, es.URL))
}

// newHarnessYAML builds the harness from a whole config.
func newHarnessYAML(t *testing.T, yaml string) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "sb.db")}
	h.open()
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.cfg, h.table = cfg, mapping.New(cfg)
	t.Cleanup(func() {
		h.stop()
		_ = h.db.Close()
	})
	return h
}

func (h *harness) open() {
	db, err := bolt.Open(h.path, bolt.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.db = db
	h.out = &notifyingOutbox{DB: db, recorded: make(chan struct{}, 1)}
}

// start runs a worker with the config's clients; pol overrides the config's
// retry policy (its zero fields take test defaults) and, when set, its
// per-target limits.
func (h *harness) start(pol Policy) {
	h.t.Helper()
	if pol.MaxAttempts == 0 {
		pol.MaxAttempts = 5
	}
	if pol.Concurrency == 0 {
		pol.Concurrency = 4
	}
	if pol.Max == 0 {
		pol.Max = pol.Initial
	}
	senders, built := Build(h.cfg)
	if pol.Targets == nil {
		pol.Targets = built.Targets
	}
	w := NewWorker(h.out, senders, pol, slog.New(slog.DiscardHandler))
	if h.obs != nil {
		w.Observe(h.obs)
	}
	h.w = w
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- w.Run(ctx) }()
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		if err := <-h.done; err != nil {
			h.t.Errorf("worker: %v", err)
		}
		h.cancel = nil
	}
}

func (h *harness) ingest(ticket, order, status, at string) bridge.IngestResult {
	h.t.Helper()
	return h.ingestUpdate(fake.Update{TicketID: ticket, OrderID: order, StatusID: status, DateStatus: at})
}

func (h *harness) ingestUpdate(u fake.Update) bridge.IngestResult {
	h.t.Helper()
	raw := u.Payload()
	ev, err := digishare.Decode(raw)
	if err != nil {
		h.t.Fatal(err)
	}
	res, err := bridge.Ingest(context.Background(), h.db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}, h.table)
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// waitDelivery waits until the delivery reaches state (woken by each Record).
func (h *harness) waitDelivery(id string, state bridge.DeliveryState) *bridge.Delivery {
	h.t.Helper()
	return h.waitFor(id, string(state), func(d *bridge.Delivery) bool { return d.State == state })
}

// waitTerminal waits until the delivery is finished, whichever way.
func (h *harness) waitTerminal(id string) *bridge.Delivery {
	h.t.Helper()
	return h.waitFor(id, "finished", func(d *bridge.Delivery) bool { return d.State.Terminal() })
}

// waitFor waits (woken by each Record, up to 10 s) until the delivery
// satisfies done; want names the wait in the failure.
func (h *harness) waitFor(id, want string, done func(*bridge.Delivery) bool) *bridge.Delivery {
	h.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		d, err := h.db.GetDelivery(context.Background(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		if done(d) {
			return d
		}
		select {
		case <-h.out.recorded:
		case <-deadline.C:
			h.t.Fatalf("delivery %s is %s (attempts %d, reason %q), want %s", id, d.State, len(d.Attempts), d.Reason, want)
		}
	}
}

func TestDeliverySendsExpertSenderRequest(t *testing.T) {
	es := fake.NewServer(t)
	h := newHarness(t, es)
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingest("t1", "42", confirmed, "2026-01-13 16:29:51")
	d := h.waitDelivery(res.Deliveries[0].ID, bridge.Done)
	reqs := es.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPut || r.Path != "/orders/status" || r.Header.Get("x-api-key") != "secret-key-123" {
		t.Errorf("request = %s %s key=%q", r.Method, r.Path, r.Header.Get("x-api-key"))
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body["orderId"] != "42" || body["orderStatus"] != "paid" || body["websiteId"] != float64(7) {
		t.Errorf("body = %s", r.Body)
	}
	if len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 200 {
		t.Errorf("attempts = %+v", d.Attempts)
	}
}

func TestRetryUntilDeliveredOnce(t *testing.T) {
	es := fake.NewServer(t, fake.Answer{Code: 500, Body: "oops"}, fake.Answer{Code: 500}, fake.Answer{Code: 200, Body: "{}"})
	h := newHarness(t, es)
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingest("t1", "42", confirmed, "")
	d := h.waitDelivery(res.Deliveries[0].ID, bridge.Done)
	if n := len(es.Requests()); n != 3 {
		t.Errorf("%d requests, want 3 (500, 500, 200)", n)
	}
	var codes []int
	for _, a := range d.Attempts {
		codes = append(codes, a.StatusCode)
	}
	if fmt.Sprint(codes) != "[500 500 200]" || d.Attempts[0].Excerpt != "oops" {
		t.Errorf("attempts = %+v", d.Attempts)
	}
}

func TestPermanentFailuresDieAtOnce(t *testing.T) {
	for name, a := range map[string]fake.Answer{
		"400":         {Code: 400, Body: `{"title":"bad","errors":["orderStatus invalid"]}`},
		"401":         {Code: 401, Body: `{"title":"unauthorized"}`},
		"200 errors":  {Code: 200, Body: `{"errors":["nope"]}`},
		"302":         {Code: 302, Header: map[string]string{"Location": "http://elsewhere/"}},
		"404 no body": {Code: 404},
	} {
		t.Run(name, func(t *testing.T) {
			es := fake.NewServer(t, a)
			h := newHarness(t, es)
			h.start(Policy{Initial: time.Millisecond})
			res := h.ingest("t1", "42", confirmed, "")
			d := h.waitDelivery(res.Deliveries[0].ID, bridge.Dead)
			if len(d.Attempts) != 1 || !strings.Contains(d.Reason, "permanent") {
				t.Errorf("dead delivery = %+v", d)
			}
			if n := len(es.Requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	es := fake.NewServer(t)
	es.Default = fake.Answer{Code: 503}
	h := newHarness(t, es)
	h.start(Policy{Initial: time.Millisecond, MaxAttempts: 3})
	res := h.ingest("t1", "42", confirmed, "")
	d := h.waitDelivery(res.Deliveries[0].ID, bridge.Dead)
	if len(d.Attempts) != 3 || !strings.Contains(d.Reason, "gave up after 3 attempts") {
		t.Errorf("delivery = %+v", d)
	}
}

func TestRetryAfterIsRespected(t *testing.T) {
	es := fake.NewServer(t, fake.Answer{Code: 429, Header: map[string]string{"Retry-After": "1"}})
	h := newHarness(t, es)
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingest("t1", "42", confirmed, "")
	h.waitDelivery(res.Deliveries[0].ID, bridge.Done)
	reqs := es.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
		t.Errorf("retried after %v, want at least the 1s Retry-After", gap)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"-3":                            0,
		"99999":                         MaxRetryAfter,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 31 Dec 2025 00:00:00 GMT": 0,
		"soon":                          0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := Policy{Initial: time.Second, Max: 10 * time.Second}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 50: 10 * time.Second} {
		if lo, hi := p.Backoff(n, 0), p.Backoff(n, 1); lo != want/2 || hi != want {
			t.Errorf("Backoff(%d) in [%v, %v], want [%v, %v]", n, lo, hi, want/2, want)
		}
	}
}

func TestWaitingRetryIsSupersededByNewerDelivery(t *testing.T) {
	es := fake.NewServer(t, fake.Answer{Code: 500})
	h := newHarness(t, es)
	h.start(Policy{Initial: time.Hour, Max: time.Hour}) // the first retry would wait an hour
	first := h.ingest("t1", "42", awaiting, "2026-01-13 10:00:00")
	d1 := h.waitDelivery(first.Deliveries[0].ID, bridge.Pending)
	for len(d1.Attempts) == 0 {
		d1 = h.waitDelivery(first.Deliveries[0].ID, bridge.Pending)
	}
	second := h.ingest("t2", "42", confirmed, "2026-01-13 11:00:00")
	h.waitDelivery(second.Deliveries[0].ID, bridge.Done)
	d1 = h.waitDelivery(first.Deliveries[0].ID, bridge.Superseded)
	if !strings.Contains(d1.Reason, second.Deliveries[0].ID) {
		t.Errorf("superseded reason = %q", d1.Reason)
	}
	reqs := es.Requests()
	if len(reqs) != 2 || reqs[0].Status != "placed" || reqs[1].Status != "paid" {
		t.Errorf("requests = %+v", reqs)
	}
}

func TestPerOrderOrderAndParallelOrders(t *testing.T) {
	// The first request of order "slow" and the request of order "fast" each
	// wait until both are in flight (a barrier): that completes only if
	// different orders go out in parallel. Order "slow"'s second status must
	// still wait for its first.
	var mu sync.Mutex
	var got []string
	arrived := 0
	both := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b struct{ OrderID, OrderStatus string }
		_ = json.Unmarshal(body, &b)
		mu.Lock()
		got = append(got, b.OrderID+":"+b.OrderStatus)
		barrier := b.OrderID == "fast" || b.OrderStatus == "placed"
		if barrier {
			if arrived++; arrived == 2 {
				close(both)
			}
		}
		mu.Unlock()
		if barrier {
			select {
			case <-both:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "{}")
	}))
	defer srv.Close()
	h := newHarness(t, &fake.Server{Server: srv})
	s1 := h.ingest("a1", "slow", awaiting, "2026-01-13 10:00:00")
	s2 := h.ingest("a2", "slow", confirmed, "2026-01-13 11:00:00")
	f1 := h.ingest("b1", "fast", confirmed, "2026-01-13 10:00:00")
	// MaxAttempts 1: a request that times out at the barrier fails the test.
	h.start(Policy{Initial: time.Millisecond, Concurrency: 4, MaxAttempts: 1})
	h.waitDelivery(s1.Deliveries[0].ID, bridge.Done)
	h.waitDelivery(f1.Deliveries[0].ID, bridge.Done)
	h.waitDelivery(s2.Deliveries[0].ID, bridge.Done)
	mu.Lock()
	defer mu.Unlock()
	var slow []string
	for _, g := range got {
		if o, s, _ := strings.Cut(g, ":"); o == "slow" {
			slow = append(slow, s)
		}
	}
	if fmt.Sprint(slow) != "[placed paid]" {
		t.Errorf("order slow got %v, want [placed paid] in event order", slow)
	}
}

func TestPendingDeliveredAfterReopen(t *testing.T) {
	es := fake.NewServer(t)
	h := newHarness(t, es)
	res := h.ingest("t1", "42", confirmed, "")
	res2 := h.ingest("t2", "43", awaiting, "")
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}
	h.open()
	h.start(Policy{Initial: time.Millisecond})
	h.waitDelivery(res.Deliveries[0].ID, bridge.Done)
	h.waitDelivery(res2.Deliveries[0].ID, bridge.Done)
	if n := len(es.Requests()); n != 2 {
		t.Errorf("%d requests after reopen, want 2", n)
	}
}

func TestShutdownLeavesHungDeliveryPending(t *testing.T) {
	hung := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so the server notices the client hanging up
		close(hung)
		<-r.Context().Done()
	}))
	defer srv.Close()
	h := newHarness(t, &fake.Server{Server: srv})
	h.start(Policy{Initial: time.Millisecond, ShutdownGrace: 50 * time.Millisecond})
	res := h.ingest("t1", "42", confirmed, "")
	<-hung
	h.stop()
	d, err := h.db.GetDelivery(context.Background(), res.Deliveries[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != bridge.Pending || len(d.Attempts) != 0 {
		t.Errorf("after shutdown: %s with %d attempts, want pending with none", d.State, len(d.Attempts))
	}
}

func TestSecretsRedactedFromExcerpts(t *testing.T) {
	es := fake.NewServer(t, fake.Answer{Code: 401, Body: `{"detail":"key secret-key-123 is wrong"}`})
	h := newHarness(t, es)
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingest("t1", "42", confirmed, "")
	d := h.waitDelivery(res.Deliveries[0].ID, bridge.Dead)
	raw, _ := json.Marshal(d)
	if strings.Contains(string(raw), "secret-key-123") {
		t.Errorf("api key stored in the attempt record: %s", raw)
	}
}

// TestDeliveriesReuseConnections: the worker's parallel sends share one
// client per target that keeps enough idle connections for them, so a
// stream of deliveries opens about as many connections as run at once, not
// one per delivery.
func TestDeliveriesReuseConnections(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "{}")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	h := newHarnessYAML(t, fmt.Sprintf(`
targets: { expertsender: { base_url: %q, api_key: secret-key-123, timeout: 2s } }
delivery: { concurrency: 8 }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid } } }
`, srv.URL))
	const n, concurrency = 300, 8
	var ids []string
	for i := range n {
		ids = append(ids, h.ingest(fmt.Sprint("t", i), fmt.Sprint(i), confirmed, "2026-01-13 16:29:51").Deliveries[0].ID)
	}
	h.start(Policy{Initial: time.Millisecond, Concurrency: concurrency})
	for _, id := range ids {
		h.waitDelivery(id, bridge.Done)
	}
	if got := opened.Load(); got > 2*concurrency {
		t.Errorf("%d deliveries opened %d connections, want at most %d", n, got, 2*concurrency)
	}
	t.Logf("%d deliveries, %d connections", n, opened.Load())
}

// refusingOutbox is the real store, refusing the first claim of each
// delivery (as another replica's sender or an unread older delivery would).
type refusingOutbox struct {
	*notifyingOutbox
	mu      sync.Mutex
	refused map[string]int
}

func (r *refusingOutbox) Claim(ctx context.Context, d *bridge.Delivery, durable bool) error {
	r.mu.Lock()
	r.refused[d.ID]++
	n := r.refused[d.ID]
	r.mu.Unlock()
	if n == 1 {
		return fmt.Errorf("%w: test", bridge.ErrClaimRefused)
	}
	return r.notifyingOutbox.Claim(ctx, d, durable)
}

// A delivery whose claim is refused is not sent then; it is read from the
// store again and sent once, after a pause.
func TestRefusedClaimIsReadAgain(t *testing.T) {
	es := fake.NewServer(t)
	h := newHarness(t, es)
	ro := &refusingOutbox{notifyingOutbox: h.out, refused: map[string]int{}}
	senders, built := Build(h.cfg)
	w := NewWorker(ro, senders, Policy{MaxAttempts: 3, Initial: time.Millisecond, Max: time.Millisecond, Concurrency: 2,
		Targets: built.Targets}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	res := h.ingest("t1", "5001", confirmed, "2026-01-13 10:00:00")
	d := h.waitDelivery(res.Deliveries[0].ID, bridge.Done)
	if got := len(es.Requests()); got != 1 {
		t.Errorf("ExpertSender got %d requests, want 1", got)
	}
	if len(d.Attempts) != 1 {
		t.Errorf("%d attempts recorded, want 1 (a refused claim is no attempt)", len(d.Attempts))
	}
	if ro.refused[d.ID] != 2 {
		t.Errorf("claimed %d times, want 2", ro.refused[d.ID])
	}
	if el := time.Since(start); el < refusedPause {
		t.Errorf("sent %v after the refusal, want a pause of at least %v", el, refusedPause)
	}
}

// TestShutdownDoesNotCountCutAttempt: a hung delivery whose own timeout
// fires during the shutdown grace was cut off by us, not by the target: it
// stays pending and the attempt does not count.
func TestShutdownDoesNotCountCutAttempt(t *testing.T) {
	srv, hung := hungServer(t)
	h := newHarnessYAML(t, fmt.Sprintf(`
targets: { expertsender: { base_url: %q, api_key: secret-key-123, timeout: 300ms } }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid } } }
`, srv.URL))
	h.start(Policy{Initial: time.Millisecond, ShutdownGrace: 5 * time.Second})
	res := h.ingest("t1", "42", confirmed, "")
	<-hung
	h.stop() // the send times out 300 ms after it began, inside the 5 s grace
	d, err := h.db.GetDelivery(context.Background(), res.Deliveries[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != bridge.Pending || len(d.Attempts) != 0 {
		t.Errorf("after shutdown: %s with attempts %+v, want pending with none", d.State, d.Attempts)
	}
}

// unknownWhenCut is a sender whose cut-off requests have an unknown outcome.
type unknownWhenCut struct{ Sender }

func (unknownWhenCut) OutcomeUnknownWhenCut() bool { return true }

// TestShutdownCutOfUnknownOutcomeIsRecorded: for a sender whose request
// cannot be repeated safely, a cut-off attempt is recorded and the delivery
// ends dead with the reason, for a person to check.
func TestShutdownCutOfUnknownOutcomeIsRecorded(t *testing.T) {
	srv, hung := hungServer(t)
	h := newHarness(t, &fake.Server{Server: srv})
	senders, pol := Build(h.cfg)
	senders["expertsender"] = unknownWhenCut{senders["expertsender"]}
	pol.Initial, pol.ShutdownGrace = time.Millisecond, 50*time.Millisecond
	w := NewWorker(h.out, senders, pol, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- w.Run(ctx) }()
	res := h.ingest("t1", "42", confirmed, "")
	<-hung
	h.stop()
	d, err := h.db.GetDelivery(context.Background(), res.Deliveries[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != bridge.Dead || len(d.Attempts) != 1 || !strings.Contains(d.Reason, "outcome is unknown") {
		t.Errorf("after shutdown: %s, %d attempts, reason %q; want dead with one attempt and the reason", d.State, len(d.Attempts), d.Reason)
	}
}

// hungServer never answers; hung is closed when its first request arrives.
func hungServer(t *testing.T) (*httptest.Server, <-chan struct{}) {
	hung := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so the server notices the client hanging up
		once.Do(func() { close(hung) })
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv, hung
}
