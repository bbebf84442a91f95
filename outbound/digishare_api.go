package outbound

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/orders"
	"github.com/statusbridge/statusbridge/ticket"
)

// UnknownOutcomeError is a request that was sent without an answer saying
// whether it took effect: a 500, 502 or 504 (any 5xx but 503), a timeout or a
// broken connection after the request was written. For a ticket it means
// the ticket may exist: the caller must not resend it blindly
// (targets.digishare.resend_unknown).
//
// It unwraps to a permanent *Error, so a caller that only looks for *Error
// ends the delivery instead of resending it.
type UnknownOutcomeError struct {
	StatusCode int // 0: no answer (timeout, broken connection)
	Msg        string
}

func (e *UnknownOutcomeError) Error() string { return "outcome unknown: " + e.Msg }

// Unwrap returns the permanent *Error equivalent.
func (e *UnknownOutcomeError) Unwrap() error {
	return &Error{Permanent: true, StatusCode: e.StatusCode, Msg: e.Error()}
}

// RejectedError is a 422 from Digishare: the data was refused. Errors keeps
// the answer's `errors` (field → messages). It unwraps to a permanent *Error.
type RejectedError struct {
	Message string              // the answer's message
	Errors  map[string][]string // the answer's errors
	err     *Error
}

func (e *RejectedError) Error() string { return e.err.Msg }

// Unwrap returns the permanent *Error.
func (e *RejectedError) Unwrap() error { return e.err }

// DigishareAPI calls Digishare's API for order intake: it uploads invoices
// (POST /messagesTemplates) and creates tickets (POST /tickets), with a
// personal access token or a client-credentials token it renews itself. It
// never logs; tokens and the client secret are redacted from every message
// and excerpt.
type DigishareAPI struct {
	cfg         config.Digishare
	phoneRegion string
	client      *http.Client // API calls: no redirects followed
	invoices    *http.Client // invoice downloads: at most 3 redirects, allowed_hosts on each hop
	tokens      *tokenSource
	now         func() time.Time
}

// NewDigishareAPI builds the client. phoneRegion is
// targets.order_system.phone_region, the region of orders' national phone
// numbers without a known countryCode; conns sizes the connection pool.
func NewDigishareAPI(cfg config.Digishare, phoneRegion string, conns int) *DigishareAPI {
	d := &DigishareAPI{cfg: cfg, phoneRegion: phoneRegion, client: newHTTPClient(cfg.Timeout.D(), conns), now: time.Now}
	d.invoices = newInvoiceClient(cfg.Timeout.D(), cfg.Ticket.Invoice.AllowedHosts)
	if cfg.ClientCredentials() {
		d.tokens = &tokenSource{api: d, lock: make(chan struct{}, 1)}
	}
	return d
}

// TicketResult is a created ticket.
type TicketResult struct {
	ID         string // Digishare's ticket id ("" when the answer had none)
	Number     string // ticket_number
	ExternalID string
	// Omitted names the fields left out for want of a value.
	Omitted []string
}

// Describe is the delivery's result in words: the ticket made, what was
// left out for want of a value, and why it has no invoice (inv.Note).
func (r TicketResult) Describe(inv InvoiceOutcome) string {
	var b strings.Builder
	b.WriteString("ticket")
	if r.ID != "" {
		b.WriteString(" " + r.ID)
	}
	if r.Number != "" {
		b.WriteString(" (#" + r.Number + ")")
	}
	b.WriteString(" created")
	if len(r.Omitted) > 0 {
		b.WriteString("; left out (no value): " + strings.Join(r.Omitted, ", "))
	}
	if inv.Note != "" {
		b.WriteString("; " + inv.Note)
	}
	return b.String()
}

// SendTicket renders the order's ticket (see package ticket) with mediaID as
// its invoice ("" = none) and creates it. A ticket that cannot be rendered
// fails permanently and sends nothing. See CreateTicket for the answers.
func (d *DigishareAPI) SendTicket(ctx context.Context, o *orders.Order, mediaID string) (TicketResult, Response, error) {
	tk, err := ticket.Render(d.cfg.Ticket, o, d.phoneRegion, mediaID)
	if err != nil {
		return TicketResult{}, Response{}, &Error{Permanent: true, Msg: "ticket not sent: " + err.Error()}
	}
	ref, resp, err := d.CreateTicket(ctx, tk.Body)
	ref.ExternalID, ref.Omitted = tk.ExternalID, tk.Omitted
	return ref, resp, err
}

