// Package ticket renders the Digishare ticket made from an order: the JSON
// body of POST {base_url}/tickets from the configured templates
// (targets.digishare.ticket), the order and the media id of its uploaded
// invoice. It does no I/O.
//
// Rules: external_id, type_ticket_id, ticket_status_id and third.wa_id must
// have a value, else Render fails with an *Error and nothing may be sent. Any
// other field whose template has no value (a template made of several
// placeholders counts as missing when any of them is) is left out and named
// in Ticket.Omitted; a template set to "" is not sent and not named. Every
// campaign_data value is sent as a string.
package ticket

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/orders"
	"github.com/statusbridge/statusbridge/placeholder"
)

// Error is a ticket that cannot be made from the order: the delivery fails
// permanently and sends nothing. Field is the ticket field (external_id,
// third.wa_id, …).
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string { return e.Field + ": " + e.Reason }

// Ticket is a rendered ticket request.
type Ticket struct {
	Body       []byte // JSON body of POST /tickets
	ExternalID string
	// Omitted names the fields left out because their value is missing
	// (subject, lang, third.KEY, campaign_data.KEY), sorted.
	Omitted []string
}

// Document is the value of campaign_data.<invoice.field>: a document
// uploaded to Digishare.
type Document struct {
	Provider string `json:"provider"` // "digishare"
	ID       string `json:"id"`       // the media id of POST /messagesTemplates
}

// body is POST /tickets, in the order of Digishare's documentation.
type body struct {
	ExternalID      string      `json:"external_id"`
	TypeTicketID    string      `json:"type_ticket_id"`
	TicketStatusID  string      `json:"ticket_status_id"`
	CreateThirdData bool        `json:"create_third_data"`
	Information     information `json:"information"`
	Subject         string      `json:"subject,omitempty"`
	Lang            string      `json:"lang,omitempty"`
}

type information struct {
	Third        map[string]string `json:"third"`
	CampaignData map[string]any    `json:"campaign_data"`
}

// Values returns the placeholder values of the Order vocabulary for an
// order: {order.PATH} (numbers as written), {items_count} and {wa_id} (made
// from shippingAddress.contactPhone, read in shippingAddress.countryCode,
// else phoneRegion). The second result reports why {wa_id} has no value.
func Values(o *orders.Order, phoneRegion string) (placeholder.Lookup, func() error) {
	var (
		waID    string
		waErr   error
		waDone  bool
		resolve = func() {
			if !waDone {
				waID, waErr = o.WhatsAppID(phoneRegion)
				waDone = true
			}
		}
	)
	look := func(name string) (string, bool) {
		switch name {
		case "wa_id":
			resolve()
			return waID, waErr == nil && waID != ""
		case "items_count":
			return o.ItemsCount()
		}
		if path, ok := strings.CutPrefix(name, "order."); ok {
			return o.Text(path)
		}
		return "", false
	}
	return look, func() error { resolve(); return waErr }
}

