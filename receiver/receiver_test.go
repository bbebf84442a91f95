package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/live"
	"github.com/statusbridge/statusbridge/logging"
)

const (
	token     = "s3cr#t:Token-42"
	confirmed = "yqdwrbka7kz69v8e"
	hookPath  = "/webhooks/digishare"
)

type env struct {
	t      testing.TB
	db     *bolt.DB
	srv    *httptest.Server
	logs   *fake.LogBuffer
	server *Server
}

type noReloads struct{}

func (noReloads) Reload(bool) {}

// testMapping is the mapping of every receiver test (a live one: the admin
// service reads it).
func testMapping(t testing.TB) *live.Mapping {
	t.Helper()
	cfg, err := config.Parse([]byte(`
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { api_key: k } }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid } } }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return live.New(cfg, nil, slog.New(slog.DiscardHandler), noReloads{})
}

func newEnv(t testing.TB, tok string, in Ingester, opts ...func(*Options)) *env {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "sb.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	maps := testMapping(t)
	logs := &fake.LogBuffer{}
	if in == nil {
		in = bridge.Store{Backend: db}
	}
	log := logging.New(logs, logging.Options{Format: "json", Level: "debug", Secrets: []string{tok}})
	o := Options{
		WebhookPath: hookPath, Token: tok, MaxBody: 4096,
		Mapping: maps.Current,
		Ready:   func() error { return db.Ping(context.Background()) },
		Admin:   bridge.Store{Backend: db},
		Service: admin.New(admin.Options{Store: bridge.Store{Backend: db}, Console: db, Mapping: maps, Log: log}),
		Log:     log,
	}
	for _, f := range opts {
		f(&o)
	}
	s := New(in, o)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, db: db, srv: srv, logs: logs, server: s}
}

type answer struct {
	code int
	body map[string]any
	hdr  http.Header
}

func (e *env) post(path string, body []byte, hdr map[string]string) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) answer {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, hdr: resp.Header}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		e.t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return a
}

func (e *env) events() int {
	e.t.Helper()
	st, err := e.db.Stats(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Events
}

func payload(ticket string) []byte {
	return fake.Update{TicketID: ticket, OrderID: "ORDER-" + ticket, StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}.Payload()
}

func TestAuthAcceptedForms(t *testing.T) {
	e := newEnv(t, token, nil)
	for name, send := range map[string]func(r *http.Request){
		"bearer":       func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) },
		"bearer lower": func(r *http.Request) { r.Header.Set("Authorization", "bearer "+token) },
		"basic":        func(r *http.Request) { r.SetBasicAuth("digishare", token) },
		"header":       func(r *http.Request) { r.Header.Set("X-Webhook-Token", token) },
		"query": func(r *http.Request) {
			q := r.URL.Query()
			q.Set("token", token)
			r.URL.RawQuery = q.Encode()
		},
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+hookPath, bytes.NewReader(payload("t-"+name)))
			send(req)
			if a := e.do(req); a.code != http.StatusOK || a.body["state"] != "dispatched" {
				t.Errorf("%s: %d %v, want 200 dispatched", name, a.code, a.body)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "webhook received") {
		t.Error("no log line for received events")
	}
	if strings.Contains(e.logs.String(), token) || strings.Contains(e.logs.String(), "Token-42") {
		t.Error("the token reached a log line")
	}
}

func TestAuthRejectedForms(t *testing.T) {
	e := newEnv(t, token, nil)
	for name, hdr := range map[string]map[string]string{
		"missing":          nil,
		"wrong bearer":     {"Authorization": "Bearer nope"},
		"different case":   {"Authorization": "Bearer " + strings.ToUpper(token)},
		"prefix only":      {"Authorization": "Bearer " + token[:len(token)-1]},
		"longer":           {"Authorization": "Bearer " + token + "x"},
		"token as scheme":  {"Authorization": token},
		"wrong header":     {"X-Webhook-Token": "nope"},
		"empty header":     {"X-Webhook-Token": ""},
		"wrong basic":      {"Authorization": "Basic ZGlnaXNoYXJlOm5vcGU="}, // digishare:nope
		"token under user": {"Authorization": "Basic czNjciN0OlRva2VuLTQyOng="},
	} {
		t.Run(name, func(t *testing.T) {
			a := e.post(hookPath+"?token=wrong", payload("t"), hdr)
			if a.code != http.StatusUnauthorized || a.body["error"] == nil {
				t.Errorf("%s: %d %v, want 401 with a JSON error", name, a.code, a.body)
			}
		})
	}
	if n := e.events(); n != 0 {
		t.Errorf("%d events stored by unauthenticated calls", n)
	}
}

func TestNoTokenAcceptsAll(t *testing.T) {
	e := newEnv(t, "", nil)
	if a := e.post(hookPath, payload("t"), nil); a.code != http.StatusOK {
		t.Errorf("no token configured: %d, want 200", a.code)
	}
}

func TestBadInputStoresNothing(t *testing.T) {
	e := newEnv(t, "", nil)
	for name, c := range map[string]struct {
		body string
		code int
	}{
		"empty":        {"", http.StatusBadRequest},
		"not json":     {"hello=world", http.StatusBadRequest},
		"invalid utf8": {"{\"event\":\"\xff\"}", http.StatusBadRequest},
		"truncated":    {`{"event":`, http.StatusBadRequest},
		"too large":    {`{"event":"ticket.updated","pad":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			a := e.post(hookPath, []byte(c.body), nil)
			if a.code != c.code || a.body["error"] == nil {
				t.Errorf("%s: %d %v, want %d with an error", name, a.code, a.body, c.code)
			}
		})
	}
	// A chunked body (no Content-Length) over the limit is cut off too.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+hookPath, io.MultiReader(strings.NewReader(`{"a":"`), strings.NewReader(strings.Repeat("y", 10000))))
	req.ContentLength = -1
	if a := e.do(req); a.code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversize: %d, want 413", a.code)
	}
	if n := e.events(); n != 0 {
		t.Errorf("%d events stored from bad input", n)
	}
}

