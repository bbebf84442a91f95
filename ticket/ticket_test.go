package ticket

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/orders"
)

// defaults returns the ticket section's defaults, as a config file with the
// two required ids gets them.
func defaults(t testing.TB) config.DigishareTicket {
	t.Helper()
	cfg, err := config.Parse([]byte("targets: { digishare: { ticket: { type_ticket_id: npvrxamq9l94y8dz, ticket_status_id: x9q3wrlv0m7vzea8 } } }\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Targets.Digishare.Ticket
}

func decode(t testing.TB, raw string) *orders.Order {
	t.Helper()
	o, err := orders.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("Decode(%s) = %v", raw, err)
	}
	return o
}

func seed(t testing.TB) *orders.Order {
	t.Helper()
	raw, err := os.ReadFile("../orders/testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, string(raw))
}

func TestRenderSeedOrder(t *testing.T) {
	tk, err := Render(defaults(t), seed(t), "MA", "MEDIA123")
	if err != nil {
		t.Fatal(err)
	}
	// Digishare's documented request, filled from the fact sheet's order.
	want := `{"external_id":"ORDER-44212809","type_ticket_id":"npvrxamq9l94y8dz","ticket_status_id":"x9q3wrlv0m7vzea8",` +
		`"create_third_data":true,"information":{"third":{"email":"mituj@eshopbox.com","ext_ref":"TestLabel3","name":"Mituj","wa_id":"919711166382"},` +
		`"campaign_data":{"delivery_address":"House 168, South West Delhi","invoice_document":{"provider":"digishare","id":"MEDIA123"},` +
		`"items_count":"2","order_id":"44212809","order_total":"1000.0"}},"subject":"Order Confirmation","lang":"fr"}`
	if string(tk.Body) != want {
		t.Errorf("Body =\n%s\nwant\n%s", tk.Body, want)
	}
	if tk.ExternalID != "ORDER-44212809" || len(tk.Omitted) != 0 {
		t.Errorf("ExternalID = %q, Omitted = %q", tk.ExternalID, tk.Omitted)
	}
	tk, err = Render(defaults(t), seed(t), "MA", "")
	if err != nil || strings.Contains(string(tk.Body), "invoice_document") {
		t.Errorf("without a media id the body has an invoice: %s, %v", tk.Body, err)
	}
}

func TestRenderLeavesOutMissingValues(t *testing.T) {
	o := decode(t, `{"orderId":12345,"orderTotal":500.00,"items":[{"quantity":2},{"quantity":3}],
		"shippingAddress":{"contactPhone":"0612345678","countryCode":"MA","city":"Casablanca"},
		"billingAddress":{"customerName":"Ahmed Alami"}}`)
	tk, err := Render(defaults(t), o, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ExternalID  string `json:"external_id"`
		Information struct {
			Third        map[string]string `json:"third"`
			CampaignData map[string]any    `json:"campaign_data"`
		} `json:"information"`
	}
	if err := json.Unmarshal(tk.Body, &got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"name": "Ahmed Alami", "wa_id": "212612345678"}; !reflect.DeepEqual(got.Information.Third, want) {
		t.Errorf("third = %v, want %v (name from the billing address, ext_ref and email left out)", got.Information.Third, want)
	}
	if want := map[string]any{"order_id": "12345", "items_count": "5", "order_total": "500.00"}; !reflect.DeepEqual(got.Information.CampaignData, want) {
		t.Errorf("campaign_data = %v, want %v (numbers as written, as strings; the address with a missing part left out)", got.Information.CampaignData, want)
	}
	if got.ExternalID != "ORDER-12345" {
		t.Errorf("external_id = %q", got.ExternalID)
	}
	if want := []string{"campaign_data.delivery_address", "third.email", "third.ext_ref"}; !reflect.DeepEqual(tk.Omitted, want) {
		t.Errorf("Omitted = %q, want %q", tk.Omitted, want)
	}
}

func TestRenderFailures(t *testing.T) {
	withPhone := `{"orderId":"1","shippingAddress":{"contactPhone":"0612345678"}}`
	for _, tc := range []struct {
		name, order string
		edit        func(*config.DigishareTicket)
		field, why  string
	}{
		{"no phone", `{"orderId":"1"}`, nil, "third.wa_id", "shippingAddress.contactPhone is missing"},
		{"phone does not parse", `{"orderId":"1","shippingAddress":{"contactPhone":"not a phone"}}`, nil, "third.wa_id", "cannot be parsed"},
		{"invalid phone", `{"orderId":"1","shippingAddress":{"contactPhone":"0612"}}`, nil, "third.wa_id", "***612 is not a valid number"},
		{"wa_id not digits", `{"orderId":"1","wa":"+212 6"}`, func(c *config.DigishareTicket) { c.Third["wa_id"] = "{order.wa}" }, "third.wa_id", "not digits"},
		{"wa_id without value", `{"orderId":"1"}`, func(c *config.DigishareTicket) { c.Third["wa_id"] = "{order.wa}" }, "third.wa_id", "{order.wa} has no value"},
		{"external_id without value", withPhone, func(c *config.DigishareTicket) { c.ExternalID = "ORDER-{order.customerOrderNumber}" }, "external_id", "{order.customerOrderNumber} has no value"},
		{"external_id empty", withPhone, func(c *config.DigishareTicket) { c.ExternalID = "" }, "external_id", "empty"},
		{"type id without value", withPhone, func(c *config.DigishareTicket) { c.TypeTicketID = "{order.type}" }, "type_ticket_id", "no value"},
		{"status id empty", withPhone, func(c *config.DigishareTicket) { c.TicketStatusID = " " }, "ticket_status_id", "no value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaults(t)
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			tk, err := Render(cfg, decode(t, tc.order), "MA", "m")
			var te *Error
			if !errors.As(err, &te) || te.Field != tc.field || !strings.Contains(te.Reason, tc.why) {
				t.Fatalf("Render = %v, %v; want *Error on %s saying %q", tk, err, tc.field, tc.why)
			}
			if strings.Contains(err.Error(), "0612345678") || strings.Contains(err.Error(), "612345678") {
				t.Errorf("error shows the phone number: %v", err)
			}
		})
	}
}

func TestRenderKeepsValuesExact(t *testing.T) {
	name := `Ahmed "the \ boss" {wa_id} </script> أحمد 🎉` + "\n\t"
	o := decode(t, `{"orderId":"A/1","shippingAddress":{"contactPhone":"+212612345678","customerName":`+mustJSON(name)+`}}`)
	cfg := defaults(t)
	cfg.Subject = "Commande {order.orderId} — {order.shippingAddress.customerName}"
	cfg.Lang = ""
	tk, err := Render(cfg, o, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(tk.Body) {
		t.Fatalf("invalid JSON: %s", tk.Body)
	}
	var got map[string]any
	_ = json.Unmarshal(tk.Body, &got)
	third := got["information"].(map[string]any)["third"].(map[string]any)
	if third["name"] != name {
		t.Errorf("name = %q, want byte for byte %q", third["name"], name)
	}
	if got["subject"] != "Commande A/1 — "+name {
		t.Errorf("subject = %q", got["subject"])
	}
	if _, ok := got["lang"]; ok || contains(tk.Omitted, "lang") {
		t.Errorf("an empty lang template must be neither sent nor named: %s, %q", tk.Body, tk.Omitted)
	}
	if !strings.Contains(string(tk.Body), "</script>") {
		t.Errorf("HTML characters were escaped: %s", tk.Body)
	}
}

func TestInvoiceURLAndFileName(t *testing.T) {
	cfg := defaults(t)
	u, none := InvoiceURL(cfg, seed(t))
	if u != "https://storage.googleapis.com/invoicefiles-staging/invoice/TestLabel359777119-1702992503756.pdf" || none != "" {
		t.Errorf("InvoiceURL(seed) = %q, %q", u, none)
	}
	if u, none := InvoiceURL(cfg, decode(t, `{"orderId":1,"items":[{"sku":"x"}]}`)); u != "" || !strings.Contains(none, "the order has no value for {order.items.0.invoiceUrl}") {
		t.Errorf("InvoiceURL without one = %q, %q", u, none)
	}
	cfg.Invoice.From = ""
	if u, none := InvoiceURL(cfg, seed(t)); u != "" || !strings.Contains(none, "invoice.from is empty") {
		t.Errorf("InvoiceURL without invoice.from = %q, %q", u, none)
	}
	cfg = defaults(t)
	if got := FileName(cfg, seed(t)); got != "invoice-44212809" {
		t.Errorf("FileName = %q", got)
	}
	if got := FileName(cfg, decode(t, `{"orderId":"../a/b\\c\u0001"}`)); got != "invoice-.._a_b_c_" {
		t.Errorf("FileName(hostile) = %q", got)
	}
	cfg.Invoice.FileName = "{order.nope}"
	if got := FileName(cfg, seed(t)); got != "invoice" {
		t.Errorf("FileName without value = %q, want invoice", got)
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
