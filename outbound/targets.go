package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/placeholder"
)

// permanent wraps a failure no retry can fix (a missing placeholder value, an
// unparseable phone number).
func permanent(format string, args ...any) error {
	return &Error{Permanent: true, Msg: fmt.Sprintf(format, args...)}
}

func renderErr(err error) error {
	var me *placeholder.MissingError
	if errors.As(err, &me) {
		return permanent("%s", me.Error())
	}
	return permanent("render request: %v", err)
}

// requestCall renders a configured request (URL, headers, JSON body) for a message.
func requestCall(client *http.Client, r *config.Request, rawURL string, m *Message, headers map[string]string, secrets []string) (call, error) {
	u, err := placeholder.RenderURL(rawURL, m.Lookup)
	if err != nil {
		return call{}, renderErr(err)
	}
	c := call{client: client, method: r.Method, url: u, headers: map[string]string{}, secrets: secrets,
		failKey: r.SuccessWhenBodyLacks}
	for k, v := range headers {
		c.headers[k] = v
	}
	for k, v := range r.Headers {
		hv, err := placeholder.RenderHeader(v, m.Lookup)
		if err != nil {
			return call{}, renderErr(err)
		}
		c.headers[k] = hv
	}
	if r.Body != nil {
		raw, err := placeholder.RenderJSON(r.Body, m.Lookup)
		if err != nil {
			return call{}, renderErr(err)
		}
		c.rawBody = raw
	}
	return c, nil
}

// HTTPTarget sends to a generic, configured HTTP endpoint.
type HTTPTarget struct {
	cfg    config.HTTPTarget
	client *http.Client
	red    redaction
}

func (h *HTTPTarget) setRedaction(r redaction) { h.red = r }

// NewHTTPTarget builds a generic target client.
func NewHTTPTarget(cfg config.HTTPTarget, conns int) *HTTPTarget {
	return &HTTPTarget{cfg: cfg, client: newHTTPClient(cfg.Timeout.D(), conns)}
}

// Send renders the request for the message and sends it.
func (h *HTTPTarget) Send(ctx context.Context, m *Message) (Response, error) {
	c, err := requestCall(h.client, &h.cfg.Request, h.cfg.URL, m, nil, append(headerSecrets(h.cfg.Headers), h.red.values...))
	if err != nil {
		return Response{}, err
	}
	c.secretHeaders = h.red.headers
	return c.do(ctx)
}

// headerSecrets returns the configured values of headers whose names say
// they carry credentials (auth, token, key, secret, signature, password,
// hash), to redact wherever they appear. Headers filled from the
// environment are secrets whatever their names (config.SecretHeaders).
func headerSecrets(h map[string]string) []string {
	var s []string
	for k, v := range h {
		if credentialName(k) && !strings.Contains(v, "{") {
			s = append(s, v)
			if _, tok, ok := strings.Cut(v, " "); ok {
				s = append(s, tok)
			}
		}
	}
	return s
}

// credentialName reports whether a header's name says it carries a secret.
func credentialName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"auth", "token", "key", "secret", "signature", "password", "hash"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// OrderSystem writes statuses back to the originating order system through
// its configured status_update request. A body with an `error` key is a
// failure unless the status is retryable.
type OrderSystem struct {
	cfg    config.OrderSystem
	client *http.Client
	red    redaction
}

func (o *OrderSystem) setRedaction(r redaction) { o.red = r }

// NewOrderSystem builds the order system status client.
func NewOrderSystem(cfg config.OrderSystem, conns int) *OrderSystem {
	return &OrderSystem{cfg: cfg, client: newHTTPClient(cfg.Timeout.D(), conns)}
}

func (o *OrderSystem) authHeaders() map[string]string {
	if o.cfg.Token == "" {
		return nil
	}
	return map[string]string{"Authorization": "Bearer " + o.cfg.Token}
}

// Send writes the delivery's status back.
func (o *OrderSystem) Send(ctx context.Context, m *Message) (Response, error) {
	r := o.cfg.StatusUpdate
	if r == nil {
		return Response{}, permanent("targets.order_system.status_update is not configured")
	}
	c, err := requestCall(o.client, r, strings.TrimRight(o.cfg.BaseURL, "/")+r.Path, m, o.authHeaders(), append([]string{o.cfg.Token}, o.red.values...))
	if err != nil {
		return Response{}, err
	}
	if c.failKey == "" {
		c.failKey = "error"
	}
	return c.do(ctx)
}

