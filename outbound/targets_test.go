package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
)

const orderSystemYAML = `
targets:
  order_system:
    base_url: %q
    token: os-token-xyz
    account_id: "1489"
    phone_region: MA
    timeout: 2s
    status_update: { method: PUT, path: "/orders/{order_id}/status", body: { status: "{status}", at: "{changed_at}" } }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, order_system: confirmed, whatsapp_opt_in: true }
`

func decodeBody(t *testing.T, r fake.Request) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

// deliveryFor returns the delivery an ingest created for a target.
func deliveryFor(t *testing.T, res bridge.IngestResult, target string) string {
	t.Helper()
	for _, d := range res.Deliveries {
		if d.Target == target {
			return d.ID
		}
	}
	t.Fatalf("no %s delivery in %+v", target, res.Deliveries)
	return ""
}

func TestOrderSystemStatusAndOptIn(t *testing.T) {
	osys := fake.NewServer(t)
	osys.Respond = func(r fake.Request) fake.Answer {
		if r.Method == http.MethodGet {
			return fake.Answer{Code: 200, Body: `{"orderId":"44212809","isWhatsAppEnabledForNotifications":"0"}`}
		}
		return fake.Answer{Code: 200, Body: `{"status":"updated successfully "}`}
	}
	h := newHarnessYAML(t, fmt.Sprintf(orderSystemYAML, osys.URL))
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingest("t1", "44212809", confirmed, "2026-01-13 16:29:51")
	h.waitDelivery(deliveryFor(t, res, "order_system"), bridge.Done)
	optin := h.waitDelivery(deliveryFor(t, res, "whatsapp_opt_in"), bridge.Done)
	if optin.Result != "" {
		t.Errorf("opt-in result = %q, want an ordinary success", optin.Result)
	}
	var put, get, post *fake.Request
	for _, r := range osys.Requests() {
		r := r
		switch r.Method {
		case http.MethodPut:
			put = &r
		case http.MethodGet:
			get = &r
		case http.MethodPost:
			post = &r
		}
		if r.Header.Get("Authorization") != "Bearer os-token-xyz" {
			t.Errorf("%s %s without the bearer token", r.Method, r.Path)
		}
	}
	if put == nil || put.Path != "/orders/44212809/status" {
		t.Fatalf("status write-back: %+v", put)
	}
	if b := decodeBody(t, *put); b["status"] != "confirmed" || b["at"] != "2026-01-13 16:29:51" {
		t.Errorf("status body = %v", b)
	}
	if get == nil || get.Path != "/_ah/api/esb/v2/order/44212809" || post == nil || post.Path != get.Path {
		t.Fatalf("opt-in requests: GET %+v POST %+v", get, post)
	}
	want := map[string]any{"contactPhone": "600000000", "customerName": "Ahmed Alami", "email": "ahmed.alami@example.com",
		"accountId": "1489", "whatsAppStatus": "ACTIVE"}
	if b := decodeBody(t, *post); fmt.Sprint(b) != fmt.Sprint(want) {
		t.Errorf("opt-in body = %v, want %v", b, want)
	}
}

func TestOptInAlreadyActiveSkipsPost(t *testing.T) {
	osys := fake.NewServer(t)
	osys.Respond = func(r fake.Request) fake.Answer {
		return fake.Answer{Code: 200, Body: `{"isWhatsAppEnabledForNotifications":"1"}`}
	}
	h := newHarnessYAML(t, fmt.Sprintf(orderSystemYAML, osys.URL))
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingest("t1", "1", confirmed, "2026-01-13 16:29:51")
	d := h.waitDelivery(deliveryFor(t, res, "whatsapp_opt_in"), bridge.Done)
	h.waitDelivery(deliveryFor(t, res, "order_system"), bridge.Done)
	if d.Result != ResultAlreadyActive {
		t.Errorf("result = %q, want already_active", d.Result)
	}
	for _, r := range osys.Requests() {
		if r.Method == http.MethodPost {
			t.Error("POSTed an opt-in the order system already had")
		}
	}
}

