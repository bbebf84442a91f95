package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/live"
)

const (
	confirmed = "yqdwrbka7kz69v8e"
	awaiting  = "x9q3wrlv0m7vzea8"
	baseYAML  = `targets: { expertsender: { api_key: k }, http: { crm: { url: "http://crm.invalid/x" } } }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
    x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed, http: { crm: waiting } }
`
)

type noObs struct{}

func (noObs) Reload(bool) {}

// consoleBackend is a backend with the console's store: both of them.
type consoleBackend interface {
	bridge.Backend
	ConsoleStore
}

// openBackend opens the store of a test's service in dir: bbolt, or
// PostgreSQL when TestServiceOnPostgres runs the tests again.
var openBackend = func(t *testing.T, dir string) consoleBackend {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "sb.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

type env struct {
	t    *testing.T
	db   consoleBackend
	maps *live.Mapping
	svc  *Service
	cfg  string
}

var _ ConsoleStore = (*bolt.DB)(nil) // checked here: the service itself imports no backend

var ctx = context.Background()

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(baseYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Resolve(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := openBackend(t, dir)
	maps := live.New(cfg, nil, slog.New(slog.DiscardHandler), noObs{})
	svc := New(Options{Store: bridge.Store{Backend: db}, Console: db, Mapping: maps})
	return &env{t: t, db: db, maps: maps, svc: svc, cfg: path}
}

// ingest stores an update as the webhook would.
func (e *env) ingest(ticket, order, status, at string) bridge.IngestResult {
	e.t.Helper()
	raw := fake.Update{TicketID: ticket, OrderID: order, StatusID: status, DateStatus: at}.Payload()
	u, err := digishare.Decode(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := bridge.Ingest(ctx, e.db, bridge.Incoming{Raw: raw, Update: u, ReceivedAt: time.Now()}, e.maps.Current())
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// kill records a final failed attempt on a delivery.
func (e *env) kill(id string, code int, reason string) {
	e.t.Helper()
	err := e.db.Record(ctx, id, bridge.AttemptResult{State: bridge.Dead, Reason: reason,
		Attempt: &bridge.Attempt{At: time.Now(), StatusCode: code, Error: "failed"}}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
}

func byTarget(ds []bridge.Delivery, target string) bridge.Delivery {
	for _, d := range ds {
		if d.Target == target {
			return d
		}
	}
	return bridge.Delivery{}
}

// TestRetryRecordsTheAction: every retry that reached a delivery is
// recorded with its address and its result, a refusal in the words the
// operator was shown.
func TestRetryRecordsTheAction(t *testing.T) {
	e := newEnv(t)
	first := e.ingest("t1", "500", confirmed, "2026-01-13 10:00:00")
	id := first.Deliveries[0].ID
	e.kill(id, 400, "permanent failure: 400")
	e.ingest("t1", "500", awaiting, "2026-01-13 11:00:00")
	_, refusal := e.svc.Retry(ctx, "192.0.2.1", id)
	var ce *bridge.ConflictError
	if !errors.As(refusal, &ce) || !strings.Contains(ce.Msg, "would send an older status") {
		t.Fatalf("retry under a newer delivery: %v", refusal)
	}
	other := e.ingest("t2", "501", confirmed, "")
	e.kill(other.Deliveries[0].ID, 400, "permanent failure: 400")
	d, err := e.svc.Retry(ctx, "192.0.2.9", other.Deliveries[0].ID)
	if err != nil || d.State != bridge.Pending {
		t.Fatalf("retry = %+v, %v", d, err)
	}
	if _, err := e.svc.Retry(ctx, "192.0.2.9", "01a20000-0000-7000-8000-000000000000"); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("unknown delivery: %v", err)
	}
	acts, _ := e.svc.Actions(ctx, 10)
	if len(acts) != 2 || acts[0].Kind != "retry" || acts[0].From != "192.0.2.9" || acts[0].Result != "ok" ||
		!strings.Contains(acts[0].What, "order 501") || acts[1].Result != ce.Msg || acts[1].From != "192.0.2.1" {
		t.Errorf("actions = %+v", acts)
	}
}

func TestReplayChecksAndRecords(t *testing.T) {
	e := newEnv(t)
	r := e.ingest("t1", "600", confirmed, "")
	for _, tc := range []struct {
		sel bridge.ReplaySelector
		opt bridge.ReplayOptions
	}{
		{bridge.ReplaySelector{}, bridge.ReplayOptions{}},
		{bridge.ReplaySelector{State: "nope"}, bridge.ReplayOptions{}},
		{bridge.ReplaySelector{Dead: true, OrderID: "1"}, bridge.ReplayOptions{}},
		{bridge.ReplaySelector{OrderID: "1"}, bridge.ReplayOptions{Targets: []string{"nope"}}},
	} {
		var ie *InputError
		if _, err := e.svc.Replay(ctx, "x", tc.sel, tc.opt); !errors.As(err, &ie) {
			t.Errorf("replay %+v %+v: %v, want an InputError", tc.sel, tc.opt, err)
		}
	}
	sum, err := e.svc.Replay(ctx, "192.0.2.1", bridge.ReplaySelector{EventIDs: []string{r.EventID}}, bridge.ReplayOptions{DryRun: true, Force: true})
	if err != nil || sum.Dispatched != 1 || len(sum.Requests) != 1 {
		t.Fatalf("dry run = %+v, %v", sum, err)
	}
	if acts, _ := e.svc.Actions(ctx, 10); len(acts) != 0 {
		t.Errorf("a dry run was recorded as an action: %+v", acts)
	}
	if _, err := e.svc.Replay(ctx, "192.0.2.1", bridge.ReplaySelector{EventIDs: []string{r.EventID}}, bridge.ReplayOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	acts, _ := e.svc.Actions(ctx, 10)
	if len(acts) != 1 || acts[0].Kind != "replay" || !strings.Contains(acts[0].What, "event "+r.EventID) || !strings.Contains(acts[0].What, "1 dispatched") {
		t.Errorf("actions = %+v", acts)
	}
}

// deadFixture makes dead deliveries of several kinds and returns the ids
// that a retry job should queue again.
func deadFixture(e *env) (want map[string]bool) {
	want = map[string]bool{}
	a := e.ingest("a", "1", confirmed, "2026-01-13 10:00:00")
	e.kill(a.Deliveries[0].ID, 400, "permanent failure: 400")
	want[a.Deliveries[0].ID] = true
	b := e.ingest("b", "2", awaiting, "2026-01-13 10:00:00") // expertsender and crm
	for _, d := range b.Deliveries {
		e.kill(d.ID, 503, "gave up after 12 attempts: 503")
		want[d.ID] = true
	}
	// Outcome unknown: the last attempt timed out.
	c := e.ingest("c", "3", confirmed, "")
	e.kill(c.Deliveries[0].ID, 0, "gave up after 12 attempts: timeout")
	// Replaced by a newer delivery: retrying would send an older status.
	d := e.ingest("d", "4", confirmed, "2026-01-13 10:00:00")
	e.kill(d.Deliveries[0].ID, 400, "permanent failure: 400")
	e.ingest("d2", "4", awaiting, "2026-01-13 11:00:00")
	// Dead without an answer, but refused before anything was sent: known.
	f := e.ingest("f", "5", confirmed, "")
	e.kill(f.Deliveries[0].ID, 0, "permanent failure: placeholder {third.email} is missing")
	want[f.Deliveries[0].ID] = true
	return want
}

func TestRetryJobPreviewRunAndResume(t *testing.T) {
	e := newEnv(t)
	want := deadFixture(e)
	p, err := e.svc.PreviewRetry(ctx, JobRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Matched != 6 || p.Retry != 4 || p.Skipped[bridge.SkipOutcomeUnknown] != 1 || p.Skipped[bridge.SkipNewerExists] != 1 {
		t.Errorf("preview = %+v", p)
	}
	wantSends := []SendCount{{"expertsender", "paid", 2}, {"expertsender", "placed", 1}, {"http.crm", "waiting", 1}}
	if fmt.Sprint(p.Sends) != fmt.Sprint(wantSends) {
		t.Errorf("sends = %v, want %v", p.Sends, wantSends)
	}
	if p2, _ := e.svc.PreviewRetry(ctx, JobRequest{IncludeUnknown: true}); p2.Retry != 5 {
		t.Errorf("with unknown outcomes: %+v", p2)
	}
	if p3, _ := e.svc.PreviewRetry(ctx, JobRequest{Filter: bridge.JobFilter{Target: "http.crm"}}); p3.Matched != 1 || p3.Retry != 1 {
		t.Errorf("crm only: %+v", p3)
	}
	for _, bad := range []JobRequest{{Kind: "delete"}, {Filter: bridge.JobFilter{State: "done"}}, {Filter: bridge.JobFilter{Target: "nope"}}} {
		var ie *InputError
		if _, err := e.svc.CreateJob(ctx, "x", bad); !errors.As(err, &ie) {
			t.Errorf("job %+v: %v, want an InputError", bad, err)
		}
	}

	// A job interrupted after two deliveries continues after its cursor.
	j, err := e.svc.CreateJob(ctx, "192.0.2.5", JobRequest{})
	if err != nil || j.Total != 6 || j.State != bridge.JobQueued {
		t.Fatalf("job = %+v, %v", j, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	steps := 0
	e.svc.now = func() time.Time {
		return time.Now()
	}
	cancelAfter := &cancelStore{Store: bridge.Store{Backend: e.db}, after: 2, cancel: cancel, steps: &steps}
	e.svc.store = cancelAfter
	if err := e.svc.runJob(ctx, j); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted job: %v", err)
	}
	mid, err := e.svc.Job(context.Background(), j.ID) // ctx is canceled: a database refuses it
	if err != nil {
		t.Fatal(err)
	}
	if mid.State != bridge.JobRunning || mid.Done != 2 || mid.Cursor == "" {
		t.Fatalf("after the interruption: %+v", mid)
	}
	e.svc.store = bridge.Store{Backend: e.db}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go e.svc.RunJobs(ctx)
	end := waitJob(t, e.svc, j.ID)
	if end.Done != 4 || end.Skipped[bridge.SkipOutcomeUnknown] != 1 || end.Skipped[bridge.SkipNewerExists] != 1 || end.Processed() != 6 {
		t.Errorf("finished job = %+v", end)
	}
	// Every wanted delivery was queued again exactly once.
	pending, _, _ := e.db.ListDeliveries(ctx, bridge.DeliveryFilter{State: "pending", Limit: 100})
	retried := map[string]int{}
	for _, d := range pending {
		if old, ok := strings.CutPrefix(d.Reason, "retry of "); ok {
			retried[old]++
		}
	}
	if len(retried) != len(want) {
		t.Errorf("retried %v, want %v", retried, want)
	}
	for id, n := range retried {
		if !want[id] || n != 1 {
			t.Errorf("delivery %s retried %d times (wanted: %v)", id, n, want[id])
		}
	}
	// A second job finds nothing left to retry: the retried ones have newer deliveries.
	j2, _ := e.svc.CreateJob(ctx, "x", JobRequest{})
	if end := waitJob(t, e.svc, j2.ID); end.Done != 0 || end.Skipped[bridge.SkipNewerExists] != 5 {
		t.Errorf("second job = %+v", end)
	}
}

// cancelStore cancels the job's context after `after` retries.
type cancelStore struct {
	Store
	after  int
	steps  *int
	cancel context.CancelFunc
}

func (c *cancelStore) RetryDelivery(ctx context.Context, id string, now time.Time) (*bridge.Delivery, error) {
	d, err := c.Store.RetryDelivery(ctx, id, now)
	if *c.steps++; *c.steps == c.after {
		c.cancel()
	}
	return d, err
}

func waitJob(t *testing.T, s *Service, id string) *bridge.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := s.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State.Finished() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never finished: %+v", j)
		}
		time.Sleep(5 * time.Millisecond) // poll pace: the job is another goroutine's
	}
}

func TestOverviewFromCounters(t *testing.T) {
	e := newEnv(t)
	e.svc.health = func() map[string]bridge.TargetHealth {
		return map[string]bridge.TargetHealth{"expertsender": {Breaker: "open", OpenUntil: time.Now().Add(time.Minute)}}
	}
	a := e.ingest("a", "1", confirmed, "")
	e.kill(a.Deliveries[0].ID, 400, "permanent failure: 400")
	e.ingest("b", "2", "unknownstatus000", "")
	e.ingest("c", "3", "unknownstatus000", "")
	e.ingest("d", "4", awaiting, "")
	o, err := e.svc.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(o.LastHour) != "[{dispatched 2} {unmapped 2}]" || fmt.Sprint(o.LastDay) != fmt.Sprint(o.LastHour) {
		t.Errorf("last hour = %v, last day = %v", o.LastHour, o.LastDay)
	}
	if fmt.Sprint(o.Unmapped) != "[{unknownstatus000 2}]" {
		t.Errorf("unmapped = %v", o.Unmapped)
	}
	if len(o.Targets) != 2 {
		t.Fatalf("targets = %+v", o.Targets)
	}
	es, crm := o.Targets[0], o.Targets[1]
	if es.Name != "expertsender" || es.Dead != 1 || es.Pending != 1 || es.Breaker != "open" || es.OldestPending.IsZero() || !es.Configured {
		t.Errorf("expertsender = %+v", es)
	}
	if crm.Name != "http.crm" || crm.Pending != 1 || crm.Breaker != "" {
		t.Errorf("crm = %+v", crm)
	}
	if o.Mapping.Version != e.maps.Current().Version() || o.Mapping.LastReload != nil {
		t.Errorf("mapping = %+v", o.Mapping)
	}
	// A refused reload shows with its problems.
	if err := os.WriteFile(e.cfg, []byte(baseYAML+"    zz: { nme: x }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Reload(ctx, "192.0.2.3"); err == nil {
		t.Fatal("a broken mapping was accepted")
	}
	o, _ = e.svc.Overview(ctx)
	if r := o.Mapping.LastReload; r == nil || r.OK || len(r.Problems) == 0 || r.Problems[0].Line != 6 {
		t.Errorf("last reload = %+v", r)
	}
	if len(o.Actions) != 1 || o.Actions[0].Kind != "reload" || o.Actions[0].Result != "1 problem(s) in the mapping" {
		t.Errorf("actions = %+v", o.Actions)
	}
}

func TestOrderTimeline(t *testing.T) {
	e := newEnv(t)
	first := e.ingest("t1", "12345", awaiting, "2026-01-13 10:00:00")
	if err := e.db.Record(ctx, byTarget(first.Deliveries, "expertsender").ID, bridge.AttemptResult{State: bridge.Done,
		Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	second := e.ingest("t1", "12345", confirmed, "2026-01-13 11:00:00")
	e.kill(second.Deliveries[0].ID, 400, "permanent failure: 400 {\"errors\":[\"bad\"]}")
	e.ingest("x", "999", confirmed, "")
	v, err := e.svc.Order(ctx, "12345")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Events) != 2 || len(v.Intakes) != 0 || v.Ticket != nil || v.More {
		t.Errorf("view: %d events, intakes %v", len(v.Events), v.Intakes)
	}
	es := v.Targets[0]
	if es.Target != "expertsender" || es.LastDone == nil || es.LastDone.Status != "placed" || es.Latest.Status != "paid" || es.Latest.State != bridge.Dead {
		t.Errorf("expertsender: last done %+v, latest %+v", es.LastDone, es.Latest)
	}
	kinds := map[string]int{}
	for i, en := range v.Timeline {
		kinds[en.Kind]++
		if i > 0 && en.At.Before(v.Timeline[i-1].At) {
			t.Errorf("timeline out of order at %d", i)
		}
	}
	if kinds["event"] != 2 || kinds["decision"] != 2 || kinds["delivery"] != 3 || kinds["attempt"] != 2 {
		t.Errorf("timeline kinds = %v", kinds)
	}
	if v, _ := e.svc.Order(ctx, "nothing"); len(v.Timeline) != 0 {
		t.Errorf("unknown order: %+v", v)
	}
}

func TestPreviewMapping(t *testing.T) {
	e := newEnv(t)
	e.ingest("a", "1", confirmed, "")
	e.ingest("b", "2", confirmed, "")
	e.ingest("c", "3", "newstatus0000000", "")
	p, err := e.svc.PreviewMapping(ctx, []byte("mapping:\n  statuses:\n    yqdwrbka7kz69v8e: { name: X, expertsender: paid }\n    zz: { nme: 1 }\n"), 100)
	if err != nil || len(p.Problems) != 1 || p.Problems[0].Line != 4 || p.Problems[0].Path != "mapping.statuses.zz.nme" {
		t.Fatalf("broken candidate: %+v, %v", p, err)
	}
	cand := `mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: completed }
    newstatus0000000: { name: New, expertsender: shipped }
`
	p, err = e.svc.PreviewMapping(ctx, []byte(cand), 100)
	if err != nil || len(p.Problems) != 0 {
		t.Fatalf("good candidate: %+v, %v", p, err)
	}
	if p.Examined != 3 || p.Changed != 3 || len(p.Changes) != 2 {
		t.Fatalf("preview = %+v", p)
	}
	g := p.Changes[0]
	if g.From != "dispatched (expertsender=paid)" || g.To != "dispatched (expertsender=completed)" || g.Count != 2 || len(g.Examples) != 2 {
		t.Errorf("first change = %+v", g)
	}
	if g := p.Changes[1]; g.From != "unmapped" || g.To != "dispatched (expertsender=shipped)" || g.Examples[0].OrderID != "3" {
		t.Errorf("second change = %+v", g)
	}
	if _, err := e.svc.PreviewMapping(ctx, []byte(cand), 0); err == nil {
		t.Error("last=0 accepted")
	}
	v, err := e.svc.Mapping(ctx)
	if err != nil || len(v.Rows) != 2 || v.Rows[1].StatusID != confirmed || v.Rows[1].Stored != 2 || fmt.Sprint(v.Unmapped) != "[{newstatus0000000 1}]" {
		t.Errorf("mapping view = %+v, %v", v, err)
	}
	// The section it offers as a starting point is itself a valid candidate
	// that changes nothing.
	if p, err := e.svc.PreviewMapping(ctx, []byte(v.Section), 100); err != nil || len(p.Problems) != 0 || p.Changed != 0 || p.Version != e.maps.Current().Version() {
		t.Errorf("the current section as a candidate: %+v, %v\n%s", p, err, v.Section)
	}
}

func TestGuardSlowsDownWrongTokens(t *testing.T) {
	g := NewGuard("right-token")
	now := time.Unix(1e9, 0)
	g.now = func() time.Time { return now }
	if ok, wait := g.Check("a", "right-token"); !ok || wait != 0 {
		t.Fatal("right token refused")
	}
	for i := range 5 {
		if ok, wait := g.Check("a", "wrong"); ok || wait != 0 {
			t.Fatalf("wrong token %d: ok=%v wait=%v", i, ok, wait)
		}
		now = now.Add(time.Second)
	}
	if ok, wait := g.Check("a", "right-token"); ok || wait != 55*time.Second {
		t.Errorf("sixth try: ok=%v wait=%v, want refused for 55s", ok, wait)
	}
	if ok, _ := g.Check("b", "right-token"); !ok {
		t.Error("another address was slowed down")
	}
	now = now.Add(56 * time.Second) // the first failure leaves the minute
	if ok, wait := g.Check("a", "right-token"); !ok || wait != 0 {
		t.Errorf("after the minute: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := NewGuard("").Check("a", ""); ok {
		t.Error("an empty token was accepted")
	}
	for range 10 {
		if _, wait := g.Check("c", ""); wait != 0 {
			t.Fatal("a missing token counted as a wrong one")
		}
	}
}

func TestProxies(t *testing.T) {
	var cidr config.CIDR
	cidr.Prefix = netip.MustParsePrefix("10.0.0.0/8")
	p := ProxiesOf([]config.CIDR{cidr})
	for _, tc := range []struct {
		remote, xff, proto string
		proxies            Proxies
		ip                 string
		https              bool
	}{
		{"192.0.2.1:5000", "203.0.113.9", "https", p, "192.0.2.1", false},                     // not a proxy: headers ignored
		{"10.1.2.3:5000", "203.0.113.9", "https", p, "203.0.113.9", true},                     // a trusted proxy speaks for the client
		{"10.1.2.3:5000", "198.51.100.1, 203.0.113.9, 10.9.9.9", "", p, "203.0.113.9", false}, // the last untrusted hop
		{"10.1.2.3:5000", "", "", p, "10.1.2.3", false},
		{"10.1.2.3:5000", "203.0.113.9", "https", nil, "10.1.2.3", false}, // default: no proxy trusted
		{"[::ffff:10.1.2.3]:5000", "203.0.113.9", "", p, "203.0.113.9", false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if tc.proto != "" {
			r.Header.Set("X-Forwarded-Proto", tc.proto)
		}
		if ip := tc.proxies.ClientIP(r); ip != tc.ip {
			t.Errorf("%s xff %q: ClientIP = %s, want %s", tc.remote, tc.xff, ip, tc.ip)
		}
		if h := tc.proxies.HTTPS(r); h != tc.https {
			t.Errorf("%s proto %q: HTTPS = %v", tc.remote, tc.proto, h)
		}
	}
}
