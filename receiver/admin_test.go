package receiver

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/live"
)

const adminToken = "admin-Token-77"

func withAdmin(o *Options) { o.AdminToken = adminToken }

// refusingStore, refusingConsole and refusingMapping fail the test when an
// action that changes state reaches them.
type refusingStore struct {
	bridge.Store
	t *testing.T
}

func (r refusingStore) RetryDelivery(context.Context, string, time.Time) (*bridge.Delivery, error) {
	r.t.Error("retry ran without a valid token")
	return nil, bridge.ErrNotFound
}

func (r refusingStore) Replay(context.Context, bridge.ReplaySelector, bridge.Decider, bridge.ReplayOptions, time.Time) (bridge.ReplaySummary, error) {
	r.t.Error("replay ran without a valid token")
	return bridge.ReplaySummary{}, nil
}

type refusingConsole struct {
	*bolt.DB
	t *testing.T
}

func (r refusingConsole) CreateJob(context.Context, bridge.Job) (bridge.Job, error) {
	r.t.Error("a job was created without a valid token")
	return bridge.Job{}, nil
}

type refusingMapping struct {
	*live.Mapping
	t *testing.T
}

func (r refusingMapping) Reload() (live.Result, error) {
	r.t.Error("reload ran without a valid token")
	return live.Result{}, nil
}

func (e *env) admin(path, token string) answer {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.do(req)
}

func TestAdminAuth(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin, func(o *Options) {
		st := o.Admin.(bridge.Store)
		o.Service = admin.New(admin.Options{Store: refusingStore{st, t}, Console: refusingConsole{st.Backend.(*bolt.DB), t},
			Mapping: refusingMapping{testMapping(t), t}})
		o.Guard = admin.NewGuard(adminToken)
		o.Guard.Limit = 1 << 20 // this test tries many wrong tokens; TestAdminSlowsDownWrongTokens the limit
	})
	// Every registered admin route, whatever its method, plus an unknown one.
	routes := [][2]string{{http.MethodGet, "/admin/nope"}}
	for _, r := range e.server.e.Routes() {
		if strings.HasPrefix(r.Path, "/admin/") && !strings.HasSuffix(r.Path, "*") {
			routes = append(routes, [2]string{r.Method, strings.ReplaceAll(r.Path, ":id", "x")})
		}
	}
	if len(routes) < 9 {
		t.Fatalf("only %d admin routes: %v", len(routes), routes)
	}
	for _, rt := range routes {
		for name, auth := range map[string]string{"missing": "", "wrong": "Bearer nope", "other case": "Bearer ADMIN-TOKEN-77",
			"prefix": "Bearer " + adminToken[:5], "longer": "Bearer " + adminToken + "7", "basic": "Basic YWRtaW46YWRtaW4tVG9rZW4tNzc=",
			"no scheme": adminToken} {
			req, _ := http.NewRequest(rt[0], e.srv.URL+rt[1], strings.NewReader(`{"order_id":"1"}`))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			if a := e.do(req); a.code != http.StatusUnauthorized {
				t.Errorf("%s %s with %s token: %d, want 401", rt[0], rt[1], name, a.code)
			}
		}
	}
	if a := e.admin("/admin/events", adminToken); a.code != http.StatusOK {
		t.Errorf("right token: %d %v", a.code, a.body)
	}
	// Without admin.token the routes do not exist.
	off := newEnv(t, "", nil)
	if a := off.admin("/admin/events", adminToken); a.code != http.StatusNotFound {
		t.Errorf("admin disabled: %d, want 404", a.code)
	}
}