func TestOrderSystemFailures(t *testing.T) {
	cases := []struct {
		name       string
		get, post  fake.Answer
		wantState  bridge.DeliveryState
		wantReason string
	}{
		{"error body on 200", fake.Answer{Code: 200, Body: `{"isWhatsAppEnabledForNotifications":"0"}`},
			fake.Answer{Code: 200, Body: `{"error":"failed to update customers","reason":"no entry exist in customer table"}`},
			bridge.Dead, "no entry exist in customer table"},
		{"order unknown", fake.Answer{Code: 404, Body: `{"message":"not found"}`}, fake.Answer{}, bridge.Dead, "order unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			osys := fake.NewServer(t)
			osys.Respond = func(r fake.Request) fake.Answer {
				switch r.Method {
				case http.MethodGet:
					return c.get
				case http.MethodPost:
					return c.post
				}
				return fake.Answer{Code: 200, Body: "{}"}
			}
			h := newHarnessYAML(t, fmt.Sprintf(orderSystemYAML, osys.URL))
			h.start(Policy{Initial: time.Millisecond})
			res := h.ingest("t1", "1", confirmed, "")
			d := h.waitDelivery(deliveryFor(t, res, "whatsapp_opt_in"), c.wantState)
			if !strings.Contains(d.Reason, c.wantReason) || len(d.Attempts) != 1 {
				t.Errorf("reason = %q (%d attempts), want it to contain %q after one attempt", d.Reason, len(d.Attempts), c.wantReason)
			}
		})
	}
	t.Run("5xx on GET retries", func(t *testing.T) {
		osys := fake.NewServer(t)
		var gets atomic.Int32
		osys.Respond = func(r fake.Request) fake.Answer {
			if r.Method == http.MethodGet && gets.Add(1) == 1 {
				return fake.Answer{Code: 503}
			}
			return fake.Answer{Code: 200, Body: `{"isWhatsAppEnabledForNotifications":"0"}`}
		}
		h := newHarnessYAML(t, fmt.Sprintf(orderSystemYAML, osys.URL))
		h.start(Policy{Initial: time.Millisecond})
		res := h.ingest("t1", "1", confirmed, "")
		d := h.waitDelivery(deliveryFor(t, res, "whatsapp_opt_in"), bridge.Done)
		if len(d.Attempts) != 2 {
			t.Errorf("%d attempts, want 2 (503 then success)", len(d.Attempts))
		}
	})
	t.Run("unparseable phone never sends", func(t *testing.T) {
		osys := fake.NewServer(t)
		h := newHarnessYAML(t, fmt.Sprintf(orderSystemYAML, osys.URL))
		h.start(Policy{Initial: time.Millisecond})
		res := h.ingestUpdate(fake.Update{TicketID: "t", OrderID: "1", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51",
			Third: map[string]string{"wa_id": "12ab", "name": "x", "email": "x@example.com"}})
		d := h.waitDelivery(deliveryFor(t, res, "whatsapp_opt_in"), bridge.Dead)
		if !strings.Contains(d.Reason, "wa_id") {
			t.Errorf("reason = %q", d.Reason)
		}
		h.waitDelivery(deliveryFor(t, res, "order_system"), bridge.Done)
		for _, r := range osys.Requests() {
			if r.Method == http.MethodPost {
				t.Error("sent an opt-in with a malformed phone")
			}
		}
	})
}

