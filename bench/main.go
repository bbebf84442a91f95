// Command bench measures statusbridge against a no-op Echo server in one run
// and prints the figures and ratios of issue 5 as a table and as JSON.
//
//	go run ./bench [-short] [-out bench/out/results.json]
//
// It builds the binary, starts a no-op Echo server (this program re-executed
// with -noop), the disk's floor (-bolt: one bbolt Update per request, the
// issue's reference figure, measured here), statusbridge with its targets paused (deliveries recorded as
// skipped) and statusbridge delivering to a no-op ExpertSender served by this
// program, which records when each PUT arrives (end-to-end latency). Load
// comes from vegeta (as a library): closed loop with 64 connections for
// saturation, open loop (requests sent on schedule whatever the answers, up
// to -inflight at once, 512 by default) for fixed rates. Payloads are ~1.5 KB
// with unique ticket and order ids.
//
// For each statusbridge phase it also reads the server's own /metrics before
// and after, and reports the server-side p99 (handler arrival → answer, from
// statusbridge_webhook_seconds), group-commit p50/p99 and size, and server
// CPU per stored webhook: what the server spent, apart from the load
// generator sharing the machine.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/statusbridge/statusbridge/bench/internal/latency"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	bolt "go.etcd.io/bbolt"
)

func main() {
	noop := flag.String("noop", "", "run only the no-op Echo server on this address (used by the bench itself)")
	boltBase := flag.String("bolt", "", "run only the one-bbolt-Update-per-request Echo server on this address, storing in the file -bolt-path (used by the bench itself)")
	boltPath := flag.String("bolt-path", "", "the file of -bolt")
	short := flag.Bool("short", false, "shorter phases (a quick look, noisier figures)")
	out := flag.String("out", "bench/out/results.json", "where to write the results as JSON")
	events := flag.Int("events", 100000, "events to store before measuring RSS and store size")
	flag.IntVar(&maxInFlight, "inflight", maxInFlight, "most requests in flight in a fixed-rate phase (0: no limit)")
	flag.Parse()
	if *noop != "" {
		runNoop(*noop)
		return
	}
	if *boltBase != "" {
		if err := runBolt(*boltBase, *boltPath); err != nil {
			fmt.Fprintln(os.Stderr, "bench -bolt:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*short, *out, *events); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runNoop is the baseline: Echo, read the body, answer 200.
func runNoop(addr string) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/webhooks/digishare", func(c echo.Context) error {
		_, _ = io.Copy(io.Discard, c.Request().Body)
		return c.JSON(http.StatusOK, map[string]any{"event_id": "x", "duplicate": false, "state": "dispatched"})
	})
	_ = e.Start(addr)
}

// runBolt is the disk's floor: Echo, read the body, store it with one bbolt
// Update (two fdatasyncs), answer 200 — the issue's "one bbolt Update per
// request" reference, measured on this machine.
func runBolt(addr, path string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	var n atomic.Uint64
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/webhooks/digishare", func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		key := binary.BigEndian.AppendUint64(nil, n.Add(1))
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("events"))
			if err != nil {
				return err
			}
			return b.Put(key, body)
		}); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"event_id": "x", "duplicate": false, "state": "dispatched"})
	})
	return e.Start(addr)
}

