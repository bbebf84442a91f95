package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
)

// haFailover is delivery.failover in TestHAReplicas: short, so the test
// fits in CI.
const haFailover = 2 * time.Second

// haWindow is how long after a disruption (a kill, the outage) the effects
// the issue allows — an at-least-once repeat, two requests of one order at
// once right after a sender lost its database — may appear.
const haWindow = 2 * haFailover

// TestHAReplicas runs three serve replicas of the built binary on one
// PostgreSQL server, with delivery.failover 2s, and a fake ExpertSender
// that records every request's start and end. Webhooks are spread
// round-robin over the replicas and every update is sent a second time to
// another replica (it must answer duplicate with the same id); an update
// not acknowledged is sent again to the next replica, as Digishare retries.
// While the load runs, the sending replica (found through /readyz) is
// SIGKILLed at least 5 times and restarted, and PostgreSQL is stopped for
// 3 s once and started again. It checks:
//   - a new sender is elected within failover (+ the poll's slack) after
//     each kill, and one is elected again after the outage;
//   - during the outage every replica's /readyz answers 503 with a reason,
//     no webhook sent while PostgreSQL was down is acknowledged before it
//     is back, and the replicas recover without a restart;
//   - every acknowledged event is in the database; each order's newest
//     status reaches ExpertSender; no order receives an older status after
//     a newer one; no delivery ends dead or stays pending;
//   - two requests of one order are never in flight at once, except within
//     haWindow after the outage (counted); at-least-once repeats happen only
//     within haWindow after a kill or the outage (counted);
//   - the DSN's password never appears in the replicas' logs.
func TestHAReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("the HA test runs for about a minute")
	}
	pg := pgtest.Start(t)
	const (
		orders, updates = 150, 16
		kills           = 5
		ratePerS        = 60 // updates per second (each posted twice)
		secret          = "ha-Pw-s3cret"
	)
	bin := buildBinary(t)
	dsn := strings.Replace(pg.DSN(), "postgres://postgres@", "postgres://postgres:"+secret+"@", 1) // trust auth: never checked, must never be shown
	es := newOverlapES(t)
	dir := t.TempDir()
	var statuses strings.Builder
	for k := range updates {
		fmt.Fprintf(&statuses, "    s%015d: { name: S%d, expertsender: st%d }\n", k, k, k)
	}
	reps := make([]*replica, 3)
	for i := range reps {
		r := &replica{t: t, bin: bin, name: fmt.Sprint("r", i), addr: freeAddr(t)}
		r.cfg = filepath.Join(dir, r.name+".yaml")
		yaml := fmt.Sprintf(`listen: %s
log: { level: warn, format: json }
store: { driver: postgres, postgres: { dsn: %q, max_conns: 8 } }
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { base_url: %q, api_key: ha-key-1, timeout: 2s } }
delivery: { max_attempts: 1000, backoff: { initial: 50ms, max: 500ms }, concurrency: 8, failover: %s }
mapping:
  statuses:
%s`, r.addr, dsn, es.URL, haFailover, statuses.String())
		if err := os.WriteFile(r.cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if r.log, err = os.Create(filepath.Join(dir, r.name+".log")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.log.Close() })
		t.Cleanup(r.kill) // on every path: never leave a server running
		reps[i] = r
	}
	for _, r := range reps {
		r.start()
	}
	if _, err := waitSender(reps, nil, 10*time.Second); err != nil {
		t.Fatalf("no sender elected at start: %v", err)
	}

	// The disruptions, as they happened (read by the checks).
	var dmu sync.Mutex
	var killedAt []time.Time
	var pgStop, pgStopped, pgStart, pgStarted time.Time
	windows := func() (kills []time.Time, stop, started time.Time) {
		dmu.Lock()
		defer dmu.Unlock()
		return append([]time.Time(nil), killedAt...), pgStop, pgStarted
	}

	// The load: workers each own some orders and send their updates in
	// order, each update acknowledged before the next, paced by one ticker.
	var (
		acked, sent, refused, noAnswer, dupFirst, notDup atomic.Int64
		wmu                                              sync.Mutex
		ackedIDs                                         = map[string]bool{}
		calls                                            []webhookCall
	)
	pace := time.NewTicker(time.Second / ratePerS)
	defer pace.Stop()
	loadDone := make(chan struct{})
	stopLoad := make(chan struct{}) // the test is ending early: workers return
	defer close(stopLoad)
	var problems []string // the workers' findings, reported by the test's goroutine
	var rr atomic.Int64
	post := func(body []byte, replicaIdx int) (string, bool, bool) {
		for {
			r := reps[replicaIdx%len(reps)]
			start := time.Now()
			code, id, dup := postRaw(r.addr, body)
			end := time.Now()
			sent.Add(1)
			wmu.Lock()
			calls = append(calls, webhookCall{start: start, end: end, code: code})
			wmu.Unlock()
			if code == 200 && id != "" {
				return id, dup, true
			}
			if code == 503 {
				refused.Add(1)
			} else {
				noAnswer.Add(1)
			}
			replicaIdx++ // Digishare retries; a load balancer would send it elsewhere
			select {
			case <-time.After(20 * time.Millisecond): // the retry pace
			case <-stopLoad:
				return "", false, false
			}
		}
	}
	const workers = 12
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range updates {
				for o := w; o < orders; o += workers {
					select {
					case <-pace.C:
					case <-stopLoad:
						return
					}
					u := fake.Update{TicketID: fmt.Sprintf("t%d-%d", o, k), OrderID: fmt.Sprint("ORDER-", o),
						StatusID: fmt.Sprintf("s%015d", k), DateStatus: fmt.Sprintf("2026-01-13 10:%02d:00", k)}
					body := u.Payload()
					first := int(rr.Add(1))
					id, dup, ok := post(body, first)
					if !ok {
						return
					}
					if dup {
						dupFirst.Add(1) // its first answer was lost (a kill): the retry found it stored
					}
					again, dup2, ok := post(body, first+1)
					if !ok {
						return
					}
					if !dup2 || again != id {
						notDup.Add(1)
						wmu.Lock()
						problems = append(problems, fmt.Sprintf("update %s of order %d sent again to another replica: event %s duplicate=%v, want a duplicate of %s",
							u.StatusID, o, again, dup2, id))
						wmu.Unlock()
					}
					acked.Add(1)
					wmu.Lock()
					ackedIDs[id] = true
					wmu.Unlock()
				}
			}
		}()
	}
	go func() { wg.Wait(); close(loadDone) }()

	// The disruptions: a kill of the sender every few seconds, the outage
	// after the third.
	var takeovers []time.Duration
	readyz503 := map[string]string{}
	disrupt := time.NewTicker(4 * time.Second)
	defer disrupt.Stop()
	for done := 0; done < kills+1; done++ {
		select {
		case <-disrupt.C:
		case <-loadDone:
			t.Fatalf("the load ended after only %d disruptions: make it longer", done)
		}
		if done == 3 {
			dmu.Lock()
			pgStop = time.Now()
			dmu.Unlock()
			if err := pg.Stop(); err != nil {
				t.Fatal(err)
			}
			dmu.Lock()
			pgStopped = time.Now()
			dmu.Unlock()
			// While it is down, every replica's /readyz must say so (a load
			// balancer stops sending), with a reason.
			downUntil := time.Now().Add(3 * time.Second)
			for time.Now().Before(downUntil) {
				for _, r := range reps {
					if code, body := r.readyz(); code == 503 && body["error"] != nil {
						readyz503[r.name] = fmt.Sprint(body["error"])
					}
				}
				time.Sleep(50 * time.Millisecond) // poll pace during the outage
			}
			dmu.Lock()
			pgStart = time.Now()
			dmu.Unlock()
			if err := pg.Start(); err != nil {
				t.Fatal(err)
			}
			dmu.Lock()
			pgStarted = time.Now()
			dmu.Unlock()
			for _, r := range reps {
				r.waitReady(20 * time.Second)
			}
			if _, err := waitSender(reps, nil, haFailover+5*time.Second); err != nil {
				t.Fatalf("no sender after PostgreSQL came back: %v", err)
			}
			continue
		}
		s, err := waitSender(reps, nil, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		dmu.Lock()
		killedAt = append(killedAt, time.Now())
		dmu.Unlock()
		reps[s].kill()
		t0 := time.Now()
		if _, err := waitSender(reps, reps[s], 3*haFailover); err != nil {
			t.Fatalf("kill %d: %v", len(killedAt), err)
		}
		takeovers = append(takeovers, time.Since(t0))
		reps[s].start()
	}
	<-loadDone
	for _, p := range problems {
		t.Error(p)
	}
	if got := acked.Load(); got != orders*updates {
		t.Fatalf("%d of %d updates acknowledged", got, orders*updates)
	}

	// Every order's newest status arrives.
	final := fmt.Sprint("st", updates-1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := map[string]bool{}
		for _, r := range es.requests() {
			if r.status == final {
				done[r.order] = true
			}
		}
		if len(done) == orders {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d orders received their newest status", len(done), orders)
		}
		es.wait(time.Second)
	}

	kills0, stop, started := windows()
	inWindow := func(at time.Time, from []time.Time) bool {
		for _, k := range from {
			if !at.Before(k) && at.Before(k.Add(haWindow)) {
				return true
			}
		}
		return false
	}
	outage := []time.Time{stop}
	afterOutage := func(at time.Time) bool { return !at.Before(stop) && at.Before(started.Add(haWindow)) }

	// Order, repeats and overlaps, from what the fake received.
	reqs := es.requests()
	last := map[string]int{}
	seen := map[string]bool{}
	var repeatsKill, repeatsOutage, regressions int
	for _, r := range reqs {
		var k int
		fmt.Sscanf(r.status, "st%d", &k)
		if prev, ok := last[r.order]; ok && k < prev {
			regressions++
			t.Errorf("order %s received st%d after st%d (at %s)", r.order, k, prev, r.start.Format("15:04:05.000"))
		}
		last[r.order] = max(last[r.order], k)
		key := r.order + "/" + r.status
		if seen[key] {
			switch {
			case inWindow(r.start, kills0):
				repeatsKill++
			case afterOutage(r.start) || inWindow(r.start, outage):
				repeatsOutage++
			default:
				t.Errorf("order %s got %s again at %s, not right after a kill or the outage", r.order, r.status, r.start.Format("15:04:05.000"))
			}
		}
		seen[key] = true
	}
	overlapsOutage := 0
	for _, o := range es.overlaps() {
		if afterOutage(o.at) {
			overlapsOutage++
			continue
		}
		t.Errorf("two requests for order %s at once at %s, not in the failover window after the outage", o.order, o.at.Format("15:04:05.000"))
	}

	// Webhooks during the outage: none sent after PostgreSQL was down was
	// acknowledged before it was back.
	var during503, duringOther int
	wmu.Lock()
	for _, c := range calls {
		if c.start.After(pgStopped) && c.end.Before(pgStart) {
			switch c.code {
			case 200, 202:
				t.Errorf("a webhook sent at %s while PostgreSQL was down was acknowledged at %s", c.start.Format("15:04:05.000"), c.end.Format("15:04:05.000"))
			case 503:
				during503++
			default:
				duringOther++
			}
		}
	}
	ids := make([]string, 0, len(ackedIDs))
	for id := range ackedIDs {
		ids = append(ids, id)
	}
	wmu.Unlock()
	if during503 == 0 {
		t.Error("no webhook was answered 503 while PostgreSQL was down")
	}
	for _, r := range reps {
		if readyz503[r.name] == "" {
			t.Errorf("%s: /readyz never answered 503 with a reason during the outage", r.name)
		} else if strings.Contains(readyz503[r.name], secret) {
			t.Errorf("%s: /readyz shows the DSN's password: %s", r.name, readyz503[r.name])
		}
	}

	// The database holds every acknowledged event, and the outbox is empty.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var found int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM statusbridge.events WHERE id = ANY($1::uuid[])`, ids).Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found != len(ids) {
		t.Errorf("%d of %d acknowledged events are in the database", found, len(ids))
	}
	states := map[string]int{}
	deadline = time.Now().Add(20 * time.Second)
	for {
		states = map[string]int{}
		rows, err := conn.Query(ctx, `SELECT state, count(*) FROM statusbridge.deliveries GROUP BY state`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			var n int
			if err := rows.Scan(&s, &n); err != nil {
				t.Fatal(err)
			}
			states[s] = n
		}
		rows.Close()
		if states["pending"] == 0 || time.Now().After(deadline) {
			break
		}
		es.wait(500 * time.Millisecond)
	}
	if states["pending"] != 0 || states["dead"] != 0 {
		t.Errorf("deliveries by state at the end: %v; want none pending or dead", states)
	}

	// One sender, the same mapping everywhere; then a graceful stop.
	senders, versions := 0, map[string]bool{}
	for _, r := range reps {
		code, body := r.readyz()
		if code != 200 {
			t.Errorf("%s: /readyz %d %v at the end", r.name, code, body)
		}
		if body["sender"] == true {
			senders++
		}
		versions[fmt.Sprint(body["mapping_version"])] = true
		if v := r.metric("statusbridge_sender"); (v == "1") != (body["sender"] == true) {
			t.Errorf("%s: statusbridge_sender %s but /readyz sender %v", r.name, v, body["sender"])
		}
	}
	if senders != 1 || len(versions) != 1 {
		t.Errorf("at the end: %d senders (want 1), mapping versions %v (want one)", senders, versions)
	}
	for _, r := range reps {
		r.stop()
	}
	for _, r := range reps {
		logs, _ := os.ReadFile(r.log.Name())
		if strings.Contains(string(logs), secret) {
			t.Errorf("%s's log shows the DSN's password", r.name)
		}
	}
	sort.Slice(takeovers, func(i, j int) bool { return takeovers[i] < takeovers[j] })
	for _, d := range takeovers {
		if d > haFailover+500*time.Millisecond {
			t.Errorf("a new sender took %v after a kill, more than delivery.failover (%v) + 0.5 s of polling", d, haFailover)
		}
	}
	t.Logf("HA: %d updates × 2 posts over 3 replicas, %d kills of the sender (takeover %v … %v), PostgreSQL down %.1f s; "+
		"%d webhook calls, %d answered 503 (%d while PostgreSQL was down, %d other failures then), %d without an answer (kills), "+
		"%d first posts found stored already (answer lost to a kill); ExpertSender: %d requests for %d updates, "+
		"%d repeats after a kill, %d after the outage, %d overlapping requests after the outage, %d regressions; deliveries %v",
		orders*updates, len(kills0), takeovers[0], takeovers[len(takeovers)-1], pgStart.Sub(pgStopped).Seconds(),
		sent.Load(), refused.Load(), during503, duringOther, noAnswer.Load(), dupFirst.Load(), len(reqs), orders*updates,
		repeatsKill, repeatsOutage, overlapsOutage, regressions, states)
}