// WhatsAppOptIn subscribes the customer to WhatsApp notifications in the
// order system: GET the order, skip when isWhatsAppEnabledForNotifications is
// "1", else POST the subscription.
type WhatsAppOptIn struct {
	*OrderSystem
}

// NewWhatsAppOptIn builds the opt-in client on the order system's settings.
func NewWhatsAppOptIn(cfg config.OrderSystem, conns int) *WhatsAppOptIn {
	return &WhatsAppOptIn{NewOrderSystem(cfg, conns)}
}

// ResultAlreadyActive is the outcome of an opt-in the order system already had.
const ResultAlreadyActive = "already_active"

type optInBody struct {
	ContactPhone   string `json:"contactPhone"`
	CustomerName   string `json:"customerName"`
	Email          string `json:"email"`
	AccountID      string `json:"accountId"`
	WhatsAppStatus string `json:"whatsAppStatus"`
}

// Send checks the order and subscribes the customer when needed.
func (w *WhatsAppOptIn) Send(ctx context.Context, m *Message) (Response, error) {
	phone, err := NationalPhone(m.third("wa_id"), w.cfg.PhoneRegion)
	if err != nil {
		return Response{}, permanent("third.wa_id: %v", err)
	}
	u := strings.TrimRight(w.cfg.BaseURL, "/") + "/_ah/api/esb/v2/order/" + url.PathEscape(m.Delivery.OrderID)
	secrets := append([]string{w.cfg.Token}, w.red.values...)
	get := call{client: w.client, method: http.MethodGet, url: u, headers: w.authHeaders(), failKey: "error", secrets: secrets}
	resp, body, err := get.doBody(ctx)
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) && oe.StatusCode == http.StatusNotFound {
			oe.Msg = "order unknown to the order system: " + oe.Msg
		}
		return resp, err
	}
	if enabledFlag(body) == "1" {
		resp.Result = ResultAlreadyActive
		return resp, nil
	}
	post := call{client: w.client, method: http.MethodPost, url: u, headers: w.authHeaders(), failKey: "error", secrets: secrets,
		body: optInBody{ContactPhone: phone, CustomerName: m.third("name"), Email: m.third("email"),
			AccountID: w.cfg.AccountID, WhatsAppStatus: "ACTIVE"}}
	return post.do(ctx)
}

