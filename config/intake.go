package config

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // intake.time_zone must load on hosts without a zoneinfo database

	"github.com/statusbridge/statusbridge/placeholder"
)

// Intake configures the order intake endpoint, where the store posts its
// orders (the order system's document, or {"orderId": …} alone).
type Intake struct {
	Path    string `yaml:"path"`
	Token   string `yaml:"token"` // empty = every intake refused (401), warned
	MaxBody Size   `yaml:"max_body"`
	// TimeZone is the IANA zone of the order system's zone-less dates
	// (orderDate); default UTC.
	TimeZone string `yaml:"time_zone"`
}

func defaultIntake() Intake {
	return Intake{Path: "/webhooks/orders", MaxBody: 1 << 20, TimeZone: "UTC"}
}

// Location returns the zone of the order system's dates (UTC when TimeZone
// is empty or, in a config not made by Parse, cannot be loaded). Zones are
// loaded once per name; Intake stays plain data (comparable across reloads).
func (i Intake) Location() *time.Location {
	if loc, err := loadZone(i.TimeZone); err == nil {
		return loc
	}
	return time.UTC
}

var zones sync.Map // zone name → *time.Location

func loadZone(name string) (*time.Location, error) {
	if strings.TrimSpace(name) == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, fmt.Errorf("%q depends on the machine; name the zone (e.g. Africa/Casablanca, UTC)", name)
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone (e.g. Africa/Casablanca, UTC)", name)
	}
	zones.Store(name, loc)
	return loc, nil
}

// Digishare configures the Digishare API client that creates a ticket for
// each order taken in (target name digishare).
type Digishare struct {
	BaseURL string `yaml:"base_url"`
	// Token is a personal access token, sent as Authorization: Bearer.
	Token string `yaml:"token"`
	// ClientID and ClientSecret get a token from POST {base_url}/oauth/token
	// (OAuth 2.0 client credentials) instead of Token.
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// ResendUnknown: a ticket creation whose outcome is unknown (a 500, 502
	// or 504, a timeout or a broken connection after the request was sent)
	// is sent again when true; when false (the default) it is not resent
	// blindly, since the ticket may exist.
	ResendUnknown bool            `yaml:"resend_unknown"`
	Ticket        DigishareTicket `yaml:"ticket"`
	Limits        `yaml:",inline"`
}

// DigishareTicket is the ticket made from an order. Every value is a
// placeholder template of the Order vocabulary ({order.PATH}, {wa_id},
// {items_count}, {a|b}).
type DigishareTicket struct {
	TypeTicketID   string `yaml:"type_ticket_id"`   // required
	TicketStatusID string `yaml:"ticket_status_id"` // required: the initial status
	ExternalID     string `yaml:"external_id"`
	Subject        string `yaml:"subject"`
	Lang           string `yaml:"lang"`
	// Third is information.third: ext_ref, name, wa_id, email by default.
	// A key set to "" is not sent.
	Third map[string]string `yaml:"third"`
	// CampaignData is information.campaign_data; every value is sent as a
	// string. A key set to "" is not sent.
	CampaignData map[string]string `yaml:"campaign_data"`
	Invoice      Invoice           `yaml:"invoice"`
}