// Result is one measured phase.
type Result struct {
	Name       string  `json:"name"`
	Rate       float64 `json:"rate_per_s"`               // requests sent per second
	Intended   float64 `json:"intended_per_s,omitempty"` // the fixed rate asked for (0: closed loop)
	Throughput float64 `json:"throughput_per_s"`         // 2xx per second
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Success    float64 `json:"success_ratio"`
	OK         int     `json:"ok"`
	Refused    int     `json:"refused_503"`
	RefusedP99 float64 `json:"refused_p99_ms,omitempty"`
	E2EP50ms   float64 `json:"e2e_p50_ms,omitempty"`
	E2EP99ms   float64 `json:"e2e_p99_ms,omitempty"`
	// Server-side figures from statusbridge's own histograms (bucket
	// resolution): time in the handler for stored webhooks, and group commits.
	ServerP99ms     float64 `json:"server_p99_ms,omitempty"`
	CommitP50ms     float64 `json:"commit_p50_ms,omitempty"`
	CommitP99ms     float64 `json:"commit_p99_ms,omitempty"`
	WritesPerCommit float64 `json:"writes_per_commit,omitempty"`
	CPUPerReqUs     float64 `json:"server_cpu_us_per_stored_webhook,omitempty"`
	// GenCPUPerReqUs is this program's CPU per request sent: the load
	// generator (and, in delivery phases, the no-op ExpertSender), which
	// shares the machine's cores with the server.
	GenCPUPerReqUs float64 `json:"generator_cpu_us_per_request,omitempty"`
}

// Report is everything one run measured.
type Report struct {
	When      time.Time          `json:"when"`
	Machine   string             `json:"machine"`
	Phases    []Result           `json:"phases"`
	RSSAnonMB float64            `json:"rss_anon_mb"`
	RSSMB     float64            `json:"rss_total_mb"`
	StoreB    float64            `json:"store_bytes_per_event"`
	Events    int                `json:"events_stored"`
	Ratios    map[string]float64 `json:"ratios"`
}