func TestAdminEventsPagesAndFilters(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin)
	var ids []string
	for i := range 7 {
		a := e.post(hookPath, fake.Update{TicketID: fmt.Sprint("tk", i), OrderID: fmt.Sprint("ORDER-", i%2),
			StatusID: confirmed, DateStatus: fmt.Sprintf("2026-01-13 10:00:0%d", i)}.Payload(), nil)
		ids = append(ids, a.body["event_id"].(string))
	}
	e.post(hookPath, []byte(`{"event":"ticket.updated","data":{"id":5}}`), nil) // invalid
	// Pages of 3, newest first, cover every event exactly once.
	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		a := e.admin("/admin/events?limit=3&cursor="+url.QueryEscape(cursor), adminToken)
		if a.code != 200 {
			t.Fatalf("page %d: %d %v", page, a.code, a.body)
		}
		for _, row := range a.body["events"].([]any) {
			got = append(got, row.(map[string]any)["id"].(string))
		}
		cursor = a.body["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	if len(got) != 8 || got[len(got)-1] != ids[0] || got[1] != ids[6] {
		t.Errorf("paged ids = %v (want 8, newest first, ending with %s)", got, ids[0])
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("event %s on two pages", id)
		}
		seen[id] = true
	}
	a := e.admin("/admin/events?state=invalid", adminToken)
	rows := a.body["events"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["error"] == "" {
		t.Errorf("invalid events: %v", rows)
	}
	a = e.admin("/admin/events?order_id=1&state=dispatched", adminToken)
	rows = a.body["events"].([]any)
	if len(rows) != 1 { // order 1: first update dispatched, the rest unchanged
		t.Errorf("order 1 dispatched: %d rows: %v", len(rows), rows)
	}
	row := rows[0].(map[string]any)
	if row["status_name"] != "Order Confirmed" || row["deliveries"].(map[string]any)["pending"] != float64(1) {
		t.Errorf("row = %v", row)
	}
	for _, bad := range []string{"?state=nope", "?limit=0", "?limit=1001", "?since=yesterday", "?cursor=zzz"} {
		if a := e.admin("/admin/events"+bad, adminToken); a.code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, a.code)
		}
	}
	if a := e.admin("/admin/events?since=2999-01-01%2000:00:00", adminToken); len(a.body["events"].([]any)) != 0 {
		t.Errorf("since in the future: %v", a.body)
	}
}

func TestAdminEventDetailAndDeliveries(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin)
	first := e.post(hookPath, payload("t1"), nil)
	id := first.body["event_id"].(string)
	a := e.admin("/admin/events/"+id, adminToken)
	if a.code != 200 {
		t.Fatalf("%d %v", a.code, a.body)
	}
	ev := a.body["event"].(map[string]any)
	decisions := ev["decisions"].([]any)
	if ev["state"] != "dispatched" || len(decisions) != 1 || decisions[0].(map[string]any)["mapping_version"] == "" {
		t.Errorf("event = %v", ev)
	}
	if p := a.body["payload"].(map[string]any); p["event"] != "ticket.updated" {
		t.Errorf("payload = %v", a.body["payload"])
	}
	if ds := a.body["deliveries"].([]any); len(ds) != 1 || ds[0].(map[string]any)["status"] != "paid" {
		t.Errorf("deliveries = %v", a.body["deliveries"])
	}
	if a := e.admin("/admin/events/00000000-0000-0000-0000-000000000000", adminToken); a.code != 404 {
		t.Errorf("unknown event: %d", a.code)
	}
	a = e.admin("/admin/deliveries?state=pending&target=expertsender", adminToken)
	if ds := a.body["deliveries"].([]any); a.code != 200 || len(ds) != 1 {
		t.Errorf("pending deliveries: %d %v", a.code, a.body)
	}
	if a := e.admin("/admin/deliveries?state=dead", adminToken); len(a.body["deliveries"].([]any)) != 0 {
		t.Errorf("dead deliveries: %v", a.body)
	}
	a = e.admin("/admin/mapping", adminToken)
	st := a.body["statuses"].(map[string]any)[confirmed].(map[string]any)
	if len(a.body["version"].(string)) != 12 || st["targets"].(map[string]any)["expertsender"] != "paid" {
		t.Errorf("mapping = %v", a.body)
	}
}

