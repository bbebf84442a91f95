package config

import (
	"strings"
	"testing"
	"time"
)

func TestExampleConfigOrderIntake(t *testing.T) {
	cfg, err := Resolve("../config.example.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if in := cfg.Intake; in.Path != "/webhooks/orders" || in.MaxBody != 1<<20 || in.Token != "" || in.Location() != time.UTC {
		t.Errorf("intake = %+v", in)
	}
	ds := cfg.Targets.Digishare
	if ds == nil || ds.Enabled() || ds.BaseURL != "https://api.digishare.ma/v1" || ds.Timeout.D() != 30*time.Second {
		t.Fatalf("digishare = %+v, want configured but disabled (no credentials), timeout 30s", ds)
	}
	if ds.Ticket.TypeTicketID != "npvrxamq9l94y8dz" || ds.Ticket.Invoice.MaxSize != 10<<20 || !ds.Ticket.Invoice.Required {
		t.Errorf("ticket = %+v", ds.Ticket)
	}
	es := cfg.Targets.ExpertSender
	if es.Orders == nil || es.Orders.Currency != "MAD" || es.Orders.TimeZone != "Morocco Standard Time" || es.OrdersEnabled() {
		t.Errorf("expertsender.orders = %+v (enabled %v), want present but disabled without api_key", es.Orders, es.OrdersEnabled())
	}
	if len(cfg.Warnings) != 0 { // the example lists its invoice hosts; its external_id gives the order id back
		t.Errorf("example warnings %q, want none", warnText(cfg.Warnings))
	}
	// With credentials from the environment both steps are enabled.
	cfg, err = Resolve("../config.example.yaml", env(map[string]string{"DIGISHARE_API_TOKEN": "pat", "EXPERTSENDER_API_KEY": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Targets.Digishare.Enabled() || cfg.Targets.Digishare.ClientCredentials() || !cfg.Targets.ExpertSender.OrdersEnabled() {
		t.Errorf("with credentials: digishare enabled %v, expertsender orders enabled %v",
			cfg.Targets.Digishare.Enabled(), cfg.Targets.ExpertSender.OrdersEnabled())
	}
}

func TestDigishareDefaultsMergeWithFile(t *testing.T) {
	yaml := `intake: { time_zone: Africa/Casablanca, token: t }
order_id: { strip_prefix: ORDER- }
targets:
  digishare:
    client_id: id
    client_secret: secret
    ticket:
      type_ticket_id: npvrxamq9l94y8dz
      ticket_status_id: x9q3wrlv0m7vzea8
      third: { name: "{order.billingAddress.customerName}", email: "" }
      campaign_data: { shipping: "{order.shipMethod}" }
      invoice: { max_size: 2MiB, required: false, allowed_hosts: [storage.googleapis.com] }
  expertsender:
    api_key: k
    orders: { currency: mad }
`
	cfg, err := Parse([]byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Intake.Location().String(); got != "Africa/Casablanca" {
		t.Errorf("intake location = %s", got)
	}
	ds := cfg.Targets.Digishare
	if !ds.Enabled() || !ds.ClientCredentials() {
		t.Errorf("client credentials: enabled %v, ClientCredentials %v", ds.Enabled(), ds.ClientCredentials())
	}
	tk := ds.Ticket
	if tk.ExternalID != "ORDER-{order.orderId}" || tk.Subject != "Order Confirmation" || tk.Lang != "fr" {
		t.Errorf("ticket defaults lost: %+v", tk)
	}
	if tk.Third["name"] != "{order.billingAddress.customerName}" || tk.Third["wa_id"] != "{wa_id}" ||
		tk.Third["ext_ref"] != "{order.customerOrderNumber}" || tk.Third["email"] != "" {
		t.Errorf("third = %q, want the file's values over the defaults, the others kept", tk.Third)
	}
	if len(tk.CampaignData) != 5 || tk.CampaignData["shipping"] != "{order.shipMethod}" || tk.CampaignData["items_count"] != "{items_count}" {
		t.Errorf("campaign_data = %q, want the 4 defaults and the file's key", tk.CampaignData)
	}
	if inv := tk.Invoice; inv.MaxSize != 2<<20 || inv.Required || inv.From != "{order.items.0.invoiceUrl}" || inv.Field != "invoice_document" {
		t.Errorf("invoice = %+v", inv)
	}
	if o := cfg.Targets.ExpertSender.Orders; o.Mode != "AddOrReplace" || o.Status != "placed" || o.Currency != "mad" {
		t.Errorf("expertsender.orders = %+v, want defaults mode AddOrReplace, status placed", o)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings = %q, want none", cfg.Warnings)
	}
}

func TestOrderIntakeProblems(t *testing.T) {
	yaml := `webhook: { path: /hooks }
intake: { path: /hooks, time_zone: Mars/Olympus, max_body: 0 }
targets:
  digishare:
    token: pat
    client_id: id
    ticket:
      external_id: "ORDER-{order_id}"
      subject: "{status}"
      third: { wa_id: "", name: "{order.shippingAddress..customerName}" }
      campaign_data: { total: "{order.orderTotal|total}", invoice_document: "{order.x}" }
      invoice: { max_size: 100MiB, allowed_hosts: ["https://storage.googleapis.com", ""], file_name: "{order}" }
  expertsender:
    orders: { mode: Replace, currency: DH, status: "", time_zone: ` + strings.Repeat("x", 101) + ` }
`
	_, err := Parse([]byte(yaml), env(nil))
	for _, p := range []struct {
		path string
		line int
		msg  string
	}{
		{"intake.path", 2, "differ from webhook.path"},
		{"intake.time_zone", 2, `"Mars/Olympus" is not an IANA time zone`},
		{"intake.max_body", 2, "between"},
		{"targets.digishare.token", 5, "not both"},
		{"targets.digishare.ticket.type_ticket_id", 0, "is required"},
		{"targets.digishare.ticket.ticket_status_id", 0, "is required"},
		{"targets.digishare.ticket.external_id", 8, "unknown placeholder {order_id}"},
		{"targets.digishare.ticket.subject", 9, "unknown placeholder {status}"},
		{"targets.digishare.ticket.third.wa_id", 10, "is required"},
		{"targets.digishare.ticket.third.name", 10, "unknown placeholder {order.shippingAddress..customerName}"},
		{"targets.digishare.ticket.campaign_data.total", 11, "unknown placeholder {total}"},
		{"targets.digishare.ticket.invoice.field", 0, "campaign_data.invoice_document is already a template"},
		{"targets.digishare.ticket.invoice.max_size", 12, "between"},
		{"targets.digishare.ticket.invoice.file_name", 12, "unknown placeholder {order}"},
		{"targets.digishare.ticket.invoice.allowed_hosts[0]", 12, "not a host name"},
		{"targets.digishare.ticket.invoice.allowed_hosts[1]", 12, "not a host name"},
		{"targets.expertsender.orders.mode", 14, `"Replace" is not Add or AddOrReplace`},
		{"targets.expertsender.orders.currency", 14, "exactly 3 letters"},
		{"targets.expertsender.orders.status", 14, "must not be empty"},
		{"targets.expertsender.orders.time_zone", 14, "100 characters"},
	} {
		assertProblem(t, err, p.path, p.line, p.msg)
	}
	_, err = Parse([]byte("targets: { digishare: { client_secret: s, ticket: { type_ticket_id: a, ticket_status_id: b } } }\n"), env(nil))
	assertProblem(t, err, "targets.digishare.client_id", 0, "go together")
}

func TestOrderIntakeWarnings(t *testing.T) {
	base := func(orderID, externalID, extra string) string {
		return "order_id: " + orderID + "\nintake: { token: t }\ntargets:\n  digishare:\n    ticket:\n" +
			"      type_ticket_id: a\n      ticket_status_id: b\n      external_id: \"" + externalID + "\"\n" +
			"      invoice: { allowed_hosts: [h.example] }\n" + extra
	}
	for _, tc := range []struct {
		name, yaml, warn string // warn "" = no warning at all
	}{
		{"default round trip", base("{ from: external_id, strip_prefix: ORDER- }", "ORDER-{order.orderId}", ""), ""},
		{"no prefix", base("{ from: external_id }", "{order.orderId}", ""), ""},
		{"prefix absent from the id is harmless", base("{ from: external_id, strip_prefix: ORDER- }", "{order.orderId}", ""), ""},
		{"another prefix", base("{ from: external_id, strip_prefix: ORDER- }", "ORD-{order.orderId}", ""),
			`line 8: targets.digishare.ticket.external_id: "ORD-{order.orderId}" does not give back the order id once order_id.strip_prefix "ORDER-" is removed`},
		{"prefix not stripped", base("{ from: external_id }", "ORDER-{order.orderId}", ""), "does not give back the order id (order_id.from is external_id)"},
		{"another field", base("{ from: external_id, strip_prefix: ORDER- }", "ORDER-{order.customerOrderNumber}", ""), "does not give back"},
		{"alternative before the id", base("{ from: external_id }", "{order.customerOrderNumber|order.orderId}", ""), "does not give back"},
		{"suffix", base("{ from: external_id }", "{order.orderId}-1", ""), "does not give back"},
		{"ticket_number", base("{ from: ticket_number }", "{order.orderId}", ""), "order_id.from: is ticket_number"},
		{"campaign_data key with the id", base("{ from: campaign_data.order_id }", "X", ""), ""},
		{"campaign_data key without it", base("{ from: campaign_data.ref }", "{order.orderId}", ""), "targets.digishare.ticket.campaign_data.ref: \"\" does not give back"},
		{"no invoice: allowed_hosts not needed", base("{ from: external_id }", "{order.orderId}", "      invoice: { from: \"\" }\n"), ""},
		{"plain http", base("{ from: external_id }", "{order.orderId}", "    base_url: http://api.digishare.ma/v1\n"), "targets.digishare.base_url: is plain http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := tc.yaml
			if tc.name == "no invoice: allowed_hosts not needed" {
				yaml = strings.Replace(yaml, "      invoice: { allowed_hosts: [h.example] }\n", "", 1)
			}
			cfg, err := Parse([]byte(yaml), env(nil))
			if err != nil {
				t.Fatal(err)
			}
			got := warnText(cfg.Warnings)
			if tc.warn == "" && got != "" || tc.warn != "" && !strings.Contains(got, tc.warn) {
				t.Errorf("warnings = %q, want %q", cfg.Warnings, tc.warn)
			}
		})
	}
	cfg, err := Parse(nil, env(nil))
	if err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("empty config warnings = %q, %v; want none (an empty intake token is said at start)", cfg.Warnings, err)
	}
}

func TestIntakeLocationOutsideParse(t *testing.T) {
	if got := (Intake{TimeZone: "Africa/Casablanca"}).Location().String(); got != "Africa/Casablanca" {
		t.Errorf("Location of a hand-made Intake = %s", got)
	}
	if got := (Intake{TimeZone: "nope"}).Location(); got != time.UTC {
		t.Errorf("Location of a bad zone = %s, want UTC", got)
	}
	if got := Default().Intake; got.Location() != time.UTC || got.Path != "/webhooks/orders" {
		t.Errorf("default intake = %+v", got)
	}
}

func warnText(ws []Problem) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.String()
	}
	return strings.Join(s, "\n")
}
