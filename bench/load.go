package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/statusbridge/statusbridge/bench/internal/latency"
	"github.com/statusbridge/statusbridge/bench/internal/wrk"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// seq is the last id put in a body: every request of the run has its own.
var seq atomic.Int64

// maxInFlight caps the requests a fixed-rate phase has in flight, as a
// sender with a pool of connections would (wrk2 keeps a fixed set). A
// request due while all are busy is sent late and its wait counts in its
// latency. Without a cap, vegeta starts a worker and a connection for every
// request that finds none free: under overload that was 2,000–15,000
// connections on the two shared cores, and the generator's own collapse
// was measured instead of the server's.
var maxInFlight = 512

// body is a 1.3 KB ticket.updated shaped like Digishare's documented sample
// (internal/fake/payload.go makes the same shape for tests), cut where the id
// goes: the ticket id (data.id and data.data.id), the order id
// (external_id), the ticket number and campaign_data.order_id. A new id
// makes a new dedup key and a new order, so no request is a duplicate. Both
// generators send it: payload for the Go one, the Lua script for wrk.
var body = wrk.Body{Parts: strings.Split(`{"event":"ticket.updated","data":{"id":"bench-{{ID}}","data":{"id":"bench-{{ID}}","external_id":"ORDER-{{ID}}","subject":"Order Confirmation","ticket_number":"{{ID}}","type_ticket_id":"npvrxamq9l94y8dz","third_id":"hashed_third_id","ticket_status_id":"yqdwrbka7kz69v8e","priority_id":2,"channel_id":"wa","tags":["bench"],"lang":"fr","created_at":"2025-05-07T10:00:05.000000Z","updated_at":"2026-01-13T16:29:51.000000Z","information":{"third":{"name":"Ahmed Alami","email":"ahmed.alami@example.com","wa_id":"212600000000","ext_ref":"CUSTOMER-67890"},"campaign_data":{"order_id":"{{ID}}","invoice_document":{"provider":"digishare","id":"PRE_UPLOADED_HASHED_ID"},"items_count":"5","order_total":"500.00","delivery_address":"Casablanca, Bd Zerktouni, residence les jardins, immeuble 4, appartement 12","note":"Livraison entre 9h et 18h, appeler avant de passer, laisser au gardien si absent. Merci de verifier le colis avant paiement.","products":"[{\"product_name\":\"Roasted Makhanas\",\"product_quantity\":2,\"product_price\":\"150.00\"},{\"product_name\":\"Olive oil 1L\",\"product_quantity\":1,\"product_price\":\"200.00\"}]"}}},"wasRecentlyCreated":false,"changes":{"date_demand":"2026-01-13 17:27:00","date_status":"2026-01-13 16:29:51","ticket_status_id":"yqdwrbka7kz69v8e","updated_at":"2026-01-13 16:29:51"}}}`, "{{ID}}")}

// payload is the body with id in every place.
func payload(id int64) []byte { return []byte(body.Render(id)) }

const webhookPath = "/webhooks/digishare"

// generator drives the saturation phases: wrk when wrk is set, else the Go
// generator (vegeta closed loop).
type generator struct {
	wrk     string // wrk's path; "" = the Go generator
	version string // wrk's first line of -v
	note    string // what was chosen and why, for the output and the JSON
	script  string // where the Lua script is written for each run
}

func (g generator) name() string {
	if g.wrk != "" {
		return "wrk"
	}
	return "go"
}

// GeneratorInfo is the JSON's account of the generators.
type GeneratorInfo struct {
	Saturation string `json:"saturation"`
	WrkVersion string `json:"wrk_version,omitempty"`
	FixedRate  string `json:"fixed_rate"`
	Note       string `json:"note"`
	// The Go generator's rate on the no-op ÷ wrk's, same run (only with wrk):
	// at ≥ 90% it could stand in for wrk.
	GoVsWrkNoop float64 `json:"go_vs_wrk_noop,omitempty"`
}

func (g generator) info(sat time.Duration) GeneratorInfo {
	i := GeneratorInfo{FixedRate: fmt.Sprintf("vegeta (Go, in the bench), open loop, at most %d in flight, latency from the intended send time", maxInFlight),
		Note: g.note}
	if g.wrk != "" {
		i.Saturation = fmt.Sprintf("wrk -t2 -c64 -d%ds with a Lua script (a fresh id per request)", int(sat.Seconds()))
		i.WrkVersion = g.version
	} else {
		i.Saturation = "the Go generator: vegeta closed loop, 64 connections"
	}
	return i
}