// TestAdminRetryConflictIsWrittenForUsers: a 409 says what is wrong in the
// API user's terms, with no internal prefix.
func TestAdminRetryConflictIsWrittenForUsers(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin)
	auth := map[string]string{"Authorization": "Bearer " + adminToken}
	first := e.post(hookPath, fake.Update{TicketID: "t1", OrderID: "ORDER-2002", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"}.Payload(), nil)
	d1 := e.firstDelivery(first.body["event_id"].(string))
	if err := e.db.Record(context.Background(), d1, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: HTTP 400"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The order gets the same status again: a new delivery replaces the dead one.
	second := e.post(hookPath, fake.Update{TicketID: "t1", OrderID: "ORDER-2002", StatusID: confirmed, DateStatus: "2026-01-13 11:00:00"}.Payload(), nil)
	d2 := e.firstDelivery(second.body["event_id"].(string))
	a := e.post("/admin/deliveries/"+d1+"/retry", nil, auth)
	want := "a newer delivery (" + d2 + ") for order 2002 and target expertsender exists; retrying this one would send an older status"
	if a.code != http.StatusConflict || a.body["error"] != want {
		t.Errorf("retry of a replaced delivery: %d %q, want 409 %q", a.code, a.body["error"], want)
	}
	a = e.post("/admin/deliveries/"+d2+"/retry", nil, auth)
	if msg, _ := a.body["error"].(string); a.code != http.StatusConflict || strings.Contains(msg, "store:") || !strings.Contains(msg, "only dead deliveries") {
		t.Errorf("retry of a pending delivery: %d %q", a.code, msg)
	}
}

// firstDelivery returns the id of an event's first delivery.
func (e *env) firstDelivery(eventID string) string {
	e.t.Helper()
	d, err := bridge.Detail(context.Background(), e.db, eventID)
	if err != nil || len(d.Deliveries) == 0 {
		e.t.Fatalf("event %s: %v, %d deliveries", eventID, err, len(d.Deliveries))
	}
	return d.Deliveries[0].ID
}

// TestAdminShowsTheRequestSent: the request an attempt sent is in the
// event's detail and in GET /admin/deliveries/{id}.
func TestAdminShowsTheRequestSent(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin)
	ev := e.post(hookPath, payload("t1"), nil).body["event_id"].(string)
	id := e.firstDelivery(ev)
	sent := &bridge.SentRequest{Method: "PUT", URL: "https://api.ecdp.app/orders/status",
		Headers: map[string]string{"X-Api-Key": "[redacted]"}, Body: `{"orderId":"t1","orderStatus":"paid"}`}
	if err := e.db.Record(context.Background(), id, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200, Request: sent}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	a := e.admin("/admin/deliveries/"+id, adminToken)
	if a.code != 200 {
		t.Fatalf("GET /admin/deliveries/%s: %d %v", id, a.code, a.body)
	}
	req := a.body["delivery"].(map[string]any)["attempts"].([]any)[0].(map[string]any)["request"].(map[string]any)
	if req["method"] != "PUT" || req["url"] != sent.URL || req["headers"].(map[string]any)["X-Api-Key"] != "[redacted]" || req["body"] != sent.Body {
		t.Errorf("request = %v", req)
	}
	a = e.admin("/admin/events/"+ev, adminToken)
	if r := a.body["deliveries"].([]any)[0].(map[string]any)["attempts"].([]any)[0].(map[string]any)["request"]; r == nil {
		t.Errorf("event detail without the request: %v", a.body)
	}
	if a := e.admin("/admin/deliveries/00000000-0000-0000-0000-000000000000", adminToken); a.code != 404 {
		t.Errorf("unknown delivery: %d", a.code)
	}
}

func TestAdminSlowsDownWrongTokens(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin, func(o *Options) {
		o.Proxies = admin.Proxies{netip.MustParsePrefix("127.0.0.1/32")}
	})
	from := func(addr, token string) answer {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/admin/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Forwarded-For", addr) // the test's connection is a trusted proxy
		return e.do(req)
	}
	for range 3 {
		if a := e.admin("/admin/events", ""); a.code != http.StatusUnauthorized { // missing: not counted
			t.Fatalf("missing token: %d", a.code)
		}
	}
	for i := range 5 {
		if a := from("198.51.100.7", "wrong"); a.code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i, a.code)
		}
	}
	a := from("198.51.100.7", adminToken)
	if a.code != http.StatusTooManyRequests || a.hdr.Get("Retry-After") == "" {
		t.Errorf("sixth try with the right token: %d (Retry-After %q), want 429 with Retry-After", a.code, a.hdr.Get("Retry-After"))
	}
	if a := from("198.51.100.8", adminToken); a.code != http.StatusOK {
		t.Errorf("another client behind the same proxy: %d, want 200", a.code)
	}
	if !strings.Contains(e.logs.String(), `"remote":"198.51.100.7"`) {
		t.Error("the refusals were not logged with the client's address")
	}
}

