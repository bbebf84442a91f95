package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/orders"
	"github.com/statusbridge/statusbridge/ticket"
)

// Update signals like Record: the worker records tickets, fetches and media
// ids through Update.
func (n *notifyingOutbox) Update(ctx context.Context, opt bridge.UpdateOptions, fn func(bridge.Tx) error) error {
	err := n.DB.Update(ctx, opt, fn)
	n.records.Add(1)
	select {
	case n.recorded <- struct{}{}:
	default:
	}
	return err
}

// loop is a worker harness with fakes for every system of the order intake.
type loop struct {
	*harness
	ds   *fake.Digishare
	es   *fake.Server
	os   *fake.OrderSystem
	plan bridge.IntakePlan
}

const testDigishareToken = "pat-token-1234"

// newLoop builds the harness; extra is YAML added under targets.digishare.
func newLoop(t *testing.T, digishareExtra string) *loop {
	t.Helper()
	return newLoopAuth(t, "token: "+testDigishareToken, digishareExtra)
}

// newLoopAuth is newLoop with Digishare's credentials as YAML.
func newLoopAuth(t *testing.T, auth, digishareExtra string) *loop {
	t.Helper()
	l := &loop{ds: fake.NewDigishare(t, testDigishareToken), es: fake.NewServer(t), os: fake.NewOrderSystem(t)}
	l.harness = newHarnessYAML(t, fmt.Sprintf(`
order_id: { strip_prefix: "ORDER-" }
targets:
  expertsender: { base_url: %q, api_key: es-key-1234, orders: { currency: INR, status: placed } }
  digishare:
    base_url: %q
    %s
    timeout: 2s
    ticket: { type_ticket_id: npvrxamq9l94y8dz, ticket_status_id: x9q3wrlv0m7vzea8, invoice: { allowed_hosts: [127.0.0.1] } }
    %s
  order_system: { base_url: %q, phone_region: MA }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }, x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed } } }
`, l.es.URL, l.ds.URL+"/v1", auth, digishareExtra, l.os.URL))
	l.plan = Plan(l.cfg)
	return l
}