func TestNationalPhone(t *testing.T) {
	for _, c := range []struct{ in, region, want string }{
		{"212600000000", "MA", "600000000"},
		{"+212612345678", "MA", "612345678"},
		{"919711166382", "IN", "9711166382"},
		{"33612345678", "MA", "+33612345678"},
	} {
		got, err := NationalPhone(c.in, c.region)
		if err != nil || got != c.want {
			t.Errorf("NationalPhone(%q, %s) = %q, %v; want %q", c.in, c.region, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "abc", "2126", "999999999999999", "212 600 000 000"} {
		if got, err := NationalPhone(bad, "MA"); err == nil {
			t.Errorf("NationalPhone(%q) = %q, want an error", bad, got)
		}
	}
}

const everlyticYAML = `
targets:
  everlytic: { base_url: %q, store_hash: sh-abc, customer_hash: ch-def, timeout: 2s }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, everlytic: { workflow_id: 42 } }
    x9q3wrlv0m7vzea8: { name: Awaiting, everlytic: { workflow_id: 7 } }
`

func TestEverlyticBodyAndHeaders(t *testing.T) {
	ev := fake.NewServer(t)
	h := newHarnessYAML(t, fmt.Sprintf(everlyticYAML, ev.URL))
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingestUpdate(fake.Update{TicketID: "t1", OrderID: "55", StatusID: confirmed, Subject: "Your order",
		Campaign: map[string]any{"order_total": "500.00", "shipping_fee": "20.00", "items_count": "3", "taxes": 10}})
	h.waitDelivery(deliveryFor(t, res, "everlytic"), bridge.Done)
	reqs := ev.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/servlet/e-commerce/orders" || r.Header.Get("x-ev-store-hash") != "sh-abc" || r.Header.Get("x-ev-customer-hash") != "ch-def" {
		t.Errorf("request %s %v", r.Path, r.Header)
	}
	b := decodeBody(t, r)
	if b["contact_email"] != "ahmed.alami@example.com" || b["order_id"] != "55" || b["workflow_id"] != float64(42) ||
		b["total"] != "500.00" || b["shipping_fee"] != "20.00" || b["taxes"] != "10" {
		t.Errorf("body = %v", b)
	}
	products := b["products"].([]any)
	line := products[0].(map[string]any)
	if len(products) != 1 || line["product_name"] != "Your order" || line["product_quantity"] != float64(3) ||
		line["product_price"] != "500.00" || line["product_line_total"] != "500.00" {
		t.Errorf("summary line = %v", products)
	}
}

func TestEverlyticProductsAndContactFallback(t *testing.T) {
	ev := fake.NewServer(t)
	h := newHarnessYAML(t, fmt.Sprintf(everlyticYAML, ev.URL))
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingestUpdate(fake.Update{TicketID: "t1", OrderID: "56", StatusID: confirmed,
		Third:    map[string]string{"ext_ref": "CUSTOMER-1", "wa_id": "212600000000"},
		Campaign: map[string]any{"products": `[{"product_name":"Tea","product_quantity":2}]`}})
	h.waitDelivery(deliveryFor(t, res, "everlytic"), bridge.Done)
	b := decodeBody(t, ev.Requests()[0])
	if b["contact_unique_id"] != "CUSTOMER-1" || b["contact_email"] != nil {
		t.Errorf("contact = %v / %v", b["contact_unique_id"], b["contact_email"])
	}
	if p := b["products"].([]any); len(p) != 1 || p[0].(map[string]any)["product_name"] != "Tea" {
		t.Errorf("products = %v", b["products"])
	}
	// No contact at all: a permanent failure, nothing sent.
	res = h.ingestUpdate(fake.Update{TicketID: "t2", OrderID: "57", StatusID: confirmed, Third: map[string]string{"name": "x"}})
	d := h.waitDelivery(deliveryFor(t, res, "everlytic"), bridge.Dead)
	if !strings.Contains(d.Reason, "no contact") || len(ev.Requests()) != 1 {
		t.Errorf("reason %q, %d requests", d.Reason, len(ev.Requests()))
	}
}

func TestEverlyticNeverTriggersTwice(t *testing.T) {
	ev := fake.NewServer(t)
	h := newHarnessYAML(t, fmt.Sprintf(everlyticYAML, ev.URL))
	h.start(Policy{Initial: time.Millisecond})
	// confirmed (42) → awaiting (7) → confirmed (42) again: the second
	// confirmed must not trigger workflow 42 a second time for this order.
	r1 := h.ingest("a", "60", confirmed, "2026-01-13 10:00:00")
	h.waitDelivery(deliveryFor(t, r1, "everlytic"), bridge.Done)
	r2 := h.ingest("b", "60", awaiting, "2026-01-13 11:00:00")
	h.waitDelivery(deliveryFor(t, r2, "everlytic"), bridge.Done)
	r3 := h.ingest("c", "60", confirmed, "2026-01-13 12:00:00")
	d := h.waitDelivery(deliveryFor(t, r3, "everlytic"), bridge.Done)
	if d.Result != ResultAlreadyTriggered || len(d.Attempts) != 0 {
		t.Errorf("repeat: result %q with %d attempts, want already_triggered with none", d.Result, len(d.Attempts))
	}
	if n := len(ev.Requests()); n != 2 {
		t.Errorf("%d Everlytic calls, want 2", n)
	}
}

func TestGenericTargetPlaceholders(t *testing.T) {
	crm := fake.NewServer(t)
	h := newHarnessYAML(t, fmt.Sprintf(`
targets:
  http:
    crm:
      method: PUT
      url: "%s/orders/{order_id}?s={status_name}"
      headers: { Authorization: "Bearer crm-secret-token", X-Ticket: "{ticket_number}" }
      body: { orderId: "{order_id}", status: "{status}", phone: "{third.wa_id}", name: "{third.name}", note: "{campaign_data.note}", n: 3 }
      success_when_body_lacks: error
      timeout: 2s
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, http: { crm: confirmed } }
`, crm.URL))
	h.start(Policy{Initial: time.Millisecond})
	name := `Ahmed "Al" \ Alami </script> {order_id} أحمد 🚀`
	note := "مرحبا {status} \u2028 end"
	res := h.ingestUpdate(fake.Update{TicketID: "t1", OrderID: "A/7", StatusID: confirmed,
		Third:    map[string]string{"wa_id": "212600000000", "name": name},
		Campaign: map[string]any{"note": note}})
	h.waitDelivery(deliveryFor(t, res, "http.crm"), bridge.Done)
	r := crm.Requests()[0]
	if r.Method != http.MethodPut || r.Path != "/orders/A/7" || r.Header.Get("X-Ticket") != "342106" || r.Header.Get("Authorization") != "Bearer crm-secret-token" {
		t.Errorf("request %s %s %v", r.Method, r.Path, r.Header)
	}
	if !json.Valid(r.Body) {
		t.Fatalf("invalid JSON sent: %s", r.Body)
	}
	b := decodeBody(t, r)
	if b["name"] != name || b["note"] != note || b["orderId"] != "A/7" || b["status"] != "confirmed" || b["phone"] != "212600000000" || b["n"] != float64(3) {
		t.Errorf("body = %v", b)
	}
	// A missing placeholder value fails permanently; nothing is sent.
	res = h.ingestUpdate(fake.Update{TicketID: "t2", OrderID: "8", StatusID: confirmed, Campaign: map[string]any{}})
	d := h.waitDelivery(deliveryFor(t, res, "http.crm"), bridge.Dead)
	if !strings.Contains(d.Reason, "{campaign_data.note}") || len(crm.Requests()) != 1 {
		t.Errorf("missing placeholder: reason %q, %d requests", d.Reason, len(crm.Requests()))
	}
	// success_when_body_lacks: a 2xx with an error key is a failure.
	crm.Default = fake.Answer{Code: 200, Body: `{"error":"bad order"}`}
	res = h.ingestUpdate(fake.Update{TicketID: "t3", OrderID: "9", StatusID: confirmed, Campaign: map[string]any{"note": "x"}})
	d = h.waitDelivery(deliveryFor(t, res, "http.crm"), bridge.Dead)
	if !strings.Contains(d.Reason, "bad order") {
		t.Errorf("error-key reason = %q", d.Reason)
	}
}

// TestFanOutWithOneTargetDown: one status fans out to four targets; the
// order system is down, the other three deliver; the fourth retries and
// delivers once it recovers; each target receives each order's statuses in
// event order.
// downUntilRestored makes srv answer 503 until the returned flag is cleared.
func downUntilRestored(srv *fake.Server) *atomic.Bool {
	down := &atomic.Bool{}
	down.Store(true)
	srv.Respond = func(r fake.Request) fake.Answer {
		if down.Load() {
			return fake.Answer{Code: 503, Body: "maintenance"}
		}
		return fake.Answer{Code: 200, Body: "{}"}
	}
	return down
}

func TestFanOutWithOneTargetDown(t *testing.T) {
	es, ev, crm, osys := fake.NewServer(t), fake.NewServer(t), fake.NewServer(t), fake.NewServer(t)
	down := downUntilRestored(osys)
	h := newHarnessYAML(t, fmt.Sprintf(`
targets:
  expertsender: { base_url: %q, api_key: k-123456, timeout: 2s }
  everlytic: { base_url: %q, store_hash: s-123456, customer_hash: c-123456, timeout: 2s }
  order_system:
    base_url: %q
    timeout: 2s
    circuit_breaker: { failures: 1000, cooldown: 1s }
    status_update: { method: PUT, path: "/orders/{order_id}/status", body: { status: "{status}" } }
  http:
    crm: { url: "%s/crm/{order_id}", body: { status: "{status}" }, timeout: 2s }
mapping:
  statuses:
    x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed, order_system: awaiting, everlytic: { workflow_id: 1 }, http: { crm: awaiting } }
    yqdwrbka7kz69v8e: { name: Confirmed, expertsender: paid, order_system: confirmed, everlytic: { workflow_id: 2 }, http: { crm: confirmed } }
`, es.URL, ev.URL, osys.URL, crm.URL))
	h.start(Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 1000})
	var results []bridge.IngestResult
	for i := range 5 {
		order := fmt.Sprint("o", i)
		results = append(results, h.ingest("a"+order, order, awaiting, "2026-01-13 10:00:00"))
		results = append(results, h.ingest("b"+order, order, confirmed, "2026-01-13 11:00:00"))
	}
	for _, r := range results {
		if len(r.Deliveries) != 4 {
			t.Fatalf("event fanned out to %d targets, want 4", len(r.Deliveries))
		}
		for _, target := range []string{"expertsender", "everlytic", "http.crm"} {
			h.waitDelivery(deliveryFor(t, r, target), bridge.Done)
		}
	}
	// The three healthy targets are done while the order system still fails.
	if failing := osys.WaitRequests(3, 10*time.Second); len(failing) < 3 {
		t.Fatalf("order system got %d attempts while down", len(failing))
	}
	for _, r := range results {
		d, _ := h.db.GetDelivery(context.Background(), deliveryFor(t, r, "order_system"))
		if d.State == bridge.Done {
			t.Fatalf("order_system delivery done while the target was down")
		}
	}
	down.Store(false)
	for i, r := range results {
		id := deliveryFor(t, r, "order_system")
		d, _ := h.db.GetDelivery(context.Background(), id)
		if i%2 == 0 && d.State == bridge.Superseded {
			continue // the awaiting status was waiting to retry when confirmed queued behind it
		}
		h.waitDelivery(id, bridge.Done)
	}
	// Ordering per order and target: never "confirmed" before "awaiting".
	check := func(name string, srv *fake.Server, status func(fake.Request) (order, status string)) {
		seen := map[string][]string{}
		for _, r := range srv.Requests() {
			if r.Method == http.MethodGet {
				continue
			}
			o, s := status(r)
			seen[o] = append(seen[o], s)
		}
		newer := map[string]bool{"paid": true, "confirmed": true, "2": true}
		for o, ss := range seen {
			sawNewer := false
			for _, st := range ss {
				if sawNewer && !newer[st] {
					t.Errorf("%s: order %s got the older status after the newer one: %v", name, o, ss)
				}
				sawNewer = sawNewer || newer[st]
			}
			if !newer[ss[len(ss)-1]] {
				t.Errorf("%s: order %s ended with %q (sequence %v)", name, o, ss[len(ss)-1], ss)
			}
		}
	}
	check("expertsender", es, func(r fake.Request) (string, string) { return r.OrderID, r.Status })
	check("everlytic", ev, func(r fake.Request) (string, string) {
		b := decodeBody(t, r)
		return fmt.Sprint(b["order_id"]), fmt.Sprint(b["workflow_id"])
	})
	check("crm", crm, func(r fake.Request) (string, string) {
		return strings.TrimPrefix(r.Path, "/crm/"), fmt.Sprint(decodeBody(t, r)["status"])
	})
	check("order_system", osys, func(r fake.Request) (string, string) {
		return strings.Split(r.Path, "/")[2], fmt.Sprint(decodeBody(t, r)["status"])
	})
}