// Invoice says where the order's invoice is downloaded from and how it goes
// into the ticket.
type Invoice struct {
	From     string `yaml:"from"`      // template of the invoice URL; "" = no invoice
	Field    string `yaml:"field"`     // campaign_data key of the uploaded document
	FileName string `yaml:"file_name"` // template of the uploaded file's name
	MaxSize  Size   `yaml:"max_size"`
	// Required: an invoice that cannot be had fails the ticket; when false
	// the ticket is created without it and the result says why.
	Required bool `yaml:"required"`
	// AllowedHosts limits the hosts invoices (and their redirects) are
	// fetched from; empty = any host (warned).
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Enabled reports whether tickets can be created (a URL and credentials).
func (d *Digishare) Enabled() bool {
	return d != nil && d.BaseURL != "" && (d.Token != "" || (d.ClientID != "" && d.ClientSecret != ""))
}

// ClientCredentials reports whether the client gets its token with client
// credentials rather than using a personal access token.
func (d *Digishare) ClientCredentials() bool {
	return d != nil && d.Token == "" && d.ClientID != "" && d.ClientSecret != ""
}

func (d *Digishare) setDefaults() {
	d.BaseURL = "https://api.digishare.ma/v1"
	d.Limits.setDefaults()
	d.Timeout = Duration(30 * time.Second)
	d.Ticket = DigishareTicket{
		ExternalID: "ORDER-{order.orderId}",
		Subject:    "Order Confirmation",
		Lang:       "fr",
		Third: map[string]string{
			"ext_ref": "{order.customerOrderNumber}",
			"name":    "{order.shippingAddress.customerName|order.billingAddress.customerName}",
			"wa_id":   "{wa_id}",
			"email":   "{order.shippingAddress.email|order.billingAddress.email}",
		},
		CampaignData: map[string]string{
			"order_id":         "{order.orderId}",
			"items_count":      "{items_count}",
			"order_total":      "{order.orderTotal}",
			"delivery_address": "{order.shippingAddress.addressLine1}, {order.shippingAddress.city}",
		},
		Invoice: Invoice{
			From:     "{order.items.0.invoiceUrl}",
			Field:    "invoice_document",
			FileName: "invoice-{order.orderId}",
			MaxSize:  10 << 20,
			Required: true,
		},
	}
}

// ExpertSenderOrders registers orders with ExpertSender: POST /orders.
type ExpertSenderOrders struct {
	Mode     string `yaml:"mode"`      // Add | AddOrReplace
	MatchBy  string `yaml:"match_by"`  // optional, sent as matchBy
	Currency string `yaml:"currency"`  // exactly 3 letters; "" = not sent
	TimeZone string `yaml:"time_zone"` // optional, sent as timeZone (ExpertSender's zone names)
	Status   string `yaml:"status"`    // status of a newly registered order
}

func (o *ExpertSenderOrders) setDefaults() {
	o.Mode = "AddOrReplace"
	o.Status = "placed"
}

// OrdersEnabled reports whether orders can be registered: the target is
// enabled and its orders section present.
func (e *ExpertSender) OrdersEnabled() bool { return e.Enabled() && e.Orders != nil }

// validateOrderIntake checks intake, targets.digishare and
// targets.expertsender.orders.
func (d *decoder) validateOrderIntake(c *Config) {
	in := &c.Intake
	if !strings.HasPrefix(in.Path, "/") {
		d.fail("intake.path", "must start with /")
	} else if in.Path == c.Webhook.Path {
		d.fail("intake.path", "must differ from webhook.path")
	}
	if in.MaxBody <= 0 || in.MaxBody > 64<<20 {
		d.fail("intake.max_body", "must be between 1 byte and 64MiB")
	}
	if _, err := loadZone(in.TimeZone); err != nil {
		d.fail("intake.time_zone", err.Error())
	}
	if ds := c.Targets.Digishare; ds != nil {
		d.validateDigishare(ds, c.OrderID)
	}
	if es := c.Targets.ExpertSender; es != nil && es.Orders != nil {
		d.validateExpertSenderOrders(es.Orders)
	}
}

func (d *decoder) validateDigishare(ds *Digishare, oid OrderID) {
	const p = "targets.digishare"
	d.checkURL(p+".base_url", ds.BaseURL)
	if strings.HasPrefix(ds.BaseURL, "http://") {
		d.warn(p+".base_url", "is plain http: Digishare's API answers over https only")
	}
	d.checkLimits(p, &ds.Limits)
	switch {
	case ds.Token != "" && (ds.ClientID != "" || ds.ClientSecret != ""):
		d.fail(p+".token", "set either token or client_id and client_secret, not both")
	case (ds.ClientID == "") != (ds.ClientSecret == ""):
		d.fail(p+".client_id", "client_id and client_secret go together")
	}
	t := &ds.Ticket
	tp := p + ".ticket"
	d.template(tp+".type_ticket_id", t.TypeTicketID, "the Digishare ticket type id (e.g. npvrxamq9l94y8dz)")
	d.template(tp+".ticket_status_id", t.TicketStatusID, "the Digishare status of a new ticket (e.g. x9q3wrlv0m7vzea8)")
	d.template(tp+".external_id", t.ExternalID, "the ticket's external id, e.g. ORDER-{order.orderId}")
	d.template(tp+".subject", t.Subject, "")
	d.template(tp+".lang", t.Lang, "")
	for _, k := range sortedKeys(t.Third) {
		req := ""
		if k == "wa_id" {
			req = "the customer's WhatsApp number, {wa_id}"
		}
		d.template(tp+".third."+k, t.Third[k], req)
	}
	if _, ok := t.Third["wa_id"]; !ok {
		d.fail(tp+".third", "wa_id is required (the customer's WhatsApp number: {wa_id})")
	}
	for _, k := range sortedKeys(t.CampaignData) {
		d.template(tp+".campaign_data."+k, t.CampaignData[k], "")
	}
	inv := &t.Invoice
	ip := tp + ".invoice"
	d.template(ip+".from", inv.From, "")
	d.template(ip+".file_name", inv.FileName, "")
	if inv.From != "" {
		switch {
		case strings.TrimSpace(inv.Field) == "":
			d.fail(ip+".field", "must name the campaign_data key of the invoice document")
		case t.CampaignData[inv.Field] != "":
			d.fail(ip+".field", fmt.Sprintf("campaign_data.%s is already a template; the invoice needs a key of its own", inv.Field))
		}
		if len(inv.AllowedHosts) == 0 {
			d.warn(ip+".allowed_hosts", "is empty: invoices are downloaded from any host an order names (list them, e.g. [storage.googleapis.com])")
		}
	}
	if inv.MaxSize <= 0 || inv.MaxSize > 64<<20 {
		d.fail(ip+".max_size", "must be between 1 byte and 64MiB")
	}
	for i, h := range inv.AllowedHosts {
		if h = strings.TrimSpace(h); h == "" || strings.ContainsAny(h, "/:@?# ") {
			d.fail(fmt.Sprintf("%s.allowed_hosts[%d]", ip, i), fmt.Sprintf("%q is not a host name (write storage.googleapis.com, without scheme, port or path)", h))
		}
	}
	d.checkOrderIDRoundTrip(t, oid)
}

// template checks a ticket template's placeholders; required (non-empty)
// says the value must be there and what it is.
func (d *decoder) template(path, tmpl, required string) {
	if required != "" && strings.TrimSpace(tmpl) == "" {
		d.fail(path, "is required: "+required)
		return
	}
	if err := placeholder.Order.Check(tmpl); err != nil {
		d.fail(path, err.Error())
	}
}

// checkOrderIDRoundTrip warns when the ticket would not give the order id
// back to the status sync (order_id.from, order_id.strip_prefix): status
// updates of tickets made from orders would then not find their order.
func (d *decoder) checkOrderIDRoundTrip(t *DigishareTicket, oid OrderID) {
	const probe = "statusbridge-order-id-probe"
	gives := func(tmpl string) bool {
		out, err := placeholder.Order.Render(tmpl, func(name string) (string, bool) {
			if name == "order.orderId" {
				return probe, true
			}
			return "other", true // any other value means the id is not alone
		}, nil)
		return err == nil && strings.TrimPrefix(strings.TrimSpace(out), oid.StripPrefix) == probe
	}
	strip := ""
	if oid.StripPrefix != "" {
		strip = fmt.Sprintf(" once order_id.strip_prefix %q is removed", oid.StripPrefix)
	}
	switch {
	case oid.From == "external_id":
		if !gives(t.ExternalID) {
			d.warn("targets.digishare.ticket.external_id", fmt.Sprintf("%q does not give back the order id%s (order_id.from is external_id): the status sync would not find the order; write %s{order.orderId}", t.ExternalID, strip, oid.StripPrefix))
		}
	case oid.From == "ticket_number":
		d.warn("order_id.from", "is ticket_number, which Digishare makes up: status updates of tickets made from orders would not find their order; use external_id")
	case strings.HasPrefix(oid.From, "campaign_data."):
		key := strings.TrimPrefix(oid.From, "campaign_data.")
		if !gives(t.CampaignData[key]) {
			d.warn("targets.digishare.ticket.campaign_data."+key, fmt.Sprintf("%q does not give back the order id%s (order_id.from is %s): the status sync would not find the order; write %s{order.orderId}", t.CampaignData[key], strip, oid.From, oid.StripPrefix))
		}
	}
}

func (d *decoder) validateExpertSenderOrders(o *ExpertSenderOrders) {
	const p = "targets.expertsender.orders"
	if !oneOf(o.Mode, "Add", "AddOrReplace") {
		d.fail(p+".mode", fmt.Sprintf("%q is not Add or AddOrReplace", o.Mode))
	}
	if o.Currency != "" && !threeLetters(o.Currency) {
		d.fail(p+".currency", fmt.Sprintf("%q is not exactly 3 letters (e.g. MAD)", o.Currency))
	}
	if len(o.TimeZone) > 100 {
		d.fail(p+".time_zone", "is longer than ExpertSender's 100 characters")
	}
	if strings.TrimSpace(o.Status) == "" {
		d.fail(p+".status", "must not be empty (e.g. placed)")
	}
	if strings.TrimSpace(o.MatchBy) != o.MatchBy {
		d.fail(p+".match_by", "must not have surrounding spaces")
	}
}

func threeLetters(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range s {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
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