func run(short bool, outPath string, events int) error {
	dur := 10 * time.Second
	overload := 20 * time.Second
	if short {
		dur, overload = 3*time.Second, 5*time.Second
	}
	dir, err := os.MkdirTemp("", "statusbridge-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "statusbridge")
	fmt.Fprintln(os.Stderr, "building statusbridge…")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	es := newExpertSender()
	defer es.Close()
	rep := &Report{When: time.Now().UTC(), Machine: machine(), Ratios: map[string]float64{}}
	// onBridge runs a phase against a statusbridge and adds its server-side figures.
	onBridge := func(addr string, run func() Result) Result {
		before := scrape(addr)
		r := run()
		after := scrape(addr)
		if n := after["statusbridge_webhook_seconds_count"] - before["statusbridge_webhook_seconds_count"]; n > 0 {
			r.CPUPerReqUs = 1e6 * (after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]) / n
		}
		r.ServerP99ms = 1000 * histQuantile(before, after, "statusbridge_webhook_seconds", 0.99)
		r.CommitP50ms = 1000 * histQuantile(before, after, "statusbridge_store_commit_seconds", 0.50)
		r.CommitP99ms = 1000 * histQuantile(before, after, "statusbridge_store_commit_seconds", 0.99)
		if n := after["statusbridge_store_commit_writes_count"] - before["statusbridge_store_commit_writes_count"]; n > 0 {
			r.WritesPerCommit = (after["statusbridge_store_commit_writes_sum"] - before["statusbridge_store_commit_writes_sum"]) / n
		}
		return r
	}
	phase := func(r Result) Result {
		fmt.Fprintf(os.Stderr, "  %-36s %8.0f/s  p99 %7.2f ms  ok %5.1f%%  server p99 %.2f ms  commit p50/p99 %.2f/%.2f ms × %.1f writes\n",
			r.Name, r.Throughput, r.P99ms, 100*r.Success, r.ServerP99ms, r.CommitP50ms, r.CommitP99ms, r.WritesPerCommit)
		rep.Phases = append(rep.Phases, r)
		return r
	}

	// 1. No-op Echo.
	noopAddr := freeAddr()
	noop, err := startProcess(self, []string{"-noop", noopAddr}, noopAddr, "")
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "no-op Echo:")
	noopSat := phase(attack("noop saturation (64 conns)", noopAddr, nil, vegeta.Rate{}, dur))
	noop1k := phase(attack("noop 1000/s", noopAddr, nil, vegeta.Rate{Freq: 1000, Per: time.Second}, dur))
	noop.stop()

	// 1b. The disk's floor: one bbolt Update (two fdatasyncs) per request.
	boltAddr := freeAddr()
	boltSrv, err := startProcess(self, []string{"-bolt", boltAddr, "-bolt-path", filepath.Join(dir, "baseline.db")}, boltAddr, "")
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "one bbolt Update per request (the disk's floor):")
	boltSat := phase(attack("bbolt Update/request saturation", boltAddr, nil, vegeta.Rate{}, dur))
	bolt1k := phase(attack("bbolt Update/request 500/s", boltAddr, nil, vegeta.Rate{Freq: 500, Per: time.Second}, dur))
	boltSrv.stop()

	// 2. Ingest only (deliveries recorded as skipped, nothing sent).
	ingestAddr := freeAddr()
	ingest, err := startBridge(bin, dir, "ingest", ingestAddr, "")
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "statusbridge, targets paused:")
	ingestSat := phase(onBridge(ingestAddr, func() Result {
		return attack("ingest saturation (64 conns)", ingestAddr, nil, vegeta.Rate{}, dur)
	}))
	phase(onBridge(ingestAddr, func() Result {
		return attack("ingest 1000/s", ingestAddr, nil, vegeta.Rate{Freq: 1000, Per: time.Second}, dur)
	}))
	phase(onBridge(ingestAddr, func() Result {
		return attack("ingest 5000/s", ingestAddr, nil, vegeta.Rate{Freq: 5000, Per: time.Second}, dur)
	}))
	capacity := ingestSat.Throughput
	over := phase(onBridge(ingestAddr, func() Result {
		return attack(fmt.Sprintf("overload 2× capacity (%.0f/s)", 2*capacity), ingestAddr, nil,
			vegeta.Rate{Freq: int(2 * capacity), Per: time.Second}, overload)
	}))
	ingest.stop()

	// 3. Ingest and delivery to the no-op ExpertSender.
	deliverAddr := freeAddr()
	deliver, err := startBridge(bin, dir, "deliver", deliverAddr, es.URL())
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "statusbridge delivering to a no-op ExpertSender:")
	deliverSat := phase(onBridge(deliverAddr, func() Result {
		return attack("ingest+delivery saturation (64 conns)", deliverAddr, es, vegeta.Rate{}, dur)
	}))
	es.reset()
	deliver1k := phase(onBridge(deliverAddr, func() Result {
		return attack("ingest+delivery 1000/s", deliverAddr, es, vegeta.Rate{Freq: 1000, Per: time.Second}, dur)
	}))

	// 4. Fill to the event count, then read RSS and the store's size.
	stored := deliverSat.OK + deliver1k.OK // every 2xx of a new id is a stored event
	fmt.Fprintf(os.Stderr, "storing %d events for RSS and size…\n", events)
	for stored < events {
		d := time.Duration(float64(events-stored)/max(deliverSat.Throughput, 100)*float64(time.Second)) + time.Second
		stored += attack("fill", deliverAddr, nil, vegeta.Rate{}, d).OK
	}
	deliver.waitQuiet()
	rep.RSSAnonMB, rep.RSSMB = rss(deliver.cmd.Process.Pid)
	deliver.stop()
	fi, err := os.Stat(deliver.dbPath)
	if err != nil {
		return err
	}
	rep.Events = stored
	rep.StoreB = float64(fi.Size()) / float64(max(rep.Events, 1))

	rep.Ratios["durable_ingest_saturation_vs_noop"] = ingestSat.Throughput / noopSat.Throughput
	rep.Ratios["ingest_delivery_saturation_vs_noop"] = deliverSat.Throughput / noopSat.Throughput
	rep.Ratios["ack_p99_1000_with_delivery_ms"] = deliver1k.P99ms
	rep.Ratios["ack_p99_1000_vs_noop_p99"] = deliver1k.P99ms / max(noop1k.P99ms, 0.001)
	rep.Ratios["bolt_update_per_request_per_s"] = boltSat.Throughput
	rep.Ratios["bolt_update_per_request_p99_500_ms"] = bolt1k.P99ms
	rep.Ratios["e2e_p99_1000_ms"] = deliver1k.E2EP99ms
	rep.Ratios["overload_throughput_vs_capacity"] = over.Throughput / capacity
	rep.Ratios["overload_p99_ms"] = over.P99ms
	rep.Ratios["overload_refused_p99_ms"] = over.RefusedP99
	// The same latencies as the server saw them, and how far the generator
	// (on the same cores) kept to its rate: what the client-side figures
	// hold besides the server's own time.
	rep.Ratios["ack_p99_1000_with_delivery_server_ms"] = deliver1k.ServerP99ms
	rep.Ratios["overload_server_p99_ms"] = over.ServerP99ms
	if over.Intended > 0 {
		rep.Ratios["overload_sent_vs_asked"] = over.Rate / over.Intended
	}
	printReport(rep)
	if err := os.MkdirAll(filepath.Dir(outPath), 0o755); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(rep, "", "  ")
	return os.WriteFile(outPath, append(raw, '\n'), 0o644)
}