func TestCircuitBreakerPausesTarget(t *testing.T) {
	es := fake.NewServer(t)
	es.Default = fake.Answer{Code: 503}
	h := newHarness(t, es)
	cooldown := 400 * time.Millisecond
	h.start(Policy{Initial: time.Millisecond, Max: time.Millisecond, MaxAttempts: 3, Concurrency: 1,
		Targets: map[string]TargetPolicy{"expertsender": {BreakerFailures: 2, BreakerCooldown: cooldown}}})
	if hl := h.w.Health()["expertsender"]; hl.Breaker != "closed" {
		t.Errorf("breaker before any attempt: %+v, want closed", hl)
	}
	res := h.ingest("t1", "1", confirmed, "")
	h.waitDelivery(res.Deliveries[0].ID, bridge.Dead)
	// The breaker learns each outcome before the attempt is recorded.
	if hl := h.w.Health()["expertsender"]; hl.Failures != 3 || !(hl.Breaker == "open" && !hl.OpenUntil.IsZero() || hl.Breaker == "half_open") {
		t.Errorf("breaker after three failures: %+v, want open (or half-open once the cool-down passed)", hl)
	}
	reqs := es.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	// Two quick failures open the breaker; the third attempt waits out the cooldown.
	if gap := reqs[2].At.Sub(reqs[1].At); gap < cooldown*9/10 {
		t.Errorf("third attempt %v after the second, want ≥ the %v cooldown", gap, cooldown)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap > cooldown/2 {
		t.Errorf("second attempt %v after the first: the breaker opened too early", gap)
	}
}

func TestRateLimit(t *testing.T) {
	es := fake.NewServer(t)
	h := newHarness(t, es)
	h.start(Policy{Initial: time.Millisecond, Concurrency: 8,
		Targets: map[string]TargetPolicy{"expertsender": {Rate: 4}}})
	var last bridge.IngestResult
	for i := range 8 {
		last = h.ingest(fmt.Sprint("t", i), fmt.Sprint("o", i), confirmed, "")
	}
	h.waitDelivery(last.Deliveries[0].ID, bridge.Done)
	reqs := es.WaitRequests(8, 10*time.Second)
	if len(reqs) != 8 {
		t.Fatalf("%d requests", len(reqs))
	}
	// 4/s with a burst of 4: the last 4 need about one more second.
	if span := reqs[7].At.Sub(reqs[0].At); span < 800*time.Millisecond {
		t.Errorf("8 requests within %v at 4/s", span)
	}
}

// TestHeldDeliveriesAreBounded: with a target down and far more deliveries
// pending for it than Policy.MaxHeld, the worker holds at most MaxHeld of
// them, the healthy target is not held up, and once the target is back it
// gets every order's newest status without an older one after it.
func TestHeldDeliveriesAreBounded(t *testing.T) {
	es, osys := fake.NewServer(t), fake.NewServer(t)
	down := downUntilRestored(osys)
	h := newHarnessYAML(t, fmt.Sprintf(`
targets:
  expertsender: { base_url: %q, api_key: k-123456, timeout: 2s }
  order_system:
    base_url: %q
    timeout: 2s
    circuit_breaker: { failures: 1000, cooldown: 1s }
    status_update: { method: PUT, path: "/orders/{order_id}/status", body: { status: "{status}" } }
mapping:
  statuses:
    x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed, order_system: awaiting }
    yqdwrbka7kz69v8e: { name: Confirmed, expertsender: paid, order_system: confirmed }
`, es.URL, osys.URL))
	const maxHeld, orders = 10, 60
	var results []bridge.IngestResult
	// Half the backlog is on disk before the worker starts, half arrives
	// while it runs: both load paths meet the limit.
	for i := range orders {
		if i == orders/2 {
			h.start(Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 100000, MaxHeld: maxHeld})
		}
		order := fmt.Sprint("o", i)
		results = append(results, h.ingest("a"+order, order, awaiting, "2026-01-13 10:00:00"))
		results = append(results, h.ingest("b"+order, order, confirmed, "2026-01-13 11:00:00"))
	}
	for _, r := range results {
		h.waitDelivery(deliveryFor(t, r, "expertsender"), bridge.Done)
	}
	if got := osys.WaitRequests(2*maxHeld, 10*time.Second); len(got) < 2*maxHeld {
		t.Fatalf("order system got %d attempts while down", len(got))
	}
	if peak := h.w.peakHeld.Load(); peak > maxHeld {
		t.Fatalf("held %d deliveries of one target, limit %d", peak, maxHeld)
	}
	st, err := h.db.PendingByTarget(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := st["order_system"].Pending; n <= maxHeld {
		t.Fatalf("%d order_system deliveries pending: the test needs more than the %d held", n, maxHeld)
	}
	down.Store(false)
	for _, r := range results {
		h.waitTerminal(deliveryFor(t, r, "order_system"))
	}
	if peak := h.w.peakHeld.Load(); peak > maxHeld {
		t.Errorf("held %d deliveries of one target, limit %d", peak, maxHeld)
	}
	seen := map[string][]string{}
	for _, r := range osys.Requests() {
		o := strings.Split(r.Path, "/")[2]
		seen[o] = append(seen[o], fmt.Sprint(decodeBody(t, r)["status"]))
	}
	for i := range orders {
		o := fmt.Sprint("o", i)
		ss := seen[o]
		last := -1
		for j, st := range ss {
			if st == "confirmed" {
				last = j
			}
		}
		if len(ss) == 0 || ss[len(ss)-1] != "confirmed" || (last >= 0 && strings.Contains(strings.Join(ss[last:], ","), "awaiting")) {
			t.Errorf("order %s: order system got %v, want confirmed last and never awaiting after it", o, ss)
		}
	}
}
