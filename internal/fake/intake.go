package fake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Digishare is a fake Digishare API for the order intake: POST
// /v1/messagesTemplates answers a new media id, POST /v1/tickets creates a
// ticket (201 with id and ticket_number) and counts tickets per external_id,
// POST /v1/oauth/token gives client-credentials tokens. Tickets, when set,
// answers a ticket request instead (to script failures); Hold, when set,
// makes every ticket request wait on it after it was received (a timeout
// after the request went out).
type Digishare struct {
	*httptest.Server
	// Token is the personal access token it accepts ("" = any bearer).
	Token string

	mu       sync.Mutex
	reqs     []Request
	uploads  int
	tickets  map[string]int // external_id → tickets created
	created  int
	tokens   int
	notify   chan struct{}
	Tickets  func(n int, body []byte) (Answer, bool) // n: ticket requests so far, this one included; false = create
	Uploads  func(n int) (Answer, bool)
	Hold     chan struct{}
	accepted map[string]bool // tokens issued by oauth
	// RejectTokens, when > 0, answers that many authorised requests 401
	// (the token expired) before accepting again.
	RejectTokens int
	// AnswerDelay is how long a created ticket's answer waits after the
	// ticket exists (a process killed meanwhile never learns of it).
	AnswerDelay time.Duration
}

// NewDigishare starts a fake Digishare (closed when the test ends).
func NewDigishare(t interface{ Cleanup(func()) }, token string) *Digishare {
	d := &Digishare{Token: token, tickets: map[string]int{}, notify: make(chan struct{}, 1), accepted: map[string]bool{}}
	d.Server = httptest.NewServer(http.HandlerFunc(d.handle))
	t.Cleanup(d.Close)
	return d
}

func (d *Digishare) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := Request{At: time.Now(), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	d.mu.Lock()
	d.reqs = append(d.reqs, req)
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
	write := func(a Answer) {
		for k, v := range a.Header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.Code)
		_, _ = io.WriteString(w, a.Body)
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1")
	if path == "/oauth/token" {
		d.mu.Lock()
		d.tokens++
		tok := fmt.Sprintf("oauth-token-%d", d.tokens)
		d.accepted[tok] = true
		d.mu.Unlock()
		write(Answer{Code: 200, Body: fmt.Sprintf(`{"token_type":"Bearer","expires_in":31536000,"access_token":%q}`, tok)})
		return
	}
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	d.mu.Lock()
	ok := (d.Token == "" || got == d.Token || d.accepted[got]) && got != ""
	if ok && d.RejectTokens > 0 {
		d.RejectTokens--
		delete(d.accepted, got)
		ok = false
	}
	d.mu.Unlock()
	if !ok {
		write(Answer{Code: 401, Body: `{"message":"Unauthenticated."}`})
		return
	}
	switch path {
	case "/messagesTemplates":
		d.mu.Lock()
		d.uploads++
		n := d.uploads
		script := d.Uploads
		d.mu.Unlock()
		if script != nil {
			if a, ok := script(n); ok {
				write(a)
				return
			}
		}
		write(Answer{Code: 201, Body: fmt.Sprintf(`{"data":{"id":"media-%d"}}`, n)})
	case "/tickets":
		var tk struct {
			ExternalID string `json:"external_id"`
		}
		_ = json.Unmarshal(body, &tk)
		d.mu.Lock()
		n := 0
		for _, r := range d.reqs {
			if strings.HasSuffix(r.Path, "/tickets") {
				n++
			}
		}
		script, hold := d.Tickets, d.Hold
		d.mu.Unlock()
		if script != nil {
			if a, ok := script(n, body); ok {
				write(a)
				return
			}
		}
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return // the client gave up: nothing is created
			}
		}
		d.mu.Lock()
		d.created++
		d.tickets[tk.ExternalID]++
		id := d.created
		delay := d.AnswerDelay
		d.mu.Unlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
		write(Answer{Code: 201, Body: fmt.Sprintf(`{"data":{"id":"tk-%d","ticket_number":%d,"external_id":%q}}`, id, 340000+id, tk.ExternalID)})
	default:
		write(Answer{Code: 404, Body: `{"message":"not found"}`})
	}
}

// Requests returns what was received so far.
func (d *Digishare) Requests() []Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Request(nil), d.reqs...)
}

// On returns the requests received on a path (without /v1).
func (d *Digishare) On(path string) []Request {
	var out []Request
	for _, r := range d.Requests() {
		if strings.TrimPrefix(r.Path, "/v1") == path {
			out = append(out, r)
		}
	}
	return out
}

// TicketsFor returns how many tickets were created with this external_id.
func (d *Digishare) TicketsFor(externalID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tickets[externalID]
}

// TicketCounts returns the tickets created per external_id.
func (d *Digishare) TicketCounts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.tickets))
	for k, v := range d.tickets {
		out[k] = v
	}
	return out
}

// TokenCalls counts POST /oauth/token.
func (d *Digishare) TokenCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tokens
}

// WaitPath blocks until at least n requests arrived on path (without /v1)
// or the timeout passes, and returns them.
func (d *Digishare) WaitPath(path string, n int, timeout time.Duration) []Request {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if r := d.On(path); len(r) >= n {
			return r
		}
		select {
		case <-d.notify:
		case <-deadline.C:
			return d.On(path)
		}
	}
}

// OrderSystem is a fake order system: GET /_ah/api/esb/v2/order/{id}
// answers the order set with Set (404 otherwise), and GET /invoices/…
// answers a small PDF (the invoice host).
type OrderSystem struct {
	*httptest.Server
	mu     sync.Mutex
	orders map[string][]byte
	reqs   []Request
	// Answer, when set, answers an order request instead (to script failures).
	Answer func(orderID string, n int) (Answer, bool)
}

// InvoicePDF is what the fake invoice host serves.
var InvoicePDF = []byte("%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n")

// NewOrderSystem starts a fake order system and invoice host (closed when
// the test ends).
func NewOrderSystem(t interface{ Cleanup(func()) }) *OrderSystem {
	o := &OrderSystem{orders: map[string][]byte{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.handle))
	t.Cleanup(o.Close)
	return o
}

// Set makes the order system answer doc for order id.
func (o *OrderSystem) Set(id string, doc []byte) {
	o.mu.Lock()
	o.orders[id] = append([]byte(nil), doc...)
	o.mu.Unlock()
}

func (o *OrderSystem) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	o.mu.Lock()
	o.reqs = append(o.reqs, Request{At: time.Now(), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	n := len(o.reqs)
	o.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/invoices/") {
		w.Header().Set("Content-Type", "application/pdf")
		_, _ = w.Write(InvoicePDF)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/_ah/api/esb/v2/order/")
	w.Header().Set("Content-Type", "application/json")
	if !ok || r.Method != http.MethodGet {
		w.WriteHeader(404)
		_, _ = io.WriteString(w, `{"error":"not found"}`)
		return
	}
	if o.Answer != nil {
		if a, ok := o.Answer(id, n); ok {
			for k, v := range a.Header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(a.Code)
			_, _ = io.WriteString(w, a.Body)
			return
		}
	}
	o.mu.Lock()
	doc, found := o.orders[id]
	o.mu.Unlock()
	if !found {
		w.WriteHeader(404)
		_, _ = io.WriteString(w, `{"error":"order not found"}`)
		return
	}
	_, _ = w.Write(doc)
}

// Requests returns what was received so far.
func (o *OrderSystem) Requests() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.reqs...)
}