type webhookCall struct {
	start, end time.Time
	code       int
}

// replica is one serve process of the HA test.
type replica struct {
	t          *testing.T
	bin, name  string
	addr, cfg  string
	log        *os.File
	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	generation int
}

func (r *replica) start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.generation++
	fmt.Fprintf(r.log, "--- start %d at %s\n", r.generation, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(r.bin, "serve", "--config", r.cfg)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited
	waitHealthy(r.t, r.addr, exited)
}

// kill SIGKILLs the process (if running) and waits for it.
func (r *replica) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// stop SIGTERMs the process and expects a graceful exit.
func (r *replica) stop() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		if c := r.cmd.ProcessState.ExitCode(); c != 0 {
			r.t.Errorf("%s: exit %d after SIGTERM", r.name, c)
		}
	case <-time.After(20 * time.Second):
		r.t.Errorf("%s: no graceful exit within 20 s of SIGTERM", r.name)
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

func (r *replica) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}

var readyClient = &http.Client{Timeout: 2 * time.Second}

// readyz returns /readyz's status and body (0 without an answer).
func (r *replica) readyz() (int, map[string]any) {
	resp, err := readyClient.Get("http://" + r.addr + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func (r *replica) waitReady(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, body := r.readyz()
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not ready %v after PostgreSQL came back: %d %v", r.name, d, code, body)
		}
		time.Sleep(50 * time.Millisecond) // poll pace
	}
}