var seq atomic.Int64

// maxInFlight caps the requests a fixed-rate phase has in flight, as a
// sender with a pool of connections would (wrk2 keeps a fixed set). A
// request due while all are busy is sent late and its wait counts in its
// latency. Without a cap, vegeta starts a worker and a connection for every
// request that finds none free: under overload that was 2,000–15,000
// connections on the two shared cores, and the generator's own collapse
// was measured instead of the server's.
var maxInFlight = 512

// payload is a ~1.5 KB ticket.updated with unique ticket and order ids.
func payload(id int64) []byte {
	return []byte(fmt.Sprintf(`{"event":"ticket.updated","data":{"id":"bench-%[1]d","data":{"id":"bench-%[1]d","external_id":"ORDER-%[1]d","subject":"Order Confirmation","ticket_number":"%[1]d","type_ticket_id":"npvrxamq9l94y8dz","third_id":"hashed_third_id","ticket_status_id":"yqdwrbka7kz69v8e","priority_id":2,"channel_id":"wa","tags":["bench"],"lang":"fr","created_at":"2025-05-07T10:00:05.000000Z","updated_at":"2026-01-13T16:29:51.000000Z","information":{"third":{"name":"Ahmed Alami","email":"ahmed.alami@example.com","wa_id":"212600000000","ext_ref":"CUSTOMER-67890"},"campaign_data":{"order_id":"%[1]d","invoice_document":{"provider":"digishare","id":"PRE_UPLOADED_HASHED_ID"},"items_count":"5","order_total":"500.00","delivery_address":"Casablanca, Bd Zerktouni, residence les jardins, immeuble 4, appartement 12","note":"Livraison entre 9h et 18h, appeler avant de passer, laisser au gardien si absent. Merci de verifier le colis avant paiement.","products":"[{\"product_name\":\"Roasted Makhanas\",\"product_quantity\":2,\"product_price\":\"150.00\"},{\"product_name\":\"Olive oil 1L\",\"product_quantity\":1,\"product_price\":\"200.00\"}]"}}},"wasRecentlyCreated":false,"changes":{"date_demand":"2026-01-13 17:27:00","date_status":"2026-01-13 16:29:51","ticket_status_id":"yqdwrbka7kz69v8e","updated_at":"2026-01-13 16:29:51"}}}`, id))
}

