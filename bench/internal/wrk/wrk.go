// Package wrk drives wrk (https://github.com/wg/wrk) for the bench's
// saturation phases: a generator in C that costs far less CPU per request
// than the Go one, so on a shared machine more of the cores go to the server
// being measured.
//
// The bench writes a Lua script (Script) that posts a body with a fresh id in
// every request, so no request is a duplicate, and whose done() prints one
// machine-readable line (Marker, then JSON) that Parse reads; nothing of
// wrk's human-readable output is scraped.
package wrk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Marker starts the line done() prints.
const Marker = "statusbridge-wrk-summary: "

// Summary is what done() reports of one run. Times are in microseconds, as
// wrk keeps them.
type Summary struct {
	DurationUs int64 `json:"duration_us"`
	Requests   int64 `json:"requests"` // responses read
	Bytes      int64 `json:"bytes"`
	Errors     struct {
		Connect int64 `json:"connect"`
		Read    int64 `json:"read"`
		Write   int64 `json:"write"`
		Status  int64 `json:"status"` // responses with a status above 399
		Timeout int64 `json:"timeout"`
	} `json:"errors"`
	Latency struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		Max  float64 `json:"max"`
		Mean float64 `json:"mean"`
	} `json:"latency_us"`
	// IDSpan: every id the script put in a body lies in [first, first+IDSpan).
	IDSpan  int64 `json:"id_span"`
	Threads int   `json:"threads"`
}

// Seconds is how long wrk sent for.
func (s Summary) Seconds() float64 { return float64(s.DurationUs) / 1e6 }

// Non2xx counts responses that were not a success (wrk counts statuses above
// 399; the servers measured send no 3xx).
func (s Summary) Non2xx() int64 { return s.Errors.Status }

// OK counts successful responses.
func (s Summary) OK() int64 { return s.Requests - s.Errors.Status }

// SocketErrors counts requests that got no response.
func (s Summary) SocketErrors() int64 {
	return s.Errors.Connect + s.Errors.Read + s.Errors.Write + s.Errors.Timeout
}

// RatePerS is the responses read per second; OKPerS the successful ones.
func (s Summary) RatePerS() float64 { return perS(s.Requests, s.DurationUs) }

// OKPerS is the successful responses per second.
func (s Summary) OKPerS() float64 { return perS(s.OK(), s.DurationUs) }

func perS(n, us int64) float64 {
	if us <= 0 {
		return 0
	}
	return float64(n) / (float64(us) / 1e6)
}

// Parse finds the line done() printed in wrk's output and decodes it.
func Parse(out []byte) (Summary, error) {
	var found []byte
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte(Marker)) {
			if found != nil {
				return Summary{}, errors.New("wrk output: two summary lines")
			}
			found = append([]byte(nil), line[len(Marker):]...)
		}
	}
	if found == nil {
		return Summary{}, fmt.Errorf("wrk output: no %q line (did the script's done() run?)", strings.TrimSpace(Marker))
	}
	var s Summary
	dec := json.NewDecoder(bytes.NewReader(found))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Summary{}, fmt.Errorf("wrk summary line %q: %w", found, err)
	}
	switch {
	case s.DurationUs <= 0:
		return Summary{}, fmt.Errorf("wrk summary: duration %d µs", s.DurationUs)
	case s.Requests < 0 || s.Errors.Status < 0 || s.Errors.Status > s.Requests:
		return Summary{}, fmt.Errorf("wrk summary: %d requests with %d bad statuses", s.Requests, s.Errors.Status)
	case s.IDSpan < 0:
		return Summary{}, fmt.Errorf("wrk summary: id span %d", s.IDSpan)
	}
	return s, nil
}

// Body is a request body cut around its id: Parts[0] id Parts[1] id … Parts[n].
type Body struct {
	Parts []string
}

// Render is the body with id in every place (what the script sends).
func (b Body) Render(id int64) string {
	return strings.Join(b.Parts, strconv.FormatInt(id, 10))
}