// enabledFlag reads isWhatsAppEnabledForNotifications as text ("1", "0", or "").
func enabledFlag(body []byte) string {
	var o struct {
		Flag json.RawMessage `json:"isWhatsAppEnabledForNotifications"`
	}
	if json.Unmarshal(body, &o) != nil || len(o.Flag) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(o.Flag, &s) == nil {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(string(o.Flag)) // a number: 1 or 0
}

// NationalPhone turns a WhatsApp id (digits with country code, no +) into the
// order system's format: the national significant number, digits only, for
// numbers of region; E.164 (+…) for numbers of another country. A number that
// cannot be parsed or is not valid is an error, never sent.
func NationalPhone(waID, region string) (string, error) {
	digits := strings.TrimPrefix(strings.TrimSpace(waID), "+")
	if digits == "" {
		return "", errors.New("missing")
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return "", fmt.Errorf("%q is not digits with a country code", maskDigits(waID))
		}
	}
	num, err := phonenumbers.Parse("+"+digits, "")
	if err != nil {
		return "", fmt.Errorf("%s cannot be parsed: %v", maskDigits(digits), err)
	}
	if !phonenumbers.IsValidNumber(num) {
		return "", fmt.Errorf("%s is not a valid phone number", maskDigits(digits))
	}
	if strings.EqualFold(phonenumbers.GetRegionCodeForNumber(num), region) {
		return phonenumbers.GetNationalSignificantNumber(num), nil
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

// maskDigits keeps the last three characters of a phone for messages.
func maskDigits(s string) string {
	if len(s) <= 3 {
		return "***"
	}
	return "***" + s[len(s)-3:]
}

// Everlytic posts an e-commerce order to trigger a workflow. Triggering is
// not idempotent: the worker asks OnceKey and never triggers the same
// (order, status id, workflow) twice unless the delivery is forced.
type Everlytic struct {
	cfg    config.Everlytic
	client *http.Client
	red    redaction
}

func (e *Everlytic) setRedaction(r redaction) { e.red = r }

// NewEverlytic builds the Everlytic client.
func NewEverlytic(cfg config.Everlytic, conns int) *Everlytic {
	return &Everlytic{cfg: cfg, client: newHTTPClient(cfg.Timeout.D(), conns)}
}

// OnceKey is the no-repeat key: order, status id and workflow id.
func (e *Everlytic) OnceKey(m *Message) string {
	d := m.Delivery
	return "everlytic\x00" + d.OrderID + "\x00" + d.StatusID + "\x00" + d.Status
}

// EverlyticProduct is one line of an Everlytic order.
type EverlyticProduct struct {
	Name      string `json:"product_name"`
	Quantity  int    `json:"product_quantity"`
	Price     string `json:"product_price,omitempty"`
	LineTotal string `json:"product_line_total,omitempty"`
}

// EverlyticBody builds the order body: contact_email (third.email), else
// contact_unique_id (third.ext_ref); order_id; total ← campaign_data.order_total;
// sub_total, shipping_fee, taxes, discount ← campaign_data keys of the same
// names; workflow_id; products ← campaign_data.products when it holds a JSON
// array (or a string holding one), else one summary line from the order.
func EverlyticBody(m *Message, workflowID int) (map[string]any, error) {
	b := map[string]any{"order_id": m.Delivery.OrderID, "workflow_id": workflowID}
	switch {
	case m.third("email") != "":
		b["contact_email"] = m.third("email")
	case m.third("ext_ref") != "":
		b["contact_unique_id"] = m.third("ext_ref")
	default:
		return nil, permanent("no contact: third.email and third.ext_ref are both missing")
	}
	camp := func(k string) (string, bool) {
		if m.Event == nil {
			return "", false
		}
		return m.Event.Ticket.CampaignString(k)
	}
	total, hasTotal := camp("order_total")
	if hasTotal {
		b["total"] = total
	}
	for _, k := range []string{"sub_total", "shipping_fee", "taxes", "discount"} {
		if v, ok := camp(k); ok {
			b[k] = v
		}
	}
	if products := productsArray(m); products != nil {
		b["products"] = products
		return b, nil
	}
	name := ""
	if m.Event != nil {
		name = m.Event.Ticket.Subject
	}
	if name == "" {
		name = "Order " + m.Delivery.OrderID
	}
	qty := 1
	if s, ok := camp("items_count"); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
			qty = n
		}
	}
	b["products"] = []EverlyticProduct{{Name: name, Quantity: qty, Price: total, LineTotal: total}}
	return b, nil
}

func productsArray(m *Message) json.RawMessage {
	if m.Event == nil {
		return nil
	}
	raw, ok := m.Event.Ticket.CampaignData["products"]
	if !ok {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil { // campaign_data values are usually strings
		raw = json.RawMessage(s)
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) != nil {
		return nil
	}
	return raw
}

// Send triggers the workflow named by the delivery's status.
func (e *Everlytic) Send(ctx context.Context, m *Message) (Response, error) {
	wf, err := strconv.Atoi(m.Delivery.Status)
	if err != nil || wf <= 0 {
		return Response{}, permanent("workflow id %q is not a positive integer", m.Delivery.Status)
	}
	body, err := EverlyticBody(m, wf)
	if err != nil {
		return Response{}, err
	}
	return call{
		client: e.client, method: http.MethodPost,
		url:     strings.TrimRight(e.cfg.BaseURL, "/") + "/servlet/e-commerce/orders",
		headers: map[string]string{"x-ev-store-hash": e.cfg.StoreHash, "x-ev-customer-hash": e.cfg.CustomerHash},
		body:    body,
		secrets: append([]string{e.cfg.StoreHash, e.cfg.CustomerHash}, e.red.values...),
	}.do(ctx)
}