// attack runs one phase; rate Freq 0 means closed loop with 64 connections.
// With es set, end-to-end latency (sent → the downstream got the PUT) is
// measured for the events of this phase.
//
// Fixed-rate phases count latency from each request's intended send time
// (phase start + (its sequence number + 1) × the interval, as vegeta's
// constant pacer schedules them), not from when vegeta
// got round to sending it: a generator that falls behind (it shares the
// CPU) would otherwise hide the wait (coordinated omission).
func attack(name, addr string, es *expertSender, rate vegeta.Rate, d time.Duration) Result {
	url := "http://" + addr + "/webhooks/digishare"
	sent := sync.Map{}
	var interval time.Duration
	if rate.Freq > 0 {
		interval = rate.Per / time.Duration(rate.Freq)
	}
	first := seq.Load() + 1
	start := time.Now()
	targeter := func(t *vegeta.Target) error {
		id := seq.Add(1)
		t.Method, t.URL = http.MethodPost, url
		t.Header = http.Header{"Content-Type": {"application/json"}}
		t.Body = payload(id)
		if es != nil {
			at := time.Now()
			if interval > 0 {
				at = start.Add(time.Duration(id-first+1) * interval)
			}
			sent.Store(strconv.FormatInt(id, 10), at)
		}
		return nil
	}
	// MaxBody(0): only status codes are read, so answers' bodies are not kept
	// (~20 µs of the generator's CPU per request).
	opts := []func(*vegeta.Attacker){vegeta.KeepAlive(true), vegeta.Timeout(30 * time.Second), vegeta.Connections(10000), vegeta.MaxBody(0)}
	if rate.Freq == 0 {
		opts = append(opts, vegeta.Workers(64), vegeta.MaxWorkers(64), vegeta.Connections(64))
	} else {
		opts = append(opts, vegeta.Workers(64)) // more are started as needed, up to maxInFlight
		if maxInFlight > 0 {
			opts = append(opts, vegeta.MaxWorkers(uint64(maxInFlight)))
		}
	}
	atk := vegeta.NewAttacker(opts...)
	var ok, refused []time.Duration
	total := 0
	cpu0 := selfCPU()
	for res := range atk.Attack(targeter, rate, d, name) {
		total++
		lat := res.Latency
		if interval > 0 {
			intended := start.Add(time.Duration(res.Seq+1) * interval) // vegeta's pacer: hit n at (n+1) intervals
			lat = res.Timestamp.Add(res.Latency).Sub(intended)
		}
		switch {
		case res.Code >= 200 && res.Code < 300:
			ok = append(ok, lat)
		case res.Code == http.StatusServiceUnavailable:
			refused = append(refused, lat)
		}
	}
	elapsed := time.Since(start)
	genCPU := selfCPU() - cpu0
	r := Result{GenCPUPerReqUs: 1e6 * genCPU.Seconds() / float64(max(total, 1)), Name: name, Rate: float64(total) / elapsed.Seconds(), Intended: float64(rate.Freq) * float64(time.Second) / float64(max(rate.Per, 1)),
		Throughput: float64(len(ok)) / elapsed.Seconds(),
		P50ms:      latency.Ms(ok, 0.50), P99ms: latency.Ms(ok, 0.99), Success: float64(len(ok)) / float64(max(total, 1)), OK: len(ok),
		Refused: len(refused), RefusedP99: latency.Ms(refused, 0.99)}
	if es != nil {
		e2e := es.latencies(&sent, 10*time.Second)
		r.E2EP50ms, r.E2EP99ms = latency.Ms(e2e, 0.50), latency.Ms(e2e, 0.99)
	}
	return r
}

// selfCPU is the CPU this process has used (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// expertSender is the no-op downstream: it answers 200 and records arrivals.
type expertSender struct {
	srv      *http.Server
	ln       net.Listener
	mu       sync.Mutex
	arrivals map[string]time.Time
}