// Script returns the Lua script that posts b to path (Content-Type JSON)
// with ids first, first+1, … (each of wrk's threads takes every threads-th
// one), and whose done() prints the Summary line.
func Script(b Body, path string, first int64, threads int) (string, error) {
	if len(b.Parts) < 2 {
		return "", errors.New("wrk script: the body has no place for the id")
	}
	if threads < 1 || first < 0 {
		return "", fmt.Errorf("wrk script: threads %d, first id %d", threads, first)
	}
	var lua strings.Builder
	lua.WriteString("-- written by statusbridge's bench (go run ./bench) for one wrk run\n")
	lua.WriteString("local parts = {\n")
	for _, p := range b.Parts {
		q, err := longString(p)
		if err != nil {
			return "", err
		}
		lua.WriteString("  " + q + ",\n")
	}
	path, err := longString(path)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&lua, `}
local path = %s
local first, nthreads = %d, %d
local headers = { ["Content-Type"] = "application/json" }
local threads, started = {}, 0

-- setup runs in the main Lua state once per thread, before the thread's init.
function setup(thread)
  thread:set("tid", started)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  generated = 0
end

function request()
  local id = string.format("%%d", first + generated * nthreads + tid)
  generated = generated + 1
  local body = {}
  for i = 1, #parts do
    body[#body + 1] = parts[i]
    if i < #parts then body[#body + 1] = id end
  end
  return wrk.format("POST", path, headers, table.concat(body))
end

function done(summary, latency, requests)
  local most = 0
  for _, t in ipairs(threads) do
    local g = t:get("generated") or 0
    if g > most then most = g end
  end
  local e = summary.errors
  io.write(string.format(%q ..
    '{"duration_us":%%d,"requests":%%d,"bytes":%%d,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"p50":%%d,"p99":%%d,"max":%%d,"mean":%%.1f},"id_span":%%d,"threads":%%d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean,
    most * nthreads, #threads))
end
`, path, first, threads, Marker)
	return lua.String(), nil
}

// longString quotes s as a Lua long bracket string, which takes every byte
// as it is (no escapes), picking a level of '=' that s does not close.
func longString(s string) (string, error) {
	for level := 0; level < 16; level++ {
		eq := strings.Repeat("=", level)
		if !strings.Contains(s, "]"+eq+"]") {
			// A newline right after the opening bracket would be dropped by Lua.
			if strings.HasPrefix(s, "\n") || strings.HasPrefix(s, "\r") {
				return "", errors.New("wrk script: a body part starts with a newline")
			}
			return "[" + eq + "[" + s + "]" + eq + "]", nil
		}
	}
	return "", errors.New("wrk script: cannot quote a body part")
}

// Options is one wrk run.
type Options struct {
	Bin         string        // the wrk executable
	URL         string        // must be http://127.0.0.1:<port>/…
	Threads     int           // -t
	Connections int           // -c
	Duration    time.Duration // -d, whole seconds (at least one)
	Timeout     time.Duration // --timeout for each request
	Script      string        // path of the Lua script
}

// Args is wrk's command line for o.
func (o Options) Args() ([]string, error) {
	if err := Loopback(o.URL); err != nil {
		return nil, err
	}
	secs := int64((o.Duration + time.Second - 1) / time.Second)
	if secs < 1 || o.Threads < 1 || o.Connections < o.Threads || o.Timeout < time.Second {
		return nil, fmt.Errorf("wrk: -t %d -c %d -d %v --timeout %v", o.Threads, o.Connections, o.Duration, o.Timeout)
	}
	return []string{"-t" + strconv.Itoa(o.Threads), "-c" + strconv.Itoa(o.Connections),
		"-d" + strconv.FormatInt(secs, 10) + "s", "--timeout", strconv.FormatInt(int64(o.Timeout/time.Second), 10) + "s",
		"-s", o.Script, o.URL}, nil
}

// Run runs wrk and parses its summary. It gives wrk its duration and its
// request timeout, and a little more, then kills it. cpu is wrk's own CPU.
func Run(ctx context.Context, o Options) (s Summary, cpu time.Duration, out []byte, err error) {
	args, err := o.Args()
	if err != nil {
		return Summary{}, 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration+o.Timeout+15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Bin, args...)
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return Summary{}, cpu, out, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, tail(out))
	}
	s, err = Parse(out)
	if err != nil {
		return Summary{}, cpu, out, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, tail(out))
	}
	return s, cpu, out, nil
}

func tail(out []byte) []byte {
	if len(out) > 2000 {
		return out[len(out)-2000:]
	}
	return out
}

// Loopback refuses any URL but http to 127.0.0.1: the bench sends traffic to
// this machine only.
func Loopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("load target %q: %w", raw, err)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if u.Scheme != "http" || err != nil || host != "127.0.0.1" {
		return fmt.Errorf("load target %q: only http://127.0.0.1:<port> is allowed", raw)
	}
	return nil
}