// chooseGenerator finds wrk for mode auto or wrk, installing Debian's package
// when it is missing and the bench runs as root. auto falls back to the Go
// generator when that fails; wrk fails; go does not look.
func chooseGenerator(mode, dir string) (generator, error) {
	g := generator{script: filepath.Join(dir, "bench.lua")}
	switch mode {
	case "go":
		g.note = "saturation phases: the Go generator (-gen go)"
		return g, nil
	case "auto", "wrk":
	default:
		return g, fmt.Errorf("-gen %q: want auto, wrk or go", mode)
	}
	var why string
	path, err := exec.LookPath("wrk")
	switch {
	case err == nil:
		g.wrk, g.note = path, "saturation phases: wrk ("+path+")"
	case os.Geteuid() == 0:
		fmt.Fprintln(os.Stderr, "wrk is missing: running apt-get install -y wrk (Debian's package)…")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "wrk")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			if path, err = exec.LookPath("wrk"); err == nil {
				g.wrk, g.note = path, "saturation phases: wrk, which was missing: the bench installed it (apt-get install -y wrk)"
				break
			}
		}
		why = fmt.Sprintf("wrk is missing and apt-get install -y wrk failed (%v: %s)", err, lastLine(out))
	default:
		why = "wrk is missing and the bench is not root, so it did not apt-get install it"
	}
	if g.wrk == "" {
		if mode == "wrk" {
			return g, fmt.Errorf("-gen wrk: %s", why)
		}
		g.note = why + "; saturation phases fall back to the Go generator (vegeta closed loop, 64 connections)"
		return g, nil
	}
	out, _ := exec.Command(g.wrk, "-v").CombinedOutput() // wrk -v prints its version and exits 1
	g.version = lastLine(bytes.SplitN(out, []byte("\n"), 2)[0])
	return g, nil
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// saturate runs a closed-loop phase with 64 connections: wrk when there is
// one, else the Go generator.
func (b *bench) saturate(name, addr string, d time.Duration) (Result, error) {
	if b.gen.wrk == "" {
		return attack(name, addr, nil, vegeta.Rate{}, d)
	}
	const threads = 2
	first := seq.Load() + 1
	lua, err := wrk.Script(body, webhookPath, first, threads)
	if err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(b.gen.script, []byte(lua), 0o600); err != nil {
		return Result{}, fmt.Errorf("wrk script: %w", err)
	}
	s, cpu, _, err := wrk.Run(context.Background(), wrk.Options{Bin: b.gen.wrk, URL: "http://" + addr + webhookPath,
		Threads: threads, Connections: 64, Duration: d, Timeout: 10 * time.Second, Script: b.gen.script})
	if err != nil {
		seq.Add(1 << 24) // ids of a failed run are never reused
		return Result{}, fmt.Errorf("%s: %w", name, err)
	}
	seq.Add(s.IDSpan)
	return Result{Name: name, Generator: "wrk", Rate: s.RatePerS(), Throughput: s.OKPerS(),
		P50ms: s.Latency.P50 / 1000, P99ms: s.Latency.P99 / 1000,
		Success: float64(s.OK()) / float64(max(s.Requests, 1)), OK: int(s.OK()), NonOK: int(s.Non2xx()),
		SocketErrors:   int(s.SocketErrors()), // wrk counts bad statuses, not which: no 503 count
		GenCPUPerReqUs: 1e6 * cpu.Seconds() / float64(max(s.Requests, 1))}, nil
}

// attack runs one phase with vegeta; rate Freq 0 means closed loop with 64
// connections (the Go generator of saturation phases). With es set,
// end-to-end latency (sent → the downstream got the PUT) is measured for the
// events of this phase.
//
// Fixed-rate phases count latency from each request's intended send time
// (phase start + (its sequence number + 1) × the interval, as vegeta's
// constant pacer schedules them), not from when vegeta
// got round to sending it: a generator that falls behind (it shares the
// CPU) would otherwise hide the wait (coordinated omission).
func attack(name, addr string, es *expertSender, rate vegeta.Rate, d time.Duration) (Result, error) {
	url := "http://" + addr + webhookPath
	if err := wrk.Loopback(url); err != nil {
		return Result{}, err
	}
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
	gen := "vegeta"
	if rate.Freq == 0 {
		gen = "go"
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
	r := Result{Name: name, Generator: gen, GenCPUPerReqUs: 1e6 * genCPU.Seconds() / float64(max(total, 1)),
		Rate: float64(total) / elapsed.Seconds(), Intended: float64(rate.Freq) * float64(time.Second) / float64(max(rate.Per, 1)),
		Throughput: float64(len(ok)) / elapsed.Seconds(),
		P50ms:      latency.Ms(ok, 0.50), P99ms: latency.Ms(ok, 0.99), Success: float64(len(ok)) / float64(max(total, 1)), OK: len(ok),
		NonOK: total - len(ok), Refused: len(refused), RefusedP99: latency.Ms(refused, 0.99)}
	if es != nil {
		e2e := es.latencies(&sent, 10*time.Second)
		r.E2EP50ms, r.E2EP99ms = latency.Ms(e2e, 0.50), latency.Ms(e2e, 0.99)
	}
	return r, nil
}

// selfCPU is the CPU this process has used (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