func newExpertSender() *expertSender {
	es := &expertSender{arrivals: map[string]time.Time{}}
	es.ln, _ = net.Listen("tcp", "127.0.0.1:0")
	es.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		var b struct {
			OrderID string `json:"orderId"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		es.mu.Lock()
		if _, seen := es.arrivals[b.OrderID]; !seen {
			es.arrivals[b.OrderID] = now
		}
		es.mu.Unlock()
		_, _ = io.WriteString(w, "{}")
	})}
	go es.srv.Serve(es.ln)
	return es
}

func (es *expertSender) URL() string { return "http://" + es.ln.Addr().String() }
func (es *expertSender) Close()      { _ = es.srv.Close() }
func (es *expertSender) reset() {
	es.mu.Lock()
	es.arrivals = map[string]time.Time{}
	es.mu.Unlock()
}

// latencies waits (up to wait) for the phase's events to arrive and returns
// arrival − send time for each.
func (es *expertSender) latencies(sent *sync.Map, wait time.Duration) []time.Duration {
	deadline := time.Now().Add(wait)
	for {
		var out []time.Duration
		missing := 0
		es.mu.Lock()
		sent.Range(func(k, v any) bool {
			if at, ok := es.arrivals[k.(string)]; ok {
				out = append(out, at.Sub(v.(time.Time)))
			} else {
				missing++
			}
			return true
		})
		es.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type process struct {
	cmd    *exec.Cmd
	addr   string
	dbPath string
	done   chan struct{}
}

func startProcess(bin string, args []string, addr, dbPath string) (*process, error) {
	p := &process{cmd: exec.Command(bin, args...), addr: addr, dbPath: dbPath, done: make(chan struct{})}
	p.cmd.Stderr = io.Discard
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited during start-up", bin)
		default:
		}
		if time.Now().After(deadline) {
			return nil, errors.New("server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitQuiet waits (up to two minutes) until the delivery worker has drained
// its outbox — RSS is read in the steady state of a bridge holding the
// events, not in the middle of a backlog — then a moment more.
func (p *process) waitQuiet() {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		m := scrape(p.addr)
		if depth, ok := m[`statusbridge_outbox_depth{target="expertsender"}`]; ok && depth == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
}

func startBridge(bin, dir, name, addr, esURL string) (*process, error) {
	db := filepath.Join(dir, name+".db")
	key := ""
	base := "https://api.ecdp.app"
	if esURL != "" {
		key, base = "bench-key", esURL
	}
	cfg := fmt.Sprintf(`listen: %s
log: { level: error, format: json }
store: { path: %q }
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { base_url: %q, api_key: %q, timeout: 5s } }
delivery: { concurrency: 16 }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid } } }
`, addr, db, base, key)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return startProcess(bin, []string{"serve", "--config", path}, addr, db)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rss reads the anonymous and total resident set of a process, in MB.
func rss(pid int) (anon, total float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb / 1024
		case "VmRSS:":
			total = kb / 1024
		}
	}
	return anon, total
}

// scrape reads a statusbridge's /metrics as name{labels} → value.
func scrape(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// histQuantile estimates quantile q of what histogram name observed between
// two scrapes, interpolating linearly inside the bucket (as PromQL does).
func histQuantile(before, after map[string]float64, name string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + `_bucket{le="`
	for k, v := range after {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(k[len(prefix):], `"}`), 64)
		if err != nil {
			continue // +Inf
		}
		bs = append(bs, bucket{le, v - before[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := after[name+"_count"] - before[name+"_count"]
	if total <= 0 || len(bs) == 0 {
		return 0
	}
	rank, lo, below := q*total, 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			return lo + (b.le-lo)*(rank-below)/max(b.n-below, 1)
		}
		lo, below = b.le, b.n
	}
	return bs[len(bs)-1].le
}

func machine() string {
	out, _ := exec.Command("nproc").Output()
	return strings.TrimSpace(string(out)) + " cores, " + strings.TrimSpace(goVersion())
}

func goVersion() string {
	out, _ := exec.Command("go", "version").Output()
	return string(out)
}

func printReport(r *Report) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "statusbridge benchmark, %s, %s\n\n", r.When.Format(time.RFC3339), r.Machine)
	fmt.Fprintln(w, "PHASE\tSENT/S\tOK/S\tP50 MS\tP99 MS\t503s\tE2E P99 MS\tSERVER P99 MS\tCOMMIT P50/P99 MS\tWRITES/COMMIT\tCPU µs/REQ\tGEN CPU µs/REQ")
	dash := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	for _, p := range r.Phases {
		commit := "-"
		if p.CommitP99ms > 0 {
			commit = dash(p.CommitP50ms) + " / " + dash(p.CommitP99ms)
		}
		cpu := "-"
		if p.CPUPerReqUs > 0 {
			cpu = fmt.Sprintf("%.0f", p.CPUPerReqUs)
		}
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.2f\t%.2f\t%d\t%s\t%s\t%s\t%s\t%s\t%.0f\n", p.Name, p.Rate, p.Throughput, p.P50ms, p.P99ms,
			p.Refused, dash(p.E2EP99ms), dash(p.ServerP99ms), commit, dash(p.WritesPerCommit), cpu, p.GenCPUPerReqUs)
	}
	w.Flush()
	for _, p := range r.Phases {
		if p.Intended > 0 && p.Rate < 0.9*p.Intended {
			fmt.Fprintf(os.Stdout, "note: %s: the load generator sent %.0f/s of the %.0f/s asked (it shares the CPU); "+
				"latency counts from the intended send times, so its lag is in the figures\n", p.Name, p.Rate, p.Intended)
		}
	}
	fmt.Fprintf(w, "\nRSS after %d events: %.1f MB anonymous, %.1f MB total; store %.0f bytes per event\n\n", r.Events, r.RSSAnonMB, r.RSSMB, r.StoreB)
	fmt.Fprintln(w, "FIGURE\tMEASURED\tTARGET")
	rows := []struct {
		name, target string
		v            float64
		pct          bool
	}{
		{"one bbolt Update per request, saturation (req/s)", "reference", r.Ratios["bolt_update_per_request_per_s"], false},
		{"  … its p99 at 500/s (ms)", "reference", r.Ratios["bolt_update_per_request_p99_500_ms"], false},
		{"durable ingest at saturation ÷ no-op Echo", "≥ 25%", r.Ratios["durable_ingest_saturation_vs_noop"], true},
		{"ingest + delivery at saturation ÷ no-op Echo", "≥ 15%", r.Ratios["ingest_delivery_saturation_vs_noop"], true},
		{"p99 ack at 1,000/s with delivery (ms)", "≤ 3 ms", r.Ratios["ack_p99_1000_with_delivery_ms"], false},
		{"  … ÷ no-op p99", "≤ 5×", r.Ratios["ack_p99_1000_vs_noop_p99"], false},
		{"  … server-side, handler → answer (ms)", "reference", r.Ratios["ack_p99_1000_with_delivery_server_ms"], false},
		{"end-to-end p99 at 1,000/s (ms)", "≤ 4 ms", r.Ratios["e2e_p99_1000_ms"], false},
		{"throughput during 2× overload ÷ capacity", "≥ 90%", r.Ratios["overload_throughput_vs_capacity"], true},
		{"  p99 of accepted during overload (ms)", "≤ 50 ms or fast 503s", r.Ratios["overload_p99_ms"], false},
		{"  p99 of 503s during overload (ms)", "fast", r.Ratios["overload_refused_p99_ms"], false},
		{"  p99 of accepted, server-side (ms)", "reference", r.Ratios["overload_server_p99_ms"], false},
		{"  rate the generator sent ÷ asked", "reference", r.Ratios["overload_sent_vs_asked"], true},
		{"anonymous RSS after the events (MB)", "≤ 30 MB", r.RSSAnonMB, false},
		{"store size per event (bytes)", "≤ 1,200", r.StoreB, false},
	}
	for _, row := range rows {
		v := fmt.Sprintf("%.2f", row.v)
		if row.pct {
			v = fmt.Sprintf("%.1f%%", 100*row.v)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", row.name, v, row.target)
	}
	w.Flush()
}