func TestWrongShapeIsStoredAsInvalid(t *testing.T) {
	e := newEnv(t, "", nil)
	for name, body := range map[string]string{
		"missing event":   `{"data":{"id":"t","data":{}}}`,
		"numeric data.id": `{"event":"ticket.updated","data":{"id":5,"data":{}}}`,
		"data.data array": `{"event":"ticket.updated","data":{"id":"t","data":[]}}`,
		"changes string":  `{"event":"ticket.updated","data":{"id":"t","data":{},"changes":"x"}}`,
		"data array":      `{"event":"ticket.updated","data":[1]}`,
	} {
		t.Run(name, func(t *testing.T) {
			a := e.post(hookPath, []byte(body), nil)
			if a.code != http.StatusAccepted || a.body["state"] != "invalid" || a.body["error"] == "" || a.body["event_id"] == nil {
				t.Fatalf("%s: %d %v, want 202 invalid", name, a.code, a.body)
			}
			ev, raw, err := e.db.GetEvent(context.Background(), a.body["event_id"].(string))
			if err != nil || ev.State != bridge.EventInvalid || ev.Error == "" || string(raw) != body {
				t.Errorf("stored: %+v %q %v", ev, raw, err)
			}
			again := e.post(hookPath, []byte(body), nil)
			if again.code != http.StatusAccepted || again.body["duplicate"] != true || again.body["event_id"] != a.body["event_id"] {
				t.Errorf("repeat of invalid: %d %v", again.code, again.body)
			}
		})
	}
	if n := e.events(); n != 5 {
		t.Errorf("%d events, want 5 invalid ones", n)
	}
}

func TestDuplicatesAndOtherEvents(t *testing.T) {
	e := newEnv(t, "", nil)
	first := e.post(hookPath, payload("t1"), nil)
	again := e.post(hookPath, payload("t1"), nil)
	if first.code != 200 || first.body["duplicate"] != false || first.body["state"] != "dispatched" {
		t.Errorf("first: %d %v", first.code, first.body)
	}
	if again.code != 200 || again.body["duplicate"] != true || again.body["event_id"] != first.body["event_id"] || again.body["state"] != "dispatched" {
		t.Errorf("repeat: %d %v", again.code, again.body)
	}
	other := e.post(hookPath, []byte(`{"event":"ticket.created","data":{"id":"t9","data":{"external_id":"1"}}}`), nil)
	if other.code != 200 || other.body["state"] != "ignored" || other.body["duplicate"] != false {
		t.Errorf("ticket.created: %d %v", other.code, other.body)
	}
	if n := e.events(); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
	st, _ := e.db.Stats(context.Background())
	if st.Deliveries != 1 {
		t.Errorf("%d deliveries, want 1", st.Deliveries)
	}
}

