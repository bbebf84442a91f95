package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/live"
	"github.com/statusbridge/statusbridge/logging"
)

const (
	token     = "console-Token-31"
	confirmed = "yqdwrbka7kz69v8e"
	testYAML  = `targets: { expertsender: { api_key: k } }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
`
)

type noObs struct{}

func (noObs) Reload(bool) {}

type env struct {
	t    testing.TB
	db   *bolt.DB
	maps *live.Mapping
	svc  *admin.Service
	ui   *Console
	srv  *httptest.Server
	logs *fake.LogBuffer
}

func newEnv(t testing.TB, opts ...func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(testYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Resolve(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "sb.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	logs := &fake.LogBuffer{}
	log := logging.New(logs, logging.Options{Format: "json", Level: "debug"})
	maps := live.New(cfg, nil, slog.New(slog.DiscardHandler), noObs{})
	svc := admin.New(admin.Options{Store: bridge.Store{Backend: db}, Console: db, Mapping: maps, Log: log})
	o := Options{Token: token, Log: log}
	for _, f := range opts {
		f(&o)
	}
	ui, err := New(svc, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui)
	t.Cleanup(srv.Close)
	return &env{t: t, db: db, maps: maps, svc: svc, ui: ui, srv: srv, logs: logs}
}

func (e *env) ingest(raw []byte) bridge.IngestResult {
	e.t.Helper()
	u, err := digishare.Decode(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := bridge.Ingest(context.Background(), e.db, bridge.Incoming{Raw: raw, Update: u, ReceivedAt: time.Now()}, e.maps.Current())
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// client is a browser without JavaScript: a cookie jar, no redirects followed.
type client struct {
	e   *env
	jar *cookiejar.Jar
	h   *http.Client
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, jar: jar, h: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type resp struct {
	code int
	body string
	hdr  http.Header
}

func (c *client) do(method, path string, form url.Values, hdr map[string]string) resp {
	c.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.e.srv.URL+path, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	r, err := c.h.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	return resp{code: r.StatusCode, body: string(raw), hdr: r.Header}
}

func (c *client) get(path string) resp { return c.do(http.MethodGet, path, nil, nil) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from a page's forms.
func csrf(t testing.TB, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return html.UnescapeString(m[1])
}

// login logs the client in and returns the session's CSRF token.
func (c *client) login() string {
	c.e.t.Helper()
	p := c.get("/ui/login")
	r := c.do(http.MethodPost, "/ui/login", url.Values{"csrf": {csrf(c.e.t, p.body)}, "token": {token}, "next": {"/ui/"}}, nil)
	if r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/ui/" {
		c.e.t.Fatalf("login: %d %v", r.code, r.hdr)
	}
	return csrf(c.e.t, c.get("/ui/").body)
}

func cookieNamed(h http.Header, name string) *http.Cookie {
	for _, ck := range (&http.Response{Header: h}).Cookies() {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

func TestEveryPageRenders(t *testing.T) {
	e := newEnv(t)
	r := e.ingest(fake.Update{TicketID: "t1", OrderID: "12345", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"}.Payload())
	if err := e.db.Record(context.Background(), r.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: 400",
		Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 400, Duration: 12 * time.Millisecond, Excerpt: `{"errors":["bad"]}`}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.ingest(fake.Update{TicketID: "t2", OrderID: "777", StatusID: "unknownstatus000", DateStatus: "2026-01-13 10:00:00"}.Payload())
	j, err := e.svc.CreateJob(context.Background(), "192.0.2.1", admin.JobRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client()
	c.login()
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/ui/", []string{"Last hour", "expertsender", "1 dead", "unknownstatus000", "Retry job"}},
		{"/ui/overview/live", []string{"Last 24 hours"}},
		{"/ui/events", []string{"12345", "Order Confirmed", "1 dead"}},
		{"/ui/events?state=unmapped", []string{"777"}},
		{"/ui/events/" + r.EventID, []string{"Decisions", "mapping", "HTTP", "12 ms", "Retry", "Raw bytes"}},
		{"/ui/order?id=12345", []string{"What each target was told", "nothing yet", "dead", "Timeline", "attempt 1"}},
		{"/ui/order", []string{"Order id"}},
		{"/ui/deliveries", []string{"Retry all that match", "12345"}},
		{"/ui/deliveries?state=dead&include_resolved=1", []string{`name="include_resolved" value="1" checked`, "12345"}},
		{"/ui/deliveries/retry-all", []string{"<strong>1</strong> match", "Retry 1 deliveries"}},
		{"/ui/jobs/" + j.ID, []string{"Progress", "queued"}},
		{"/ui/jobs/" + j.ID + "/live", []string{"<progress"}},
		{"/ui/mapping", []string{"Order Confirmed", "Status ids without an entry", "mapping:"}},
	} {
		p := c.get(tc.path)
		if p.code != 200 {
			t.Errorf("GET %s: %d\n%s", tc.path, p.code, p.body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(p.body, w) {
				t.Errorf("GET %s: no %q in\n%s", tc.path, w, p.body)
			}
		}
	}
	if p := c.get("/ui/nope"); p.code != 404 {
		t.Errorf("unknown page: %d", p.code)
	}
	if p := c.get("/ui/events/01a20000-0000-7000-8000-000000000000"); p.code != 404 || !strings.Contains(p.body, "Not found") {
		t.Errorf("unknown event: %d %s", p.code, p.body)
	}
	if p := c.get("/ui/events?since=yesterday"); !strings.Contains(p.body, "Received from: write YYYY-MM-DD HH:MM:SS") {
		t.Errorf("bad since: %d %s", p.code, p.body)
	}
	if p := c.get("/ui/static/app.js"); p.code != 200 || !strings.Contains(p.hdr.Get("Content-Type"), "javascript") {
		t.Errorf("app.js: %d %v", p.code, p.hdr)
	}
}

func TestReplayDryRunFirstThenForReal(t *testing.T) {
	e := newEnv(t)
	r := e.ingest(fake.Update{TicketID: "t1", OrderID: "42", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"}.Payload())
	c := e.client()
	tok := c.login()
	path := "/ui/events/" + r.EventID + "/replay"
	// Not forced: the order already has this status, so nothing would be sent.
	p := c.do(http.MethodPost, path, url.Values{"csrf": {tok}}, nil)
	if p.code != 200 || !strings.Contains(p.body, "Replay: dry run") || !strings.Contains(p.body, "1 unchanged") || !strings.Contains(p.body, "It would send nothing") {
		t.Fatalf("dry run: %d\n%s", p.code, p.body)
	}
	p = c.do(http.MethodPost, path, url.Values{"csrf": {tok}, "force": {"1"}}, nil)
	if !strings.Contains(p.body, "1 dispatched") || !strings.Contains(p.body, "send 1 request(s)") || !strings.Contains(p.body, `name="confirm" value="1"`) {
		t.Fatalf("forced dry run:\n%s", p.body)
	}
	if st, _ := e.db.Stats(context.Background()); st.Deliveries != 1 {
		t.Fatalf("a dry run created deliveries: %+v", st)
	}
	p = c.do(http.MethodPost, path, url.Values{"csrf": {tok}, "force": {"1"}, "confirm": {"1"}}, nil)
	if p.code != http.StatusSeeOther || !strings.Contains(p.hdr.Get("Location"), "done=replayed&dispatched=1") {
		t.Fatalf("replay: %d %v", p.code, p.hdr)
	}
	if st, _ := e.db.Stats(context.Background()); st.Deliveries != 2 {
		t.Errorf("after the replay: %+v, want a second delivery", st)
	}
	if p := c.get(p.hdr.Get("Location")); !strings.Contains(p.body, "Replayed: 1 event(s) dispatched.") || !strings.Contains(p.body, "replay 1") {
		t.Errorf("event page after the replay:\n%s", p.body)
	}
	acts, _ := e.svc.Actions(context.Background(), 10)
	if len(acts) != 1 || acts[0].Kind != "replay" || acts[0].From != "127.0.0.1" {
		t.Errorf("actions = %+v", acts)
	}
	// A retry the 409 rule refuses says why, for people.
	if err := e.db.Record(context.Background(), r.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done}, time.Now()); err != nil {
		t.Fatal(err)
	}
	p = c.do(http.MethodPost, "/ui/deliveries/"+r.Deliveries[0].ID+"/retry", url.Values{"csrf": {tok}}, nil)
	if p.code != http.StatusConflict || !strings.Contains(p.body, "only dead deliveries can be retried") {
		t.Errorf("retry of a done delivery: %d\n%s", p.code, p.body)
	}
}

func TestMappingReloadFromTheFile(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	tok := c.login()
	// The file on disk gains an entry; the page applies it (and never writes the file).
	path := e.maps.Config().File
	if err := os.WriteFile(path, []byte(testYAML+"    newstatus0000000: { name: New, expertsender: shipped }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := c.do(http.MethodPost, "/ui/mapping/reload", url.Values{"csrf": {tok}}, nil)
	if p.code != http.StatusSeeOther || !strings.Contains(p.hdr.Get("Location"), "done=reloaded") {
		t.Fatalf("reload: %d %v\n%s", p.code, p.hdr, p.body)
	}
	if _, ok := e.maps.Current().Entries()["newstatus0000000"]; !ok {
		t.Error("the mapping was not reloaded")
	}
	if p := c.get(p.hdr.Get("Location")); !strings.Contains(p.body, "Mapping reloaded from the config file") || !strings.Contains(p.body, "newstatus0000000") {
		t.Errorf("mapping page after the reload:\n%s", p.body)
	}
	if err := os.WriteFile(path, []byte(testYAML+"    bad0: { nme: x }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p = c.do(http.MethodPost, "/ui/mapping/reload", url.Values{"csrf": {tok}}, nil)
	if p.code != http.StatusUnprocessableEntity || !strings.Contains(p.body, "line 5") || !strings.Contains(p.body, "mapping.statuses.bad0.nme") {
		t.Errorf("a broken file: %d\n%s", p.code, p.body)
	}
}
