package outbound

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/orders"
	"github.com/statusbridge/statusbridge/ticket"
)

const (
	testPAT          = "pat-secret-1234"
	testClientSecret = "csecret-4567"
)

// digishareConfig returns targets.digishare as a config file with the two
// required ids gets it, pointed at base with a personal access token.
func digishareConfig(t *testing.T, base string) config.Digishare {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`order_id: { strip_prefix: ORDER- }
targets:
  digishare:
    base_url: %q
    token: %s
    timeout: 2s
    ticket: { type_ticket_id: npvrxamq9l94y8dz, ticket_status_id: x9q3wrlv0m7vzea8 }
`, base, testPAT)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return *cfg.Targets.Digishare
}

func clientCredentials(c config.Digishare) config.Digishare {
	c.Token, c.ClientID, c.ClientSecret = "", "cid", testClientSecret
	return c
}

func seedOrder(t *testing.T) *orders.Order {
	t.Helper()
	raw, err := os.ReadFile("../orders/testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	o, err := orders.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func decodeOrder(t *testing.T, raw string) *orders.Order {
	t.Helper()
	o, err := orders.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("Decode(%s) = %v", raw, err)
	}
	return o
}

func onPath(reqs []fake.Request, path string) []fake.Request {
	var out []fake.Request
	for _, r := range reqs {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func TestDigishareTicketWithPersonalToken(t *testing.T) {
	srv := fake.NewServer(t, fake.Answer{Code: 201, Body: `{"data":{"id":"tk1","ticket_number":342106,"created_at":"2026-01-13T16:29:51.000000Z"}}`},
		fake.Answer{Code: 201, Body: `{"id":"tk2","ticket_number":"342107"}`})
	cfg := digishareConfig(t, srv.URL+"/v1")
	api := NewDigishareAPI(cfg, "MA", 2)
	o := seedOrder(t)

	got, resp, err := api.SendTicket(t.Context(), o, "MEDIA1")
	if err != nil {
		t.Fatalf("SendTicket = %v", err)
	}
	if got.ID != "tk1" || got.Number != "342106" || got.ExternalID != "ORDER-44212809" || resp.StatusCode != 201 {
		t.Errorf("SendTicket = %+v, %+v; want tk1, 342106 (data.*), ORDER-44212809", got, resp)
	}
	got, _, err = api.SendTicket(t.Context(), o, "")
	if err != nil || got.ID != "tk2" || got.Number != "342107" {
		t.Errorf("second SendTicket = %+v, %v; want tk2, 342107 (top level)", got, err)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v1/tickets" || r.Header.Get("Authorization") != "Bearer "+testPAT ||
		r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s, Authorization %q, Content-Type %q", r.Method, r.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"))
	}
	want, err := ticket.Render(cfg.Ticket, o, "MA", "MEDIA1")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Body) != string(want.Body) {
		t.Errorf("body =\n%s\nwant\n%s", r.Body, want.Body)
	}
	var b struct {
		CreateThirdData bool `json:"create_third_data"`
		Information     struct {
			Third        map[string]string `json:"third"`
			CampaignData map[string]any    `json:"campaign_data"`
		} `json:"information"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatal(err)
	}
	doc, _ := b.Information.CampaignData["invoice_document"].(map[string]any)
	if !b.CreateThirdData || b.Information.Third["wa_id"] != "919711166382" || doc["provider"] != "digishare" || doc["id"] != "MEDIA1" {
		t.Errorf("body fields: create_third_data %v, wa_id %q, invoice_document %v", b.CreateThirdData, b.Information.Third["wa_id"], doc)
	}
	if strings.Contains(string(reqs[1].Body), "invoice_document") {
		t.Errorf("a ticket without media id sent an invoice: %s", reqs[1].Body)
	}
}

func TestDigishareTicketNotRenderedSendsNothing(t *testing.T) {
	srv := fake.NewServer(t)
	api := NewDigishareAPI(digishareConfig(t, srv.URL), "MA", 1)
	_, _, err := api.SendTicket(t.Context(), decodeOrder(t, `{"orderId":"1","shippingAddress":{"contactPhone":"garbage"}}`), "")
	var oe *Error
	if !errors.As(err, &oe) || !oe.Permanent || !strings.Contains(oe.Msg, "third.wa_id") {
		t.Errorf("SendTicket with a bad phone = %v, want a permanent failure naming third.wa_id", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent for a ticket that cannot be rendered", n)
	}
}

// tokenFake is a Digishare that issues tok-1, tok-2, … from /oauth/token and
// accepts a ticket only with a token it considers valid.
type tokenFake struct {
	*fake.Server
	mu      sync.Mutex
	issued  int
	expires int             // expires_in of each token
	revoked map[string]bool // tokens answered 401
	always  bool            // answer every ticket 401
}

func newTokenFake(t *testing.T) *tokenFake {
	f := &tokenFake{Server: fake.NewServer(t), expires: 3600, revoked: map[string]bool{}}
	f.Respond = func(r fake.Request) fake.Answer {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.Path {
		case "/oauth/token":
			f.issued++
			return fake.Answer{Body: fmt.Sprintf(`{"token_type":"Bearer","expires_in":%d,"access_token":"tok-%d"}`, f.expires, f.issued)}
		case "/tickets", "/messagesTemplates":
			tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if f.always || f.revoked[tok] || tok != fmt.Sprintf("tok-%d", f.issued) {
				return fake.Answer{Code: 401, Body: `{"message":"Unauthenticated."}`}
			}
			return fake.Answer{Code: 201, Body: `{"data":{"id":"tk","ticket_number":"1"}}`}
		}
		return fake.Answer{Code: 404}
	}
	return f
}

func (f *tokenFake) tokenCalls() int { return len(onPath(f.Requests(), "/oauth/token")) }

func TestDigishareClientCredentials(t *testing.T) {
	f := newTokenFake(t)
	api := NewDigishareAPI(clientCredentials(digishareConfig(t, f.URL)), "MA", 2)
	now := time.Date(2026, 1, 13, 12, 0, 0, 0, time.UTC)
	api.now = func() time.Time { return now }
	body := []byte(`{"external_id":"ORDER-1"}`)

	for i := range 2 {
		if _, _, err := api.CreateTicket(t.Context(), body); err != nil {
			t.Fatalf("CreateTicket %d = %v", i, err)
		}
	}
	if n := f.tokenCalls(); n != 1 {
		t.Errorf("%d token requests for two tickets, want 1 (cached)", n)
	}
	tr := onPath(f.Requests(), "/oauth/token")[0]
	if string(tr.Body) != `{"grant_type":"client_credentials","client_id":"cid","client_secret":"`+testClientSecret+`"}` ||
		tr.Method != http.MethodPost || tr.Header.Get("Content-Type") != "application/json" {
		t.Errorf("token request %s %q (Content-Type %q)", tr.Method, tr.Body, tr.Header.Get("Content-Type"))
	}

	// Renewed before expires_in runs out: at 3300 s of a 3600 s token.
	now = now.Add(3300 * time.Second)
	if _, _, err := api.CreateTicket(t.Context(), body); err != nil {
		t.Fatal(err)
	}
	if n := f.tokenCalls(); n != 2 {
		t.Errorf("%d token requests near expiry, want 2 (renewed early)", n)
	}
	if last := onPath(f.Requests(), "/tickets"); last[len(last)-1].Header.Get("Authorization") != "Bearer tok-2" {
		t.Errorf("ticket sent with %q, want the renewed tok-2", last[len(last)-1].Header.Get("Authorization"))
	}

	// A 401 renews the token once and sends again.
	f.mu.Lock()
	f.revoked["tok-2"] = true
	f.mu.Unlock()
	before := len(onPath(f.Requests(), "/tickets"))
	if _, _, err := api.CreateTicket(t.Context(), body); err != nil {
		t.Fatalf("CreateTicket after a revoked token = %v, want renewed and sent", err)
	}
	if n, sent := f.tokenCalls(), len(onPath(f.Requests(), "/tickets"))-before; n != 3 || sent != 2 {
		t.Errorf("after a 401: %d token requests (want 3), %d ticket posts (want 2)", n, sent)
	}

	// A second 401 is permanent: one renewal only.
	f.mu.Lock()
	f.always = true
	f.mu.Unlock()
	before = len(onPath(f.Requests(), "/tickets"))
	_, resp, err := api.CreateTicket(t.Context(), body)
	var oe *Error
	if !errors.As(err, &oe) || !oe.Permanent || resp.StatusCode != 401 {
		t.Fatalf("CreateTicket refused twice = %v (%d), want permanent 401", err, resp.StatusCode)
	}
	if n, sent := f.tokenCalls(), len(onPath(f.Requests(), "/tickets"))-before; n != 4 || sent != 2 {
		t.Errorf("refused twice: %d token requests (want 4), %d ticket posts (want 2)", n, sent)
	}
	if strings.Contains(oe.Msg, "tok-") || strings.Contains(oe.Msg, testClientSecret) {
		t.Errorf("message shows a secret: %s", oe.Msg)
	}
}

func TestDigishareTokenWithoutExpiryIsKept(t *testing.T) {
	f := newTokenFake(t)
	f.expires = 0
	api := NewDigishareAPI(clientCredentials(digishareConfig(t, f.URL)), "MA", 1)
	now := time.Now()
	api.now = func() time.Time { return now }
	for range 2 {
		if _, _, err := api.CreateTicket(t.Context(), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		now = now.Add(1000 * time.Hour)
	}
	if n := f.tokenCalls(); n != 1 {
		t.Errorf("%d token requests, want 1 (no expires_in: kept until a 401)", n)
	}
}

func TestDigishareTokenEndpointFailures(t *testing.T) {
	for _, tc := range []struct {
		code      int
		body      string
		permanent bool
	}{
		{401, `{"message":"invalid client ` + testClientSecret + `"}`, true},
		{400, `{"error":"invalid_grant"}`, true},
		{503, ``, false},
		{200, `{"token_type":"Bearer"}`, true},
	} {
		srv := fake.NewServer(t, fake.Answer{Code: tc.code, Body: tc.body})
		api := NewDigishareAPI(clientCredentials(digishareConfig(t, srv.URL)), "MA", 1)
		_, _, err := api.CreateTicket(t.Context(), []byte(`{}`))
		var oe *Error
		if !errors.As(err, &oe) || oe.Permanent != tc.permanent {
			t.Errorf("token answer %d %s: err %v, want permanent=%v", tc.code, tc.body, err, tc.permanent)
			continue
		}
		if strings.Contains(oe.Msg, testClientSecret) {
			t.Errorf("token failure shows the client secret: %s", oe.Msg)
		}
		if n := len(onPath(srv.Requests(), "/tickets")); n != 0 {
			t.Errorf("token answer %d: the ticket was sent without a token", tc.code)
		}
	}
}

func TestDigishareAnswers(t *testing.T) {
	type want int
	const (
		done want = iota
		permanentFail
		rejected
		retry
		unknown
	)
	for _, tc := range []struct {
		code       int
		body       string
		header     map[string]string
		ticket     want // CreateTicket
		upload     want // UploadMedia
		retryAfter time.Duration
	}{
		{201, `{"data":{"id":"x","ticket_number":"1"}}`, nil, done, done, 0},
		{200, `{"id":"x"}`, nil, done, done, 0},
		{422, `{"message":"The given data was invalid.","errors":{"type_ticket_id":["The selected type ticket id is invalid."],"information.third.wa_id":["The wa id must be digits."]}}`, nil, rejected, rejected, 0},
		{401, `{"message":"Unauthenticated."}`, nil, permanentFail, permanentFail, 0},
		{403, `{"message":"Forbidden"}`, nil, permanentFail, permanentFail, 0},
		{404, ``, nil, permanentFail, permanentFail, 0},
		{302, ``, map[string]string{"Location": "https://elsewhere.example/"}, permanentFail, permanentFail, 0},
		{429, `{"message":"Too Many Attempts."}`, map[string]string{"Retry-After": "7", "X-RateLimit-Remaining": "0"}, retry, retry, 7 * time.Second},
		{503, ``, map[string]string{"Retry-After": "2"}, retry, retry, 2 * time.Second},
		{408, ``, nil, retry, retry, 0},
		{500, `{"message":"Server Error","request_id":"r-1"}`, nil, unknown, retry, 0},
		{502, `<html>Bad Gateway</html>`, nil, unknown, retry, 0},
		{504, ``, nil, unknown, retry, 0},
	} {
		srv := fake.NewServer(t)
		srv.Default = fake.Answer{Code: tc.code, Body: tc.body, Header: tc.header}
		api := NewDigishareAPI(digishareConfig(t, srv.URL), "MA", 1)
		_, tresp, terr := api.CreateTicket(t.Context(), []byte(`{"external_id":"ORDER-1"}`))
		_, uresp, uerr := api.UploadMedia(t.Context(), &Invoice{Data: []byte("%PDF-1.4"), MIME: "application/pdf", Extension: "pdf"}, "invoice-1")
		for _, step := range []struct {
			name string
			err  error
			resp Response
			want want
		}{{"ticket", terr, tresp, tc.ticket}, {"upload", uerr, uresp, tc.upload}} {
			var (
				oe  *Error
				ue  *UnknownOutcomeError
				rej *RejectedError
			)
			isErr, isUnknown, isRejected := errors.As(step.err, &oe), errors.As(step.err, &ue), errors.As(step.err, &rej)
			ok := false
			switch step.want {
			case done:
				ok = step.err == nil
			case permanentFail:
				ok = isErr && oe.Permanent && !isUnknown && !isRejected && oe.StatusCode == tc.code
			case rejected:
				ok = isRejected && isErr && oe.Permanent && oe.StatusCode == 422 && !isUnknown
			case retry:
				ok = isErr && !oe.Permanent && !isUnknown && oe.RetryAfter == tc.retryAfter
			case unknown:
				// Unknown, and permanent to a caller that only knows *Error.
				ok = isUnknown && ue.StatusCode == tc.code && isErr && oe.Permanent
			}
			if !ok {
				t.Errorf("%s answered %d: err %T %v, want kind %d", step.name, tc.code, step.err, step.err, step.want)
			}
			if step.resp.StatusCode != tc.code {
				t.Errorf("%s answered %d: Response.StatusCode %d", step.name, tc.code, step.resp.StatusCode)
			}
			if isRejected {
				if len(rej.Errors) != 2 || rej.Errors["type_ticket_id"][0] != "The selected type ticket id is invalid." || rej.Message != "The given data was invalid." {
					t.Errorf("%s 422: errors kept = %v, message %q", step.name, rej.Errors, rej.Message)
				}
				if !strings.Contains(oe.Msg, "information.third.wa_id: The wa id must be digits.") || !strings.Contains(oe.Msg, "type_ticket_id: The selected") {
					t.Errorf("%s 422 message %q does not name the errors", step.name, oe.Msg)
				}
			}
		}
		if n := len(srv.Requests()); n != 2 {
			t.Errorf("answer %d: %d requests, want 2 (one per step, nothing resent, no redirect followed)", tc.code, n)
		}
	}
}

func TestDigishareSecretsRedacted(t *testing.T) {
	srv := fake.NewServer(t)
	srv.Respond = func(r fake.Request) fake.Answer {
		return fake.Answer{Code: 500, Body: `{"echo":"` + r.Header.Get("Authorization") + `"}`}
	}
	api := NewDigishareAPI(digishareConfig(t, srv.URL), "MA", 1)
	_, resp, err := api.CreateTicket(t.Context(), []byte(`{}`))
	if err == nil || strings.Contains(err.Error(), testPAT) || strings.Contains(resp.Excerpt, testPAT) || !strings.Contains(resp.Excerpt, "***") {
		t.Errorf("the token leaked: err %v, excerpt %q", err, resp.Excerpt)
	}
}

// hangingTickets is a Digishare whose /tickets reads the request, reports it
// and then does what hang says: "wait" past any timeout, or "cut" the
// connection.
func hangingTickets(t *testing.T, hang string) (*httptest.Server, <-chan []byte) {
	received := make(chan []byte, 4)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- body
		switch hang {
		case "wait":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case "cut":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, received
}

func TestDigishareTicketUnknownAfterSending(t *testing.T) {
	for _, hang := range []string{"wait", "cut"} {
		srv, received := hangingTickets(t, hang)
		cfg := digishareConfig(t, srv.URL)
		cfg.Timeout = config.Duration(300 * time.Millisecond)
		api := NewDigishareAPI(cfg, "MA", 1)
		start := time.Now()
		_, _, err := api.CreateTicket(t.Context(), []byte(`{"external_id":"ORDER-1"}`))
		var ue *UnknownOutcomeError
		if !errors.As(err, &ue) || ue.StatusCode != 0 || !strings.Contains(ue.Msg, "after the request was sent") {
			t.Errorf("%s: CreateTicket = %T %v, want an unknown outcome after sending", hang, err, err)
		}
		if hang == "wait" && !strings.Contains(err.Error(), "timeout") {
			t.Errorf("wait: %v does not say it timed out", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v, want bounded by the 300ms timeout", hang, d)
		}
		select {
		case b := <-received:
			if string(b) != `{"external_id":"ORDER-1"}` {
				t.Errorf("%s: Digishare received %q", hang, b)
			}
		default:
			t.Errorf("%s: Digishare received nothing, so the outcome was not unknown", hang)
		}
		// The same failure of an upload is retryable: an upload may be repeated.
		_, _, err = api.UploadMedia(t.Context(), &Invoice{Data: []byte("%PDF-"), MIME: "application/pdf", Extension: "pdf"}, "f")
		var oe *Error
		if errors.As(err, &ue) || !errors.As(err, &oe) || oe.Permanent {
			t.Errorf("%s: UploadMedia = %T %v, want retryable", hang, err, err)
		}
	}
}

func TestDigishareRefusedBeforeSendingIsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more: the connection is refused
	api := NewDigishareAPI(digishareConfig(t, "http://"+addr), "MA", 1)
	_, _, err = api.CreateTicket(t.Context(), []byte(`{}`))
	var ue *UnknownOutcomeError
	var oe *Error
	if errors.As(err, &ue) || !errors.As(err, &oe) || oe.Permanent {
		t.Errorf("CreateTicket to a closed port = %T %v, want retryable (nothing was sent)", err, err)
	}
}

func TestUploadMedia(t *testing.T) {
	srv := fake.NewServer(t, fake.Answer{Code: 201, Body: `{"data":{"id":"m-hash-1","type":"file"}}`},
		fake.Answer{Code: 200, Body: `{"id":5}`}, fake.Answer{Code: 201, Body: `{"data":{}}`})
	api := NewDigishareAPI(digishareConfig(t, srv.URL+"/v1"), "MA", 1)
	pdf := []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n")
	inv := &Invoice{Data: pdf, MIME: "application/pdf", Extension: "pdf"}
	id, _, err := api.UploadMedia(t.Context(), inv, "invoice-44212809")
	if err != nil || id != "m-hash-1" {
		t.Fatalf("UploadMedia = %q, %v; want m-hash-1 (data.id)", id, err)
	}
	if id, _, err := api.UploadMedia(t.Context(), inv, "x"); err != nil || id != "5" {
		t.Errorf("UploadMedia = %q, %v; want 5 (top-level id, a number)", id, err)
	}
	_, _, err = api.UploadMedia(t.Context(), inv, "x")
	var oe *Error
	if !errors.As(err, &oe) || !oe.Permanent || !strings.Contains(oe.Msg, "no id") {
		t.Errorf("UploadMedia without an id in the answer = %v, want permanent", err)
	}
	r := srv.Requests()[0]
	if r.Path != "/v1/messagesTemplates" || r.Header.Get("Authorization") != "Bearer "+testPAT || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("upload went to %s with Authorization %q", r.Path, r.Header.Get("Authorization"))
	}
	var b struct {
		Type, Category string
		File           struct {
			Base64    string `json:"base64"`
			FileName  string `json:"file_name"`
			MIMEType  string `json:"mime_type"`
			Extension string `json:"extension"`
		}
	}
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatal(err)
	}
	data, ok := strings.CutPrefix(b.File.Base64, "data:application/pdf;base64,")
	raw, err := base64.StdEncoding.DecodeString(data)
	if b.Type != "file" || b.Category != "document" || !ok || err != nil || string(raw) != string(pdf) ||
		b.File.FileName != "invoice-44212809" || b.File.MIMEType != "application/pdf" || b.File.Extension != "pdf" {
		t.Errorf("upload body = %+v (decoded %v)", b, err)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(r.Body, &keys)
	if len(keys) != 3 {
		t.Errorf("upload body has keys %v, want exactly type, category, file", keys)
	}
}

func TestDigishareConcurrentCallersShareOneToken(t *testing.T) {
	f := newTokenFake(t)
	api := NewDigishareAPI(clientCredentials(digishareConfig(t, f.URL)), "MA", 8)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, _, err := api.CreateTicket(t.Context(), []byte(`{}`)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.tokenCalls(); n != 1 {
		t.Errorf("%d token requests for 8 concurrent tickets, want 1", n)
	}
}

func TestTicketResultDescribe(t *testing.T) {
	r := TicketResult{ID: "tk1", Number: "342106", Omitted: []string{"third.email", "campaign_data.delivery_address"}}
	got := r.Describe(InvoiceOutcome{Note: "no invoice: the order has no value for {order.items.0.invoiceUrl}"})
	want := "ticket tk1 (#342106) created; left out (no value): third.email, campaign_data.delivery_address; no invoice: the order has no value for {order.items.0.invoiceUrl}"
	if got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	if got := (TicketResult{}).Describe(InvoiceOutcome{MediaID: "m"}); got != "ticket created" {
		t.Errorf("Describe of a bare result = %q", got)
	}
}
