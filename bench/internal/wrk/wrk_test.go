package wrk

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sample is wrk 4.1's output for a run with the bench's script: the
// human-readable report, then the line done() prints.
const sample = `Running 8s test @ http://127.0.0.1:40123/webhooks/digishare
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.52ms    4.01ms  61.30ms   80.12%
    Req/Sec     3.06k   301.22     3.70k    71.25%
  48812 requests in 8.00s, 7.12MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   6100.12
Transfer/sec:      0.89MB
statusbridge-wrk-summary: {"duration_us":8001655,"requests":48812,"bytes":7466016,"errors":{"connect":0,"read":1,"write":0,"status":12,"timeout":2},"latency_us":{"p50":9870,"p99":24512,"max":61300,"mean":10520.4},"id_span":48900,"threads":2}
`

func TestParse(t *testing.T) {
	s, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 48812 || s.Non2xx() != 12 || s.OK() != 48800 || s.SocketErrors() != 3 || s.IDSpan != 48900 || s.Threads != 2 {
		t.Errorf("parsed %+v", s)
	}
	if got := s.RatePerS(); got < 6100 || got > 6100.3 {
		t.Errorf("rate %v, want 6100.1 (wrk's Requests/sec)", got)
	}
	if got := s.OKPerS(); got < 6098.6 || got > 6098.9 {
		t.Errorf("ok rate %v, want 6098.7 (48,800 in 8.0017 s)", got)
	}
	if s.Latency.P99 != 24512 || s.Latency.P50 != 9870 || s.Seconds() < 8 || s.Seconds() > 8.01 {
		t.Errorf("latency %+v, %v s", s.Latency, s.Seconds())
	}
	line := sample[strings.Index(sample, Marker):]
	for name, out := range map[string]string{
		"no summary":        strings.Replace(sample, Marker, "", 1),
		"two summaries":     sample + line,
		"truncated JSON":    strings.TrimSuffix(sample, "}\n"),
		"unknown field":     strings.Replace(sample, `"threads"`, `"thread"`, 1),
		"zero duration":     strings.Replace(sample, `"duration_us":8001655`, `"duration_us":0`, 1),
		"more bad than all": strings.Replace(sample, `"status":12`, `"status":50000`, 1),
		"empty":             "",
	} {
		if _, err := Parse([]byte(out)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestScript(t *testing.T) {
	b := Body{Parts: []string{`{"id":"bench-`, `","x":"]]\"quoted\" \\ back","n":"`, `"}`}}
	if got, want := b.Render(42), `{"id":"bench-42","x":"]]\"quoted\" \\ back","n":"42"}`; got != want {
		t.Errorf("render: %s, want %s", got, want)
	}
	lua, err := Script(b, "/webhooks/digishare", 1001, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Each part is in a long string Lua takes byte for byte; the one
	// holding "]]" needs a level of '='.
	for _, want := range []string{`[[{"id":"bench-]]`, `[=[","x":"]]\"quoted\" \\ back","n":"]=]`, `[["}]]`,
		`local first, nthreads = 1001, 2`, `"statusbridge-wrk-summary: "`, "function done(summary, latency, requests)"} {
		if !strings.Contains(lua, want) {
			t.Errorf("script lacks %s:\n%s", want, lua)
		}
	}
	if strings.Contains(lua, "%!") {
		t.Errorf("script has a formatting error:\n%s", lua)
	}
	if _, err := Script(Body{Parts: []string{"no id"}}, "/", 1, 2); err == nil {
		t.Error("a body without an id: no error")
	}
	if _, err := Script(b, "/", 1, 0); err == nil {
		t.Error("zero threads: no error")
	}
}

func TestArgs(t *testing.T) {
	o := Options{URL: "http://127.0.0.1:8080/webhooks/digishare", Threads: 2, Connections: 64,
		Duration: 7500 * time.Millisecond, Timeout: 10 * time.Second, Script: "/tmp/x.lua"}
	args, err := o.Args()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(args, " "), "-t2 -c64 -d8s --timeout 10s -s /tmp/x.lua http://127.0.0.1:8080/webhooks/digishare"; got != want {
		t.Errorf("args %q, want %q", got, want)
	}
	for _, u := range []string{"http://localhost:8080/", "http://10.0.0.1:80/", "https://127.0.0.1:443/", "http://127.0.0.1/", "http://127.0.0.1.example.com:80/"} {
		o.URL = u
		if _, err := o.Args(); err == nil {
			t.Errorf("%s: allowed, want only http://127.0.0.1:<port>", u)
		}
	}
}

// TestRunRealWrk runs the script with the wrk installed here, if any, for one
// second against a server that checks every id arrives once.
func TestRunRealWrk(t *testing.T) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed")
	}
	idRE := regexp.MustCompile(`"id":"bench-(\d+)"`)
	var mu sync.Mutex
	seen := map[int64]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		m := idRE.FindSubmatch(raw)
		if r.Method != http.MethodPost || r.URL.Path != "/hook" || m == nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		id, _ := strconv.ParseInt(string(m[1]), 10, 64)
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		if n > 1 || id%97 == 0 { // every 97th id is refused, to see the count
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "{}")
	}))
	defer srv.Close()
	script := filepath.Join(t.TempDir(), "bench.lua")
	const first = 5000
	lua, err := Script(Body{Parts: []string{`{"id":"bench-`, `","order":"`, `"}`}}, "/hook", first, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, out, err := Run(context.Background(), Options{Bin: bin, URL: srv.URL + "/hook", Threads: 2, Connections: 4,
		Duration: time.Second, Timeout: 5 * time.Second, Script: script})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	refused := int64(0)
	for id, n := range seen {
		if n != 1 {
			t.Errorf("id %d sent %d times", id, n)
		}
		if id < first || id >= first+s.IDSpan {
			t.Errorf("id %d outside [%d, %d)", id, first, first+s.IDSpan)
		}
		if id%97 == 0 {
			refused++
		}
	}
	t.Logf("%+v", s)
	if s.Requests == 0 || s.Non2xx() == 0 || s.Latency.P99 <= 0 {
		t.Errorf("summary %+v\n%s", s, out)
	}
	// The ones in flight when wrk stopped reached the server but are not counted.
	if got := int64(len(seen)); got < s.Requests || got > s.Requests+4 {
		t.Errorf("server saw %d requests, wrk reports %d", got, s.Requests)
	}
	if s.Non2xx() > refused || s.Non2xx() < refused-4 {
		t.Errorf("wrk counts %d non-2xx, the server refused %d", s.Non2xx(), refused)
	}
}