func TestAdminJobsAndStatusFilter(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin)
	first := e.post(hookPath, payload("t1"), nil)
	e.post(hookPath, fake.Update{TicketID: "t2", OrderID: "ORDER-t2", StatusID: "other0000000000x", DateStatus: "2026-01-13 16:29:51"}.Payload(), nil)
	a := e.admin("/admin/events?status_id="+confirmed, adminToken)
	if rows := a.body["events"].([]any); a.code != 200 || len(rows) != 1 || rows[0].(map[string]any)["id"] != first.body["event_id"] {
		t.Errorf("status_id filter: %d %v", a.code, a.body)
	}
	detail := e.admin("/admin/events/"+first.body["event_id"].(string), adminToken)
	id := detail.body["deliveries"].([]any)[0].(map[string]any)["id"].(string)
	if err := e.db.Record(context.Background(), id, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: 400",
		Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 400}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	bearer := map[string]string{"Authorization": "Bearer " + adminToken}
	a = e.post("/admin/jobs", []byte(`{"kind":"retry","filter":{"state":"dead"},"dry_run":true}`), bearer)
	p, _ := a.body["preview"].(map[string]any)
	if a.code != 200 || p["matched"] != float64(1) || p["retry"] != float64(1) {
		t.Fatalf("dry run: %d %v", a.code, a.body)
	}
	for _, bad := range []string{`{"kind":"purge"}`, `{"filter":{"state":"done"}}`, `{"filter":{"target":"nope"}}`, `{"bogus":1}`} {
		if a := e.post("/admin/jobs", []byte(bad), bearer); a.code != 400 {
			t.Errorf("job %s: %d %v, want 400", bad, a.code, a.body)
		}
	}
	a = e.post("/admin/jobs", []byte(`{"filter":{"target":"expertsender"}}`), bearer)
	job, _ := a.body["job"].(map[string]any)
	if a.code != http.StatusCreated || job["state"] != "queued" || job["total"] != float64(1) {
		t.Fatalf("create: %d %v", a.code, a.body)
	}
	if a := e.admin("/admin/jobs/"+job["id"].(string), adminToken); a.code != 200 || a.body["job"].(map[string]any)["id"] != job["id"] {
		t.Errorf("get job: %d %v", a.code, a.body)
	}
	if a := e.admin("/admin/jobs", adminToken); a.code != 200 || len(a.body["jobs"].([]any)) != 1 {
		t.Errorf("list jobs: %d %v", a.code, a.body)
	}
	if a := e.admin("/admin/jobs/01a20000-0000-7000-8000-000000000000", adminToken); a.code != 404 {
		t.Errorf("unknown job: %d", a.code)
	}
	// A retry under a newer delivery answers 409 with a message for people.
	e.post(hookPath, fake.Update{TicketID: "t1", OrderID: "ORDER-t1", StatusID: confirmed, DateStatus: "2026-01-13 17:00:00"}.Payload(), nil)
	a = e.post("/admin/deliveries/"+id+"/retry", nil, bearer)
	if msg, _ := a.body["error"].(string); a.code != http.StatusConflict || !strings.Contains(msg, "would send an older status") {
		t.Errorf("retry under a newer delivery: %d %v", a.code, a.body)
	}
}