func (r *replica) metric(name string) string {
	resp, err := readyClient.Get("http://" + r.addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

// waitSender polls the running replicas (but not except) until exactly one
// says it is the sender, and returns its index.
func waitSender(reps []*replica, except *replica, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		found, n := -1, 0
		for i, r := range reps {
			if r == except || !r.running() {
				continue
			}
			if _, body := r.readyz(); body["sender"] == true {
				found, n = i, n+1
			}
		}
		if n == 1 {
			return found, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("%d replicas said they were the sender for %v", n, d)
		}
		time.Sleep(25 * time.Millisecond) // poll pace
	}
}

// overlapES is a fake ExpertSender that records each request's start and
// whether another request for the same order was in flight then.
type overlapES struct {
	*httptest.Server
	mu       sync.Mutex
	inflight map[string]int
	reqs     []esRequest
	over     []esOverlap
	notify   chan struct{}
}

type esRequest struct {
	order, status string
	start         time.Time
}

type esOverlap struct {
	order string
	at    time.Time
}

func newOverlapES(t *testing.T) *overlapES {
	es := &overlapES{inflight: map[string]int{}, notify: make(chan struct{}, 1)}
	es.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			OrderID     string `json:"orderId"`
			OrderStatus string `json:"orderStatus"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		now := time.Now()
		es.mu.Lock()
		es.inflight[body.OrderID]++
		if es.inflight[body.OrderID] > 1 {
			es.over = append(es.over, esOverlap{body.OrderID, now})
		}
		es.reqs = append(es.reqs, esRequest{body.OrderID, body.OrderStatus, now})
		es.mu.Unlock()
		time.Sleep(5 * time.Millisecond) // the downstream's own latency, so overlaps have room to show
		es.mu.Lock()
		es.inflight[body.OrderID]--
		es.mu.Unlock()
		select {
		case es.notify <- struct{}{}:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(es.Close)
	return es
}

func (es *overlapES) requests() []esRequest {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]esRequest(nil), es.reqs...)
}

func (es *overlapES) overlaps() []esOverlap {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]esOverlap(nil), es.over...)
}

// wait returns after the next request or d.
func (es *overlapES) wait(d time.Duration) {
	select {
	case <-es.notify:
	case <-time.After(d):
	}
}