// seedBody is the fact sheet's order with its invoice on the fake invoice host.
func (l *loop) seedBody(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("../orders/testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(raw), "https://storage.googleapis.com/", l.os.URL+"/invoices/"))
}

// withTotal is the seed order with another orderTotal (as written).
func withTotal(seed []byte, total string) []byte {
	return []byte(strings.Replace(string(seed), `"orderTotal": 1000.0`, `"orderTotal": `+total, 1))
}

// take stores an intake as the receiver does.
func (l *loop) take(t *testing.T, raw []byte) bridge.IntakeResult {
	t.Helper()
	o, err := orders.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bridge.TakeIntake(context.Background(), l.db, bridge.IncomingOrder{OrderID: o.ID, IDOnly: o.IDOnly, Key: o.Key,
		Raw: raw, Source: bridge.SourceHTTP, ReceivedAt: time.Now()}, l.plan, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// delivery returns the result's delivery of kind k.
func delivery(t *testing.T, res bridge.IntakeResult, k bridge.DeliveryKind) bridge.Delivery {
	t.Helper()
	for _, d := range res.Deliveries {
		if d.Kind == k {
			return d
		}
	}
	t.Fatalf("intake %s has no %s delivery: %+v", res.IntakeID, k, res.Deliveries)
	return bridge.Delivery{}
}

func (l *loop) orderIntake(t *testing.T, orderID string) *bridge.OrderIntake {
	t.Helper()
	var rec *bridge.OrderIntake
	err := l.db.View(context.Background(), func(tx bridge.Tx) error {
		var err error
		rec, err = tx.OrderIntake(orderID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func onPathES(reqs []fake.Request, method, path string) []fake.Request {
	var out []fake.Request
	for _, r := range reqs {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// TestIntakeTicketAndUpsert: the seed order's intake uploads the invoice
// from the invoice host, creates the ticket with exactly the rendered fields
// and the media id, records the ticket and the media id with the order, and
// registers the order with ExpertSender before any status PUT.
func TestIntakeTicketAndUpsert(t *testing.T) {
	l := newLoop(t, "")
	l.start(Policy{Initial: time.Millisecond})
	res := l.take(t, l.seedBody(t))
	if res.State != bridge.IntakeNew || res.Duplicate || res.OrderID != "44212809" {
		t.Fatalf("intake = %+v", res)
	}
	tk := l.waitDelivery(delivery(t, res, bridge.KindTicket).ID, bridge.Done)
	up := l.waitDelivery(delivery(t, res, bridge.KindOrder).ID, bridge.Done)
	if tk.Target != "digishare" || up.Target != "expertsender" || tk.IntakeID != res.IntakeID || tk.EventID != "" {
		t.Errorf("deliveries: ticket %s/%s intake %s event %q; upsert %s", tk.Target, tk.Kind, tk.IntakeID, tk.EventID, up.Target)
	}
	if got := len(l.os.Requests()); got != 1 {
		t.Errorf("invoice host got %d requests, want 1", got)
	}
	uploads := l.ds.On("/messagesTemplates")
	if len(uploads) != 1 {
		t.Fatalf("%d uploads, want 1", len(uploads))
	}
	var up1 struct {
		File struct {
			Base64 string `json:"base64"`
		} `json:"file"`
	}
	_ = json.Unmarshal(uploads[0].Body, &up1)
	if !strings.HasPrefix(up1.File.Base64, "data:application/pdf;base64,") {
		t.Errorf("upload body %s", uploads[0].Body)
	}
	tickets := l.ds.On("/tickets")
	if len(tickets) != 1 {
		t.Fatalf("%d ticket requests, want 1", len(tickets))
	}
	o, _ := orders.Decode(l.seedBody(t))
	want, err := ticket.Render(l.cfg.Targets.Digishare.Ticket, o, "MA", "media-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(tickets[0].Body) != string(want.Body) {
		t.Errorf("ticket body\n%s\nwant\n%s", tickets[0].Body, want.Body)
	}
	rec := l.orderIntake(t, "44212809")
	if rec.Ticket == nil || rec.Ticket.ID != "tk-1" || rec.Ticket.Number != "340001" || rec.Ticket.MediaID != "media-1" ||
		rec.MediaID != "media-1" || rec.Ticket.ExternalID != "ORDER-44212809" || rec.Ticket.DeliveryID != tk.ID {
		t.Errorf("order intake record: %+v ticket %+v", rec, rec.Ticket)
	}
	if !strings.Contains(tk.Result, "tk-1") || len(tk.Attempts) != 1 || tk.Attempts[0].StatusCode != 201 {
		t.Errorf("ticket delivery result %q, attempts %+v", tk.Result, tk.Attempts)
	}
	posts := onPathES(l.es.Requests(), http.MethodPost, "/orders")
	if len(posts) != 1 {
		t.Fatalf("ExpertSender got %d POST /orders, want 1", len(posts))
	}
	var body ExpertSenderOrdersRequest
	if err := json.Unmarshal(posts[0].Body, &body); err != nil || len(body.Data) != 1 || body.Data[0].ID != "44212809" ||
		body.Data[0].Status != "placed" || body.Mode != "AddOrReplace" || body.Data[0].Currency != "INR" {
		t.Errorf("POST /orders body %s (%v)", posts[0].Body, err)
	}
	// A ticket.updated of that ticket: the status PUT goes after the POST.
	st := l.ingest("tk-1", "ORDER-44212809", confirmed, "2026-01-13 10:00:00")
	l.waitDelivery(st.Deliveries[0].ID, bridge.Done)
	reqs := l.es.Requests()
	if len(reqs) != 2 || reqs[0].Path != "/orders" || reqs[1].Path != "/orders/status" || reqs[1].Status != "paid" {
		t.Errorf("ExpertSender requests %v, want POST /orders then PUT /orders/status paid", paths(reqs))
	}
}

func paths(reqs []fake.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Method+" "+r.Path+" "+r.Status)
	}
	return out
}

// TestIntakeRepeatAndUpdate: the same content again is a duplicate (nothing
// new, the first intake's id); different content is an update that
// registers the order again with the newest status decided for ExpertSender
// (never back to placed) and makes no second ticket.
func TestIntakeRepeatAndUpdate(t *testing.T) {
	l := newLoop(t, "")
	l.start(Policy{Initial: time.Millisecond})
	seed := l.seedBody(t)
	first := l.take(t, seed)
	l.waitDelivery(delivery(t, first, bridge.KindTicket).ID, bridge.Done)
	l.waitDelivery(delivery(t, first, bridge.KindOrder).ID, bridge.Done)
	st := l.ingest("tk-1", "ORDER-44212809", confirmed, "2026-01-13 10:00:00")
	l.waitDelivery(st.Deliveries[0].ID, bridge.Done)

	// The same order in another layout: the same canonical content.
	var again bytes.Buffer
	if err := json.Indent(&again, seed, "", "    "); err != nil {
		t.Fatal(err)
	}
	dup := l.take(t, again.Bytes())
	if !dup.Duplicate || dup.IntakeID != first.IntakeID || dup.State != bridge.IntakeNew || len(dup.Deliveries) != 0 {
		t.Errorf("repeat = %+v, want a duplicate of %s (state new) with no delivery", dup, first.IntakeID)
	}
	upd := l.take(t, withTotal(seed, "1200.0"))
	if upd.Duplicate || upd.State != bridge.IntakeUpdated || upd.IntakeID == first.IntakeID {
		t.Fatalf("update = %+v", upd)
	}
	tk := delivery(t, upd, bridge.KindTicket)
	if tk.State != bridge.Done || tk.Result != bridge.ResultAlreadyCreated {
		t.Errorf("update's ticket step %s %q, want done already_created", tk.State, tk.Result)
	}
	l.waitDelivery(delivery(t, upd, bridge.KindOrder).ID, bridge.Done)
	if n := len(l.ds.On("/tickets")); n != 1 {
		t.Errorf("%d ticket requests, want 1 (no second ticket)", n)
	}
	if n := len(l.ds.On("/messagesTemplates")); n != 1 {
		t.Errorf("%d uploads, want 1", n)
	}
	posts := onPathES(l.es.Requests(), http.MethodPost, "/orders")
	if len(posts) != 2 {
		t.Fatalf("%d POST /orders, want 2", len(posts))
	}
	var body ExpertSenderOrdersRequest
	_ = json.Unmarshal(posts[1].Body, &body)
	if body.Data[0].Status != "paid" || body.Data[0].TotalValue.String() != "1200.0" {
		t.Errorf("refresh sent status %q total %s, want paid (the newest status decided) and 1200.0", body.Data[0].Status, body.Data[0].TotalValue)
	}
	// Changed back: an update again (compared with the latest intake).
	back := l.take(t, seed)
	if back.Duplicate || back.State != bridge.IntakeUpdated {
		t.Errorf("changed back = %+v, want an update", back)
	}
}

// TestIntakeOrderIDOnlyIsFetched: {"orderId"} alone fetches the order from
// the order system (a delivery), takes the document in as an intake of
// source fetch, and that intake creates the ticket and the upsert; the
// same orderId again fetches again and the unchanged document is a
// duplicate; an unknown order's 404 is permanent.
func TestIntakeOrderIDOnlyIsFetched(t *testing.T) {
	l := newLoop(t, "")
	l.os.Set("44212809", l.seedBody(t))
	l.start(Policy{Initial: time.Millisecond})
	res := l.take(t, []byte(`{"orderId": 44212809}`))
	if res.State != bridge.IntakeFetch || res.Duplicate || len(res.Deliveries) != 1 {
		t.Fatalf("id-only intake = %+v", res)
	}
	f := l.waitDelivery(delivery(t, res, bridge.KindFetch).ID, bridge.Done)
	if f.Target != "order_system" || !strings.Contains(f.Result, "taken in as intake") {
		t.Errorf("fetch delivery %s result %q", f.Target, f.Result)
	}
	rec := l.orderIntake(t, "44212809")
	if len(rec.IntakeIDs) != 2 || rec.LatestIntakeID != rec.IntakeIDs[1] {
		t.Fatalf("record %+v", rec)
	}
	fetched, raw, err := l.db.GetIntake(context.Background(), rec.LatestIntakeID)
	if err != nil || fetched.Source != bridge.SourceFetch || fetched.FetchedBy != f.ID || fetched.State != bridge.IntakeNew ||
		string(raw) != string(l.seedBody(t)) {
		t.Fatalf("fetched intake %+v, %v (raw kept: %v)", fetched, err, string(raw) == string(l.seedBody(t)))
	}
	var tkID string
	for _, id := range fetched.DeliveryIDs {
		d, _ := l.db.GetDelivery(context.Background(), id)
		if d.Kind == bridge.KindTicket {
			tkID = d.ID
		}
	}
	l.waitDelivery(tkID, bridge.Done)
	again := l.take(t, []byte(`{"orderId":"44212809"}`))
	if again.Duplicate || again.State != bridge.IntakeFetch {
		t.Errorf("id-only again = %+v, want another fetch (never a duplicate by itself)", again)
	}
	f2 := l.waitDelivery(delivery(t, again, bridge.KindFetch).ID, bridge.Done)
	if !strings.Contains(f2.Result, "duplicate") {
		t.Errorf("second fetch result %q, want the unchanged document a duplicate", f2.Result)
	}
	if n := len(l.ds.On("/tickets")); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	unknown := l.take(t, []byte(`{"orderId":"999"}`))
	d := l.waitTerminal(delivery(t, unknown, bridge.KindFetch).ID)
	if d.State != bridge.Dead || len(d.Attempts) != 1 || !strings.Contains(d.Reason, "order unknown") {
		t.Errorf("unknown order's fetch: %s after %d attempts, %q; want dead at once (404 is permanent)", d.State, len(d.Attempts), d.Reason)
	}
}

// TestTicketDeliveryOutcomes: what Digishare's answers do to the ticket
// delivery: a 422 is dead with the fields' reasons, a 429 waits its
// Retry-After and then creates the ticket, and a phone that does not parse
// sends no ticket at all.
func TestTicketDeliveryOutcomes(t *testing.T) {
	t.Run("422", func(t *testing.T) {
		l := newLoop(t, "")
		l.ds.Tickets = func(n int, body []byte) (fake.Answer, bool) {
			return fake.Answer{Code: 422, Body: `{"message":"The given data was invalid.","errors":{"information.third.wa_id":["The wa id is invalid."]}}`}, true
		}
		l.start(Policy{Initial: time.Millisecond})
		res := l.take(t, l.seedBody(t))
		d := l.waitTerminal(delivery(t, res, bridge.KindTicket).ID)
		if d.State != bridge.Dead || len(d.Attempts) != 1 || !strings.Contains(d.Reason, "wa id is invalid") || d.Result == bridge.ResultOutcomeUnknown {
			t.Errorf("422: %s, %d attempts, reason %q result %q; want dead at once with the field's reason", d.State, len(d.Attempts), d.Reason, d.Result)
		}
		if rec := l.orderIntake(t, "44212809"); rec.Ticket != nil || rec.MediaID != "media-1" {
			t.Errorf("record after 422: ticket %+v media %q; want no ticket, the upload recorded", rec.Ticket, rec.MediaID)
		}
	})
	t.Run("429", func(t *testing.T) {
		l := newLoop(t, "")
		l.ds.Tickets = func(n int, body []byte) (fake.Answer, bool) {
			return fake.Answer{Code: 429, Header: map[string]string{"Retry-After": "1"}, Body: `{"message":"Too Many Attempts."}`}, n == 1
		}
		l.start(Policy{Initial: time.Millisecond})
		res := l.take(t, l.seedBody(t))
		id := delivery(t, res, bridge.KindTicket).ID
		d := l.waitFor(id, "a retry", func(d *bridge.Delivery) bool { return len(d.Attempts) == 1 })
		if d.State != bridge.Pending && d.State != bridge.InFlight {
			t.Fatalf("after 429: %s (%q)", d.State, d.Reason)
		}
		if wait := d.NextAttemptAt.Sub(d.Attempts[0].At); wait < 900*time.Millisecond {
			t.Errorf("next attempt %v after the 429, want its Retry-After (1s)", wait)
		}
		d = l.waitDelivery(id, bridge.Done)
		if len(d.Attempts) != 2 || len(l.ds.On("/messagesTemplates")) != 1 {
			t.Errorf("done after %d attempts and %d uploads, want 2 and 1 (the media id was recorded: no second upload)",
				len(d.Attempts), len(l.ds.On("/messagesTemplates")))
		}
	})
	t.Run("phone", func(t *testing.T) {
		l := newLoop(t, "")
		l.start(Policy{Initial: time.Millisecond})
		body := strings.ReplaceAll(string(l.seedBody(t)), `"contactPhone": "9711166382"`, `"contactPhone": "12"`)
		res := l.take(t, []byte(body))
		d := l.waitTerminal(delivery(t, res, bridge.KindTicket).ID)
		if d.State != bridge.Dead || !strings.Contains(d.Reason, "wa_id") {
			t.Errorf("unparseable phone: %s %q, want dead naming third.wa_id", d.State, d.Reason)
		}
		if n := len(l.ds.On("/tickets")); n != 0 {
			t.Errorf("%d ticket requests, want none", n)
		}
		up := l.waitTerminal(delivery(t, res, bridge.KindOrder).ID)
		var sent ExpertSenderOrdersRequest
		if posts := onPathES(l.es.Requests(), http.MethodPost, "/orders"); len(posts) == 1 {
			_ = json.Unmarshal(posts[0].Body, &sent)
		}
		if up.State != bridge.Done || len(sent.Data) != 1 || sent.Data[0].Customer.Phone != "" || sent.Data[0].Customer.Email == "" {
			t.Errorf("upsert %s, sent %+v; want done with the email and no phone", up.State, sent.Data)
		}
	})
}

// TestTicketTokenRenewal: with client credentials, a 401 renews the token
// once and the ticket is created in the same attempt.
func TestTicketTokenRenewal(t *testing.T) {
	l := newLoopAuth(t, "client_id: cid\n    client_secret: csecret-4567", "")
	l.start(Policy{Initial: time.Millisecond})
	l.ds.Token = "not-a-personal-token"
	l.ds.RejectTokens = 1 // the first token stops working at its first use
	res := l.take(t, l.seedBody(t))
	d := l.waitDelivery(delivery(t, res, bridge.KindTicket).ID, bridge.Done)
	if len(d.Attempts) != 1 || l.ds.TokenCalls() != 2 {
		t.Errorf("done after %d attempts with %d token requests, want 1 attempt and 2 tokens (renewed after the 401)", len(d.Attempts), l.ds.TokenCalls())
	}
}

// TestTicketTimeoutIsNotResent: a ticket request that times out after
// Digishare received it is dead with outcome_unknown and what to look for,
// never sent again by itself; an operator's retry sends it.
func TestTicketTimeoutIsNotResent(t *testing.T) {
	l := newLoop(t, "")
	hold := make(chan struct{})
	l.ds.Hold = hold
	l.cfg.Targets.Digishare.Timeout = 300_000_000 // 300ms
	l.start(Policy{Initial: time.Millisecond, MaxAttempts: 5})
	res := l.take(t, l.seedBody(t))
	id := delivery(t, res, bridge.KindTicket).ID
	d := l.waitTerminal(id)
	want := "outcome unknown: look for a ticket with external_id ORDER-44212809 in Digishare, then retry or leave it"
	if d.State != bridge.Dead || d.Result != bridge.ResultOutcomeUnknown || d.Reason != want || len(d.Attempts) != 1 {
		t.Fatalf("timed-out ticket: %s result %q reason %q, %d attempts; want dead, outcome_unknown, %q, 1",
			d.State, d.Result, d.Reason, len(d.Attempts), want)
	}
	// Another intake of the order does not send it again either.
	changed := withTotal(l.seedBody(t), "999")
	upd := l.take(t, changed)
	for _, x := range upd.Deliveries {
		if x.Kind == bridge.KindTicket {
			t.Errorf("an update created ticket delivery %s (%s) while one of unknown outcome is dead", x.ID, x.State)
		}
	}
	l.waitDelivery(delivery(t, upd, bridge.KindOrder).ID, bridge.Done) // the worker moved on
	if n := len(l.ds.On("/tickets")); n != 1 {
		t.Fatalf("%d ticket requests, want 1 (not resent by itself)", n)
	}
	close(hold)
	l.ds.Hold = nil
	nd, err := bridge.RetryDelivery(context.Background(), l.db, id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l.waitDelivery(nd.ID, bridge.Done)
	if n := len(l.ds.On("/tickets")); n != 2 || l.ds.TicketsFor("ORDER-44212809") != 1 {
		t.Errorf("after the operator's retry: %d requests, %d tickets; want 2 and 1", n, l.ds.TicketsFor("ORDER-44212809"))
	}
	if _, err := bridge.RetryDelivery(context.Background(), l.db, id, time.Now()); err == nil || !strings.Contains(err.Error(), "not dead") && !strings.Contains(err.Error(), "ticket") {
		t.Errorf("retrying the first again: %v, want a conflict", err)
	}
}

// TestTicketResendUnknown: with resend_unknown the same timeout is retried.
func TestTicketResendUnknown(t *testing.T) {
	l := newLoop(t, "resend_unknown: true")
	l.cfg.Targets.Digishare.Timeout = 300_000_000
	l.ds.Tickets = func(n int, body []byte) (fake.Answer, bool) { return fake.Answer{Code: 502, Body: `{}`}, n == 1 }
	l.start(Policy{Initial: time.Millisecond, MaxAttempts: 5})
	res := l.take(t, l.seedBody(t))
	d := l.waitDelivery(delivery(t, res, bridge.KindTicket).ID, bridge.Done)
	if len(d.Attempts) != 2 {
		t.Errorf("done after %d attempts, want 2 (the 502 retried)", len(d.Attempts))
	}
}

// TestLeftoverTicketClaimIsDead: a ticket delivery whose durable claim was
// left by a process that died is dead with outcome_unknown at the next
// start, and nothing is sent.
func TestLeftoverTicketClaimIsDead(t *testing.T) {
	l := newLoop(t, "")
	res := l.take(t, l.seedBody(t))
	tk := delivery(t, res, bridge.KindTicket)
	if err := l.db.Claim(context.Background(), &tk, true); err != nil { // committed, then "the process dies"
		t.Fatal(err)
	}
	if err := l.db.Close(); err != nil {
		t.Fatal(err)
	}
	l.open()
	l.start(Policy{Initial: time.Millisecond})
	d := l.waitTerminal(tk.ID)
	if d.State != bridge.Dead || d.Result != bridge.ResultOutcomeUnknown || !strings.Contains(d.Reason, "external_id ORDER-44212809") {
		t.Errorf("leftover claim: %s %q %q", d.State, d.Result, d.Reason)
	}
	l.waitDelivery(delivery(t, res, bridge.KindOrder).ID, bridge.Done)
	if n := len(l.ds.On("/tickets")) + len(l.ds.On("/messagesTemplates")); n != 0 {
		t.Errorf("%d requests to Digishare, want none", n)
	}
}

// TestUpsertGoesBeforeQueuedStatuses: when the intake arrives after status
// deliveries were queued, the upsert goes ahead of those not yet started
// (the one in flight finishes first).
func TestUpsertGoesBeforeQueuedStatuses(t *testing.T) {
	l := newLoop(t, "")
	release := make(chan struct{})
	arrived := make(chan struct{}, 8)
	var first sync.Once
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		held := false
		first.Do(func() { held = true })
		if held {
			arrived <- struct{}{}
			<-release
		}
		// Forward to the recording fake, so its order is the order of arrival here.
		req, _ := http.NewRequest(r.Method, l.es.URL+r.URL.Path, bytes.NewReader(body))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(es.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	l.cfg.Targets.ExpertSender.BaseURL = es.URL
	l.start(Policy{Initial: time.Millisecond, Concurrency: 4})
	s1 := l.ingest("t1", "ORDER-44212809", awaiting, "2026-01-13 10:00:00")
	<-arrived // the first PUT is in flight, held
	s2 := l.ingest("t1", "ORDER-44212809", confirmed, "2026-01-13 11:00:00")
	res := l.take(t, l.seedBody(t))
	close(release)
	l.waitDelivery(s2.Deliveries[0].ID, bridge.Done)
	l.waitDelivery(s1.Deliveries[0].ID, bridge.Done)
	l.waitDelivery(delivery(t, res, bridge.KindOrder).ID, bridge.Done)
	got := paths(l.es.Requests())
	want := []string{"PUT /orders/status placed", "POST /orders ", "PUT /orders/status paid"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ExpertSender got %v, want %v", got, want)
	}
}

// TestNewerUpsertSupersedesWaitingOne: an upsert waiting to retry is
// superseded by a newer one; a status never supersedes an upsert, and waits
// behind it.
func TestNewerUpsertSupersedesWaitingOne(t *testing.T) {
	l := newLoop(t, "")
	posts := 0
	l.es.Respond = func(r fake.Request) fake.Answer {
		if r.Path == "/orders" {
			posts++
			if posts == 1 {
				return fake.Answer{Code: 503, Header: map[string]string{"Retry-After": "3600"}, Body: "{}"}
			}
		}
		return fake.Answer{Code: 200, Body: "{}"}
	}
	l.start(Policy{Initial: time.Millisecond, Max: time.Hour})
	first := l.take(t, l.seedBody(t))
	old := delivery(t, first, bridge.KindOrder)
	l.waitFor(old.ID, "a retry", func(d *bridge.Delivery) bool { return len(d.Attempts) == 1 })
	st := l.ingest("tk-1", "ORDER-44212809", confirmed, "2026-01-13 10:00:00")
	// The status waits behind the upsert that waits an hour: never sent before it.
	changed := withTotal(l.seedBody(t), "1234")
	upd := l.take(t, changed)
	if d := l.waitTerminal(old.ID); d.State != bridge.Superseded {
		t.Errorf("older upsert %s (%q), want superseded", d.State, d.Reason)
	}
	l.waitDelivery(delivery(t, upd, bridge.KindOrder).ID, bridge.Done)
	l.waitDelivery(st.Deliveries[0].ID, bridge.Done)
	got := paths(l.es.Requests())
	want := []string{"POST /orders ", "POST /orders ", "PUT /orders/status paid"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ExpertSender got %v, want %v", got, want)
	}
}

// TestRetryRulesByKind: the 409 rule compares deliveries of the same kind.
func TestRetryRulesByKind(t *testing.T) {
	l := newLoop(t, "")
	l.es.Respond = func(r fake.Request) fake.Answer {
		if r.Path == "/orders" {
			return fake.Answer{Code: 400, Body: `{"errors":["bad"]}`}
		}
		return fake.Answer{Code: 200, Body: "{}"}
	}
	l.start(Policy{Initial: time.Millisecond})
	first := l.take(t, l.seedBody(t))
	tk := l.waitDelivery(delivery(t, first, bridge.KindTicket).ID, bridge.Done)
	up1 := l.waitDelivery(delivery(t, first, bridge.KindOrder).ID, bridge.Dead)
	changed := withTotal(l.seedBody(t), "1")
	upd := l.take(t, changed)
	up2 := l.waitDelivery(delivery(t, upd, bridge.KindOrder).ID, bridge.Dead)
	ctx := context.Background()
	if _, err := bridge.RetryDelivery(ctx, l.db, up1.ID, time.Now()); err == nil || !strings.Contains(err.Error(), "newer ExpertSender order delivery") {
		t.Errorf("retry of the older dead upsert: %v, want 409 (a newer upsert exists)", err)
	}
	l.es.Respond = nil
	r, err := bridge.RetryDelivery(ctx, l.db, up2.ID, time.Now())
	if err != nil || r.Kind != bridge.KindOrder || r.IntakeID != up2.IntakeID || r.RetryOf != up2.ID {
		t.Fatalf("retry of the newest dead upsert: %+v, %v", r, err)
	}
	l.waitDelivery(r.ID, bridge.Done)
	if d, _ := l.db.GetDelivery(ctx, up2.ID); d.ResolvedBy != r.ID {
		t.Errorf("dead upsert resolved by %q, want %s", d.ResolvedBy, r.ID)
	}
	// A ticket is refused while the ticket exists, whatever its delivery.
	if err := l.db.Record(ctx, tk.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "test"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.RetryDelivery(ctx, l.db, tk.ID, time.Now()); err == nil || !strings.Contains(err.Error(), "has its ticket already") {
		t.Errorf("retry of a ticket delivery of an order with a ticket: %v, want 409", err)
	}
}

// TestDeadReplayLeavesUnknownTicketsOut: replay --dead retries dead intake
// deliveries but leaves tickets of unknown outcome out (counted) unless
// include_unknown.
func TestDeadReplayLeavesUnknownTicketsOut(t *testing.T) {
	l := newLoop(t, "")
	l.ds.Tickets = func(n int, body []byte) (fake.Answer, bool) { return fake.Answer{Code: 500, Body: `{}`}, n == 1 }
	l.es.Respond = func(r fake.Request) fake.Answer { return fake.Answer{Code: 400, Body: `{"errors":["x"]}`} }
	l.start(Policy{Initial: time.Millisecond})
	res := l.take(t, l.seedBody(t))
	tk := l.waitTerminal(delivery(t, res, bridge.KindTicket).ID)
	l.waitDelivery(delivery(t, res, bridge.KindOrder).ID, bridge.Dead)
	if !tk.UnknownOutcome() {
		t.Fatalf("ticket after a 500: %s %q", tk.State, tk.Result)
	}
	l.es.Respond = nil
	store := bridge.Store{Backend: l.db}
	sum, err := store.Replay(context.Background(), bridge.ReplaySelector{Dead: true}, l.table, bridge.ReplayOptions{}, time.Now())
	if err != nil || sum.Retried != 1 || sum.LeftOutUnknown != 1 {
		t.Fatalf("dead replay = %+v, %v; want the upsert retried and the ticket left out", sum, err)
	}
	sum, err = store.Replay(context.Background(), bridge.ReplaySelector{Dead: true}, l.table, bridge.ReplayOptions{IncludeUnknown: true}, time.Now())
	if err != nil || sum.Retried != 1 || sum.LeftOutUnknown != 0 || len(sum.Requests) != 1 || sum.Requests[0].Kind != bridge.KindTicket {
		t.Fatalf("dead replay with include_unknown = %+v, %v; want the ticket retried", sum, err)
	}
	rec := l.orderIntake(t, "44212809")
	l.waitDelivery(rec.TicketDeliveryID, bridge.Done)
	if l.ds.TicketsFor("ORDER-44212809") != 1 {
		t.Errorf("%d tickets, want 1", l.ds.TicketsFor("ORDER-44212809"))
	}
}