// Render makes the ticket for an order. mediaID, when not empty, is the
// uploaded invoice: it goes into campaign_data.<invoice.field>. It returns an
// *Error when a required field has no value.
func Render(cfg config.DigishareTicket, o *orders.Order, phoneRegion, mediaID string) (*Ticket, error) {
	look, waErr := Values(o, phoneRegion)
	t := &Ticket{}
	render := func(tmpl string) (string, bool, error) {
		if tmpl == "" {
			return "", false, nil
		}
		out, err := placeholder.Order.Render(tmpl, look, nil)
		if err != nil { // a *placeholder.MissingError
			return "", false, err
		}
		return out, true, nil
	}
	required := func(field, tmpl string) (string, error) {
		out, ok, err := render(tmpl)
		switch {
		case err != nil:
			return "", &Error{Field: field, Reason: err.Error()}
		case !ok || strings.TrimSpace(out) == "":
			return "", &Error{Field: field, Reason: "has no value (its template is empty)"}
		}
		return out, nil
	}
	optional := func(field, tmpl string) (string, bool) {
		out, ok, err := render(tmpl)
		if err != nil {
			t.Omitted = append(t.Omitted, field)
			return "", false
		}
		return out, ok
	}

	b := body{CreateThirdData: true, Information: information{Third: map[string]string{}, CampaignData: map[string]any{}}}
	var err error
	if b.ExternalID, err = required("external_id", cfg.ExternalID); err != nil {
		return nil, err
	}
	if b.TypeTicketID, err = required("type_ticket_id", cfg.TypeTicketID); err != nil {
		return nil, err
	}
	if b.TicketStatusID, err = required("ticket_status_id", cfg.TicketStatusID); err != nil {
		return nil, err
	}
	wa, err := required("third.wa_id", cfg.Third["wa_id"])
	if err != nil {
		if perr := waErr(); perr != nil && usesWaID(cfg.Third["wa_id"]) {
			return nil, &Error{Field: "third.wa_id", Reason: perr.Error()}
		}
		return nil, err
	}
	if !digits(wa) {
		return nil, &Error{Field: "third.wa_id", Reason: fmt.Sprintf("%s is not digits with a country code", orders.MaskPhone(wa))}
	}
	b.Information.Third["wa_id"] = wa
	b.Subject, _ = optional("subject", cfg.Subject)
	b.Lang, _ = optional("lang", cfg.Lang)
	for _, k := range sortedKeys(cfg.Third) {
		if k == "wa_id" {
			continue
		}
		if v, ok := optional("third."+k, cfg.Third[k]); ok {
			b.Information.Third[k] = v
		}
	}
	for _, k := range sortedKeys(cfg.CampaignData) {
		if mediaID != "" && k == cfg.Invoice.Field {
			continue // config check refuses this; the document wins
		}
		if v, ok := optional("campaign_data."+k, cfg.CampaignData[k]); ok {
			b.Information.CampaignData[k] = v
		}
	}
	if mediaID != "" {
		field := cfg.Invoice.Field
		if field == "" {
			field = "invoice_document"
		}
		b.Information.CampaignData[field] = Document{Provider: "digishare", ID: mediaID}
	}
	sort.Strings(t.Omitted)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("ticket: encode: %w", err)
	}
	t.Body = bytes.TrimRight(buf.Bytes(), "\n")
	t.ExternalID = b.ExternalID
	return t, nil
}

// InvoiceURL returns the URL the order's invoice is downloaded from. When
// there is none it returns "" and why: invoice.from is empty, or the order
// has no value for it.
func InvoiceURL(cfg config.DigishareTicket, o *orders.Order) (url, none string) {
	if strings.TrimSpace(cfg.Invoice.From) == "" {
		return "", "no invoice: targets.digishare.ticket.invoice.from is empty"
	}
	look, _ := Values(o, "")
	out, err := placeholder.Order.Render(cfg.Invoice.From, look, nil)
	if err != nil || strings.TrimSpace(out) == "" {
		return "", fmt.Sprintf("no invoice: the order has no value for %s", cfg.Invoice.From)
	}
	return strings.TrimSpace(out), ""
}

// FileName renders the uploaded invoice's file name (invoice.file_name),
// without path separators or control characters; "invoice" when it has no
// value.
func FileName(cfg config.DigishareTicket, o *orders.Order) string {
	look, _ := Values(o, "")
	out, err := placeholder.Order.Render(cfg.Invoice.FileName, look, nil)
	if err != nil {
		out = ""
	}
	out = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20, r == 0x7f, r == '/', r == '\\':
			return '_'
		}
		return r
	}, strings.TrimSpace(out))
	if len(out) > 200 {
		out = strings.ToValidUTF8(out[:200], "")
	}
	if out == "" || out == "." || out == ".." {
		return "invoice"
	}
	return out
}

func usesWaID(tmpl string) bool {
	for _, u := range placeholder.Uses(tmpl) {
		for _, alt := range strings.Split(u, "|") {
			if alt == "wa_id" {
				return true
			}
		}
	}
	return false
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