// CreateTicket posts a rendered ticket body to {base_url}/tickets. nil error:
// created (200/201), with the id and ticket_number of the answer (top level
// or under data). Otherwise: *RejectedError (422), a permanent *Error (401
// after one token renewal with client credentials, other 4xx, 3xx), a
// retryable *Error (429, 503, 408 — refused before doing anything —
// honouring Retry-After, and failures before the request was written), or
// *UnknownOutcomeError (other 5xx, timeout or broken connection after it).
func (d *DigishareAPI) CreateTicket(ctx context.Context, body []byte) (TicketResult, Response, error) {
	resp, answer, err := d.api(ctx, "/tickets", body, true)
	if err != nil {
		return TicketResult{}, resp, err
	}
	var ref TicketResult
	ref.ID, _ = answerField(answer, "id")
	ref.Number, _ = answerField(answer, "ticket_number")
	return ref, resp, nil
}

// Invoice is a downloaded invoice.
type Invoice struct {
	Data      []byte
	MIME      string // application/pdf or image/…
	Extension string // pdf, png, jpg, gif, webp, …
}

type mediaFile struct {
	Base64    string `json:"base64"`
	FileName  string `json:"file_name"`
	MIMEType  string `json:"mime_type"`
	Extension string `json:"extension"`
}

type mediaUpload struct {
	Type     string    `json:"type"`
	Category string    `json:"category"`
	File     mediaFile `json:"file"`
}

// UploadMedia posts an invoice to {base_url}/messagesTemplates as a document
// and returns its media id (data.id, or a top-level id). An upload has no
// effect but an orphan file when repeated, so 5xx, timeouts and broken
// connections are retryable here; 422 is a *RejectedError; 401 (after one
// renewal with client credentials) and other 4xx are permanent; a 2xx
// without an id is permanent.
func (d *DigishareAPI) UploadMedia(ctx context.Context, inv *Invoice, fileName string) (string, Response, error) {
	payload, err := marshal(mediaUpload{Type: "file", Category: "document", File: mediaFile{
		Base64:    "data:" + inv.MIME + ";base64," + base64.StdEncoding.EncodeToString(inv.Data),
		FileName:  fileName,
		MIMEType:  inv.MIME,
		Extension: inv.Extension,
	}})
	if err != nil {
		return "", Response{}, &Error{Permanent: true, Msg: "encode media upload: " + err.Error()}
	}
	resp, answer, err := d.api(ctx, "/messagesTemplates", payload, false)
	if err != nil {
		return "", resp, err
	}
	id, ok := answerField(answer, "id")
	if !ok {
		return "", resp, &Error{Permanent: true, StatusCode: resp.StatusCode,
			Msg: fmt.Sprintf("HTTP %d: the media upload's answer has no id (data.id or id): %s", resp.StatusCode, resp.Excerpt)}
	}
	return id, resp, nil
}

// InvoiceOutcome is what PrepareInvoice decided.
type InvoiceOutcome struct {
	MediaID string // "" = the ticket goes without an invoice
	// Note says why there is no invoice: none configured, none in the
	// order, or (invoice.required: false) why it could not be had.
	Note string
}

// PrepareInvoice downloads the order's invoice (invoice.from) and uploads it.
// No invoice.from, or an order without an invoice URL: no media id, with a
// note. An invoice that cannot be had (a permanent failure of the download
// or of the upload but a 401) fails permanently when invoice.required, else
// the outcome has no media id and its note says why. Retryable failures are
// returned as they are, whatever invoice.required says.
func (d *DigishareAPI) PrepareInvoice(ctx context.Context, o *orders.Order) (InvoiceOutcome, Response, error) {
	u, none := ticket.InvoiceURL(d.cfg.Ticket, o)
	if u == "" {
		return InvoiceOutcome{Note: none}, Response{}, nil
	}
	lenient := func(step string, resp Response, err error) (InvoiceOutcome, Response, error) {
		var oe *Error
		if d.cfg.Ticket.Invoice.Required || !errors.As(err, &oe) || !oe.Permanent || oe.StatusCode == http.StatusUnauthorized {
			return InvoiceOutcome{}, resp, err
		}
		return InvoiceOutcome{Note: "ticket created without its invoice (" + step + " failed: " + oe.Msg + ")"}, resp, nil
	}
	inv, resp, err := d.FetchInvoice(ctx, u)
	if err != nil {
		return lenient("download", resp, err)
	}
	id, resp, err := d.UploadMedia(ctx, inv, ticket.FileName(d.cfg.Ticket, o))
	if err != nil {
		return lenient("upload", resp, err)
	}
	return InvoiceOutcome{MediaID: id}, resp, nil
}

