package receiver

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
)

const (
	intakeToken = "intake-Tok#42"
	intakePath  = "/webhooks/orders"
)

// countingObserver counts intake outcomes (the metrics' view).
type countingObserver struct {
	noObserver
	mu      sync.Mutex
	intakes map[string]int
}

func (c *countingObserver) Intake(outcome string) {
	c.mu.Lock()
	c.intakes[outcome]++
	c.mu.Unlock()
}

func (c *countingObserver) count(outcome string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.intakes[outcome]
}

func withIntake(tok string, obs *countingObserver) func(*Options) {
	return func(o *Options) {
		o.Intake = IntakeOptions{Path: intakePath, Token: tok, MaxBody: 4096,
			Plan: bridge.IntakePlan{Upsert: bridge.Step{On: true, Skip: "no api_key"}, Fetch: bridge.Step{On: true}}}
		o.Observer = obs
	}
}

func smallOrder(id, total string) []byte {
	return []byte(`{"orderId": "` + id + `", "orderTotal": ` + total + `, "shippingAddress": {"contactPhone": "9711166382", "email": "mituj@eshopbox.com"}}`)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// TestIntakeAnswers: every answer of POST {intake.path} and what it stores.
func TestIntakeAnswers(t *testing.T) {
	obs := &countingObserver{intakes: map[string]int{}}
	e := newEnv(t, token, nil, withIntake(intakeToken, obs), withAdmin)
	intakes := func() int {
		st, err := e.db.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Intakes
	}
	if a := e.post(intakePath, smallOrder("1", "10.0"), nil); a.code != http.StatusUnauthorized {
		t.Errorf("no token: %d", a.code)
	}
	if a := e.post(intakePath, smallOrder("1", "10.0"), bearer(token)); a.code != http.StatusUnauthorized {
		t.Errorf("the webhook's token: %d, want 401", a.code)
	}
	for name, hdr := range map[string]map[string]string{
		"bearer": bearer(intakeToken), "header": {"X-Webhook-Token": intakeToken},
		"basic": {"Authorization": "Basic " + basic("store", intakeToken)},
	} {
		if a := e.post(intakePath, smallOrder("auth-"+name, "1"), hdr); a.code != http.StatusOK {
			t.Errorf("%s: %d %v", name, a.code, a.body)
		}
	}
	if a := e.post(intakePath+"?token="+url.QueryEscape(intakeToken), smallOrder("auth-query", "1"), nil); a.code != http.StatusOK {
		t.Errorf("query token: %d %v", a.code, a.body)
	}
	body := []byte("{ \"orderId\" : 44212809,\n \"orderTotal\": 1000.0, \"shippingAddress\": {\"contactPhone\": \"9711166382\", \"email\": \"mituj@eshopbox.com\"} }")
	a := e.post(intakePath, body, bearer(intakeToken))
	if a.code != http.StatusOK || a.body["order_id"] != "44212809" || a.body["state"] != "new" || a.body["duplicate"] != false || a.body["intake_id"] == "" {
		t.Fatalf("new order: %d %v", a.code, a.body)
	}
	first := a.body["intake_id"].(string)
	it, raw, err := e.db.GetIntake(context.Background(), first)
	if err != nil || !bytes.Equal(raw, body) || it.Source != bridge.SourceHTTP || len(it.DeliveryIDs) != 1 {
		t.Errorf("stored intake %+v, raw %q (%v); want the body byte for byte and the skipped upsert", it, raw, err)
	}
	if d, _ := e.db.GetDelivery(context.Background(), it.DeliveryIDs[0]); d.State != bridge.Skipped || d.Kind != bridge.KindOrder {
		t.Errorf("upsert of a disabled target: %+v", d)
	}
	dup := e.post(intakePath, []byte(`{"orderTotal":1000.0,"orderId":44212809,"shippingAddress":{"email":"mituj@eshopbox.com","contactPhone":"9711166382"}}`), bearer(intakeToken))
	if dup.code != http.StatusOK || dup.body["duplicate"] != true || dup.body["intake_id"] != first || dup.body["state"] != "new" {
		t.Errorf("repeat in another layout: %d %v, want a duplicate of %s", dup.code, dup.body, first)
	}
	upd := e.post(intakePath, smallOrder("44212809", "1001.0"), bearer(intakeToken))
	if upd.code != http.StatusOK || upd.body["duplicate"] != false || upd.body["state"] != "updated" {
		t.Errorf("update: %d %v", upd.code, upd.body)
	}
	fetch := e.post(intakePath, []byte(`{"orderId":"44212809"}`), bearer(intakeToken))
	if fetch.code != http.StatusOK || fetch.body["state"] != "fetch" || fetch.body["duplicate"] != false {
		t.Errorf("orderId alone: %d %v", fetch.code, fetch.body)
	}
	again := e.post(intakePath, []byte(`{"orderId":"44212809"}`), bearer(intakeToken))
	if again.body["state"] != "fetch" || again.body["intake_id"] == fetch.body["intake_id"] {
		t.Errorf("orderId alone again: %v, want another fetch intake (never a duplicate by itself)", again.body)
	}
	before := intakes()
	for name, c := range map[string]struct {
		body []byte
		code int
		msg  string
	}{
		"not JSON":      {[]byte(`{"orderId":`), 400, "not JSON"},
		"empty":         {nil, 400, "empty"},
		"array":         {[]byte(`[1]`), 422, "not an object"},
		"no orderId":    {[]byte(`{"id":"1"}`), 422, "missing orderId"},
		"empty orderId": {[]byte(`{"orderId":"  "}`), 422, "empty string"},
		"bool orderId":  {[]byte(`{"orderId":true}`), 422, "boolean"},
		"too large":     {bytes.Repeat([]byte(" "), 5000), 413, "intake.max_body"},
	} {
		a := e.post(intakePath, c.body, bearer(intakeToken))
		if a.code != c.code || !strings.Contains(a.body["error"].(string), c.msg) {
			t.Errorf("%s: %d %v, want %d naming %q", name, a.code, a.body, c.code, c.msg)
		}
	}
	if n := intakes(); n != before {
		t.Errorf("refused intakes stored %d intakes", n-before)
	}
	for outcome, want := range map[string]int{"unauthorized": 2, "accepted": 8, "duplicate": 1, "bad_request": 2, "invalid": 4, "too_large": 1} {
		if got := obs.count(outcome); got != want {
			t.Errorf("intake outcome %s counted %d, want %d", outcome, got, want)
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"order intake"`) || !strings.Contains(logs, `"order_id":"44212809"`) ||
		strings.Contains(logs, "9711166382") || strings.Contains(logs, "mituj@") || !strings.Contains(logs, "m***@eshopbox.com") ||
		strings.Contains(logs, intakeToken) {
		t.Errorf("logs (one line per intake with order_id, phone and email masked, no token):\n%s", logs)
	}

	// The admin API takes the same body with the admin token.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/admin/intake", bytes.NewReader(smallOrder("77", "5")))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if a := e.do(req); a.code != http.StatusOK || a.body["state"] != "new" {
		t.Errorf("POST /admin/intake: %d %v", a.code, a.body)
	}
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/admin/intake", bytes.NewReader(smallOrder("78", "5")))
	req.Header.Set("Authorization", "Bearer "+intakeToken)
	if a := e.do(req); a.code != http.StatusUnauthorized {
		t.Errorf("POST /admin/intake with the intake token: %d, want 401", a.code)
	}
	orders := e.admin("/admin/orders", adminToken)
	rows, _ := orders.body["orders"].([]any)
	if orders.code != http.StatusOK || len(rows) != 6 { // 44212809, 77, and the four auth- orders
		t.Errorf("GET /admin/orders: %d, %d rows %v", orders.code, len(rows), orders.body)
	}
	one := e.admin("/admin/orders/44212809", adminToken)
	its, _ := one.body["intakes"].([]any)
	tl, _ := one.body["timeline"].([]any)
	if one.code != http.StatusOK || len(its) != 4 || len(tl) < 4 {
		t.Errorf("GET /admin/orders/44212809: %d, %d intakes, %d timeline entries", one.code, len(its), len(tl))
	}
	if a := e.admin("/admin/orders/nope", adminToken); a.code != http.StatusNotFound {
		t.Errorf("unknown order: %d", a.code)
	}
}

// TestIntakeWithoutTokenRefusesAll: an empty intake.token refuses every
// intake, before the body is read.
func TestIntakeWithoutTokenRefusesAll(t *testing.T) {
	obs := &countingObserver{intakes: map[string]int{}}
	e := newEnv(t, "", nil, withIntake("", obs))
	for _, hdr := range []map[string]string{nil, bearer(""), bearer("anything")} {
		if a := e.post(intakePath, smallOrder("1", "1"), hdr); a.code != http.StatusUnauthorized {
			t.Errorf("%v: %d, want 401", hdr, a.code)
		}
	}
	if st, _ := e.db.Stats(context.Background()); st.Intakes != 0 || obs.count("unauthorized") != 3 {
		t.Errorf("stored %d intakes, counted %d unauthorized", st.Intakes, obs.count("unauthorized"))
	}
}

// TestIntakeStoreErrors: 503 when the store cannot commit; nothing answered 200.
func TestIntakeStoreErrors(t *testing.T) {
	obs := &countingObserver{intakes: map[string]int{}}
	e := newEnv(t, "", nil, withIntake(intakeToken, obs))
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	a := e.post(intakePath, smallOrder("1", "1"), bearer(intakeToken))
	if a.code != http.StatusServiceUnavailable || a.hdr.Get("Retry-After") == "" || obs.count("store_error") != 1 {
		t.Errorf("closed store: %d %v (Retry-After %q)", a.code, a.body, a.hdr.Get("Retry-After"))
	}
}

// TestIntakeSeedOrder: the fact sheet's order is taken as it is.
func TestIntakeSeedOrder(t *testing.T) {
	raw, err := os.ReadFile("../orders/testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "", nil, withIntake(intakeToken, &countingObserver{intakes: map[string]int{}}))
	e.server.opt.Intake.MaxBody = 1 << 20
	if a := e.post(intakePath, raw, bearer(intakeToken)); a.code != http.StatusOK || a.body["order_id"] != "44212809" {
		t.Errorf("seed order: %d %v", a.code, a.body)
	}
}