func TestStoreFailureAnswers503(t *testing.T) {
	e := newEnv(t, "", nil)
	_ = e.db.Close()
	a := e.post(hookPath, payload("t1"), nil)
	if a.code != http.StatusServiceUnavailable || a.hdr.Get("Retry-After") == "" {
		t.Errorf("closed store: %d %v, want 503 with Retry-After", a.code, a.body)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/readyz", nil)
	if a := e.do(req); a.code != http.StatusServiceUnavailable {
		t.Errorf("readyz with a closed store: %d, want 503", a.code)
	}
}

type panicking struct{}

func (panicking) Ingest(context.Context, bridge.Incoming, bridge.Decider) (bridge.IngestResult, error) {
	panic("boom")
}

func TestPanicBecomes500(t *testing.T) {
	e := newEnv(t, "", panicking{})
	if a := e.post(hookPath, payload("t1"), nil); a.code != http.StatusInternalServerError {
		t.Errorf("panic: %d, want 500", a.code)
	}
	resp, err := http.Get(e.srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after panic: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t, token, nil)
	for _, p := range []string{"/healthz", "/readyz"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+p, nil)
		if a := e.do(req); a.code != 200 {
			t.Errorf("%s: %d %v", p, a.code, a.body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/nope", nil)
	if a := e.do(req); a.code != 404 {
		t.Errorf("unknown route: %d", a.code)
	}
}

// busyStore is the real store, reporting its queue full.
type busyStore struct{ *bolt.DB }

func (busyStore) Busy() bool { return true }

func TestBusyStoreRefusesBeforeReadingBody(t *testing.T) {
	e := newEnv(t, "", nil)
	b := newEnv(t, "", bridge.Store{Backend: busyStore{e.db}})
	a := b.post(hookPath, payload("t1"), nil)
	if a.code != http.StatusServiceUnavailable || a.hdr.Get("Retry-After") != "1" {
		t.Errorf("busy: %d %v, want 503 with Retry-After: 1", a.code, a.body)
	}
	if n := e.events(); n != 0 {
		t.Errorf("%d events stored while busy", n)
	}
}

// TestOverloadIsLoggedOncePerSecond: webhooks refused because the store's
// queue is full are each answered 503 and counted, but logged at most once
// a second, with how many were refused since the last line.
func TestOverloadIsLoggedOncePerSecond(t *testing.T) {
	e := newEnv(t, "", nil)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC).UnixNano())
	b := newEnv(t, "", bridge.Store{Backend: busyStore{e.db}}, func(o *Options) {
		o.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	refusals := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && strings.HasPrefix(fmt.Sprint(m["msg"]), "webhooks refused") {
				out = append(out, m)
			}
		}
		return out
	}
	for i := range 30 {
		if a := b.post(hookPath, payload(fmt.Sprint("t", i)), nil); a.code != http.StatusServiceUnavailable {
			t.Fatalf("busy: %d, want 503", a.code)
		}
		clock.Add(int64(10 * time.Millisecond)) // 30 refusals in 0.3 s
	}
	if got := refusals(); len(got) != 1 || got[0]["refused"] != 1.0 || got[0]["level"] != "WARN" {
		t.Fatalf("after 30 refusals in 0.3 s: %v, want one WARN line (refused 1)", got)
	}
	clock.Add(int64(time.Second))
	b.post(hookPath, payload("late"), nil)
	if got := refusals(); len(got) != 2 || got[1]["refused"] != 30.0 {
		t.Errorf("a refusal a second later: %v, want a second line counting the 29 since and itself (30)", got)
	}
}

// TestOneLogLinePerEvent: each stored webhook gets one line, at warn when
// something needs a look (invalid, unmapped) with what is wrong, and the
// info line only when info is on.
func TestOneLogLinePerEvent(t *testing.T) {
	lines := func(logs *fake.LogBuffer) []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] != "http request" {
				out = append(out, m)
			}
		}
		return out
	}
	e := newEnv(t, "", nil)
	unmapped := fake.Update{TicketID: "u1", OrderID: "ORDER-u1", StatusID: "nope", DateStatus: "2026-01-13 16:29:51"}.Payload()
	for _, body := range [][]byte{payload("a1"), unmapped, []byte(`{"event":"ticket.updated","data":{"id":"i1"}}`)} {
		if a := e.post(hookPath, body, nil); a.code/100 != 2 {
			t.Fatalf("%d %v", a.code, a.body)
		}
	}
	got := lines(e.logs)
	want := []struct{ level, msg, extra string }{
		{"INFO", "webhook received", "order_id"},
		{"WARN", "webhook received: status id not mapped", "status_id"},
		{"WARN", "webhook stored as invalid", "error"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g["level"] != w.level || g["msg"] != w.msg || g["event_id"] == nil || g[w.extra] == nil {
			t.Errorf("line %d = %v, want %s %q with event_id and %s", i, g, w.level, w.msg, w.extra)
		}
	}

	warnOnly := &fake.LogBuffer{}
	q := newEnv(t, "", nil, func(o *Options) {
		o.Log = logging.New(warnOnly, logging.Options{Format: "json", Level: "warn"})
	})
	q.post(hookPath, payload("a2"), nil)
	q.post(hookPath, fake.Update{TicketID: "u2", OrderID: "ORDER-u2", StatusID: "nope", DateStatus: "2026-01-13 16:29:51"}.Payload(), nil)
	if got := lines(warnOnly); len(got) != 1 || got[0]["msg"] != "webhook received: status id not mapped" {
		t.Errorf("at level warn: %v, want only the unmapped line", got)
	}
}