// api posts JSON to base_url+path with the bearer token. With client
// credentials a 401 renews the token once and sends again (a 401 means the
// request was not processed). ticket selects the ticket rules for answers
// that say nothing about the outcome (see CreateTicket).
func (d *DigishareAPI) api(ctx context.Context, path string, payload []byte, ticket bool) (Response, []byte, error) {
	renewed := false
	for {
		tok := d.cfg.Token
		if d.tokens != nil {
			var err error
			if tok, err = d.tokens.get(ctx); err != nil {
				return Response{}, nil, err
			}
		}
		resp, body, err := d.post(ctx, path, payload, tok, ticket)
		if resp.StatusCode == http.StatusUnauthorized && d.tokens != nil && !renewed {
			d.tokens.invalidate(tok)
			renewed = true
			continue
		}
		return resp, body, err
	}
}

// apiAnswerLimit bounds the answer read from the API (a created ticket).
const apiAnswerLimit = 1 << 20

func (d *DigishareAPI) post(ctx context.Context, path string, payload []byte, tok string, ticket bool) (Response, []byte, error) {
	secrets := d.secrets(tok)
	red := func(s string) string { return redactAll(s, secrets) }
	u := strings.TrimRight(d.cfg.BaseURL, "/") + path
	var wrote bool
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			mu.Lock()
			wrote = true
			mu.Unlock()
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return Response{}, nil, &Error{Permanent: true, Msg: red("build request: " + err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "statusbridge")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := d.client.Do(req)
	if err != nil {
		mu.Lock()
		sent := wrote
		mu.Unlock()
		msg := red(transportMessage(err))
		if ticket && sent {
			return Response{}, nil, &UnknownOutcomeError{Msg: msg + " (after the request was sent)"}
		}
		return Response{}, nil, &Error{Msg: msg}
	}
	defer resp.Body.Close()
	// A body cut short does not change what the status says.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, apiAnswerLimit))
	r := Response{StatusCode: resp.StatusCode, Excerpt: red(excerpt(body))}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return r, body, nil
	}
	return r, body, classifyDigishare(resp, body, r.Excerpt, ticket, path)
}

// classifyDigishare turns a non-2xx answer into an error (see CreateTicket
// and UploadMedia).
func classifyDigishare(resp *http.Response, body []byte, exc string, ticket bool, path string) error {
	code := resp.StatusCode
	msg := fmt.Sprintf("HTTP %d from %s: %s", code, path, exc)
	switch {
	case code == http.StatusUnprocessableEntity:
		var a struct {
			Message string              `json:"message"`
			Errors  map[string][]string `json:"errors"`
		}
		_ = json.Unmarshal(body, &a)
		return &RejectedError{Message: a.Message, Errors: a.Errors, err: &Error{Permanent: true, StatusCode: code,
			Msg: fmt.Sprintf("HTTP 422 from %s: %s", path, rejection(a.Message, a.Errors, exc))}}
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable, code == http.StatusRequestTimeout:
		return &Error{StatusCode: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), Msg: msg}
	case code >= 500:
		if ticket {
			return &UnknownOutcomeError{StatusCode: code, Msg: msg}
		}
		return &Error{StatusCode: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), Msg: msg}
	case code == http.StatusUnauthorized:
		return &Error{Permanent: true, StatusCode: code, Msg: "Digishare refused the token: " + msg}
	case code >= 300 && code < 400:
		return &Error{Permanent: true, StatusCode: code, Msg: fmt.Sprintf("HTTP %d redirect from %s not followed", code, path)}
	case code >= 400:
		return &Error{Permanent: true, StatusCode: code, Msg: msg}
	}
	if ticket { // 1xx: nothing says what happened
		return &UnknownOutcomeError{StatusCode: code, Msg: msg}
	}
	return &Error{StatusCode: code, Msg: msg}
}

// rejection formats a 422's message and errors, fields sorted.
func rejection(message string, errs map[string][]string, exc string) string {
	if message == "" && len(errs) == 0 {
		return exc
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(message))
	fields := make([]string, 0, len(errs))
	for f := range errs {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for i, f := range fields {
		if i == 0 {
			if b.Len() > 0 {
				b.WriteString(" ")
			}
			b.WriteString("(")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f + ": " + strings.Join(errs[f], " "))
		if i == len(fields)-1 {
			b.WriteString(")")
		}
	}
	return b.String()
}

// answerField reads a string or number field at the top level of a JSON
// answer, else under data.
func answerField(body []byte, key string) (string, bool) {
	var a map[string]json.RawMessage
	if json.Unmarshal(body, &a) != nil {
		return "", false
	}
	if s, ok := scalarText(a[key]); ok {
		return s, true
	}
	var data map[string]json.RawMessage
	if json.Unmarshal(a["data"], &data) != nil {
		return "", false
	}
	return scalarText(data[key])
}

func scalarText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, s != ""
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	return "", false
}

func (d *DigishareAPI) secrets(tok string) []string {
	return []string{tok, d.cfg.Token, d.cfg.ClientSecret}
}

// redactAll replaces each secret of 4 characters or more with ***.
func redactAll(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "***")
		}
	}
	return s
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// tokenSource gets and caches a client-credentials token: POST
// {base_url}/oauth/token, renewed before expires_in runs out (a tenth of its
// life early, at most an hour) and when a 401 says it no longer works.
// Concurrent callers share one renewal.
type tokenSource struct {
	api     *DigishareAPI
	lock    chan struct{} // a mutex that a caller's context can give up on
	token   string
	renewAt time.Time // zero: no expiry given; renewed on 401 only
}

func (t *tokenSource) acquire(ctx context.Context) error {
	select {
	case t.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &Error{Msg: "waiting for the Digishare token: " + ctx.Err().Error()}
	}
}

func (t *tokenSource) release() { <-t.lock }

func (t *tokenSource) get(ctx context.Context) (string, error) {
	if err := t.acquire(ctx); err != nil {
		return "", err
	}
	defer t.release()
	if t.token != "" && (t.renewAt.IsZero() || t.api.now().Before(t.renewAt)) {
		return t.token, nil
	}
	tok, life, err := t.fetch(ctx)
	if err != nil {
		return "", err
	}
	t.token, t.renewAt = tok, time.Time{}
	if life > 0 {
		t.renewAt = t.api.now().Add(life - min(life/10, time.Hour))
	}
	return tok, nil
}

// invalidate forgets used when it is still the cached token (a token
// renewed meanwhile by another caller is kept).
func (t *tokenSource) invalidate(used string) {
	t.lock <- struct{}{}
	if t.token == used {
		t.token = ""
	}
	<-t.lock
}

type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

func (t *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	cfg := t.api.cfg
	secrets := []string{cfg.ClientSecret}
	red := func(s string) string { return redactAll(s, secrets) }
	payload, _ := marshal(tokenRequest{GrantType: "client_credentials", ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(cfg.BaseURL, "/")+"/oauth/token", bytes.NewReader(payload))
	if err != nil {
		return "", 0, &Error{Permanent: true, Msg: red("build token request: " + err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "statusbridge")
	resp, err := t.api.client.Do(req)
	if err != nil {
		return "", 0, &Error{Msg: red("get a Digishare token: " + transportMessage(err))}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	if code < 200 || code >= 300 {
		msg := fmt.Sprintf("get a Digishare token: HTTP %d from /oauth/token: %s", code, red(excerpt(body)))
		retryable := code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
		return "", 0, &Error{Permanent: !retryable, StatusCode: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), Msg: msg}
	}
	var a struct {
		AccessToken string          `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if json.Unmarshal(body, &a) != nil || a.AccessToken == "" {
		return "", 0, &Error{Permanent: true, StatusCode: code, Msg: fmt.Sprintf("get a Digishare token: HTTP %d from /oauth/token without access_token", code)}
	}
	var life time.Duration
	if s, ok := scalarText(a.ExpiresIn); ok {
		if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 && n < 1e10 {
			life = time.Duration(n * float64(time.Second))
		}
	}
	return a.AccessToken, life, nil
}
