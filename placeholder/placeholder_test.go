package placeholder

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func lookup(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok && v != "" }
}

func TestRenderJSONKeepsHostileValuesExact(t *testing.T) {
	hostile := map[string]string{
		"third.name":              `Ahmed "the \ boss" {order_id} </script><script>alert(1)</script>`,
		"campaign_data.note":      "مرحبا بك — طلبك مؤكد 🎉",
		"order_id":                "42",
		"status":                  "confirmed",
		"campaign_data.multiline": "line1\nline2\ttab\u0000nul",
	}
	body := map[string]any{
		"orderId": "{order_id}", "status": "{status}", "name": "{third.name}",
		"note":   "Note: {campaign_data.note}!",
		"nested": []any{"{campaign_data.multiline}", 5, true, nil, map[string]any{"n": "{order_id}"}},
		"plain":  "{ not a placeholder }",
	}
	raw, err := RenderJSON(body, lookup(hostile))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) {
		t.Fatalf("invalid JSON: %s", raw)
	}
	if !strings.Contains(string(raw), "</script>") || !strings.Contains(string(raw), "🎉") || !strings.Contains(string(raw), "مرحبا") {
		t.Errorf("values were escaped instead of sent as is: %s", raw)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["name"] != hostile["third.name"] {
		t.Errorf("name = %q, want byte for byte %q (a placeholder inside a value is not expanded again)", got["name"], hostile["third.name"])
	}
	if got["note"] != "Note: "+hostile["campaign_data.note"]+"!" || got["orderId"] != "42" || got["plain"] != "{ not a placeholder }" {
		t.Errorf("got %v", got)
	}
	nested := got["nested"].([]any)
	if nested[0] != hostile["campaign_data.multiline"] || nested[1] != float64(5) || nested[2] != true || nested[3] != nil {
		t.Errorf("nested = %v", nested)
	}
}

func TestMissingValueFails(t *testing.T) {
	for name, vals := range map[string]map[string]string{
		"absent": {},
		"empty":  {"third.email": ""},
	} {
		_, err := RenderJSON(map[string]any{"email": "{third.email}"}, lookup(vals))
		var me *MissingError
		if !errors.As(err, &me) || me.Name != "third.email" {
			t.Errorf("%s: err = %v, want MissingError for third.email", name, err)
		}
	}
}

func TestRenderURL(t *testing.T) {
	vals := lookup(map[string]string{"order_id": "A/1 ?&#", "status": "a&b=c d"})
	got, err := RenderURL("https://crm.example.com/orders/{order_id}/x?status={status}&k=v", vals)
	if err != nil {
		t.Fatal(err)
	}
	want := "https://crm.example.com/orders/A%2F1%20%3F&%23/x?status=a%26b%3Dc+d&k=v"
	if got != want {
		t.Errorf("RenderURL = %q, want %q", got, want)
	}
}

func TestRenderHeaderStripsNewlines(t *testing.T) {
	got, err := RenderHeader("Bearer {third.name}", lookup(map[string]string{"third.name": "x\r\nX-Evil: 1"}))
	if err != nil || got != "Bearer xX-Evil: 1" {
		t.Errorf("RenderHeader = %q, %v", got, err)
	}
}

func TestCheck(t *testing.T) {
	for _, ok := range []string{"{order_id}", "/orders/{order_id}/{status}", "{third.wa_id}", "{campaign_data.note}", "{ }", "plain", "{changed_at}{status_name}{ticket_number}{ticket_id}{status_id}"} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"{orderid}", "{third.}", "{customer.email}", "{Order_ID}"} {
		if err := Check(bad); err == nil {
			t.Errorf("Check(%q) accepted an unknown placeholder", bad)
		}
	}
	if err := CheckValue(map[string]any{"a": []any{"{ok_not}"}}); err == nil {
		t.Error("CheckValue missed a nested unknown placeholder")
	}
}

func TestAlternatives(t *testing.T) {
	vals := lookup(map[string]string{"third.name": "Ahmed", "campaign_data.b": "B", "campaign_data.empty": ""})
	for _, tc := range []struct{ tmpl, want, missing string }{
		{"{third.name|campaign_data.b}", "Ahmed", ""},
		{"{third.email|campaign_data.b}", "B", ""},
		{"{campaign_data.empty|third.name}", "Ahmed", ""},
		{"Hi {third.email|third.name}, {campaign_data.b}", "Hi Ahmed, B", ""},
		{"{third.email|campaign_data.empty}", "", "third.email|campaign_data.empty"},
		{"{third.name} {third.email}", "", "third.email"},
	} {
		got, err := Render(tc.tmpl, vals, nil)
		var me *MissingError
		switch {
		case tc.missing == "" && (err != nil || got != tc.want):
			t.Errorf("Render(%q) = %q, %v; want %q", tc.tmpl, got, err, tc.want)
		case tc.missing != "" && (!errors.As(err, &me) || me.Name != tc.missing):
			t.Errorf("Render(%q) = %q, %v; want MissingError for %q", tc.tmpl, got, err, tc.missing)
		}
	}
	if err := Check("{third.name|nope}"); err == nil || !strings.Contains(err.Error(), "{nope}") {
		t.Errorf("Check with an unknown alternative = %v, want it named", err)
	}
	// An alternative outside the vocabulary keeps the whole token literal.
	if got, _ := Render("{third.name|nope}", vals, nil); got != "{third.name|nope}" {
		t.Errorf("Render with an unknown alternative = %q, want it left as written", got)
	}
}

func TestOrderVocabulary(t *testing.T) {
	for _, ok := range []string{"{order.orderId}", "ORDER-{order.orderId}", "{order.items.0.invoiceUrl}", "{wa_id}", "{items_count}",
		"{order.shippingAddress.customerName|order.billingAddress.customerName}", "{order.a-b_c}"} {
		if err := Order.Check(ok); err != nil {
			t.Errorf("Order.Check(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"{order_id}", "{status}", "{third.email}", "{order.}", "{order.a..b}", "{order.a.}", "{order}", "{waid}", "{order.x|status}"} {
		if err := Order.Check(bad); err == nil {
			t.Errorf("Order.Check(%q) accepted it", bad)
		}
	}
	if err := Check("{wa_id}"); err == nil {
		t.Error("Status vocabulary accepted {wa_id}")
	}
	err := Order.Check("{nope}")
	if err == nil || err.Error() != "unknown placeholder {nope} (known: {wa_id}, {items_count}, {order.PATH})" {
		t.Errorf("Order.Check message = %v", err)
	}
	err = Check("{nope}")
	want := "unknown placeholder {nope} (known: {order_id}, {status}, {ticket_id}, {ticket_number}, {status_id}, {status_name}, {changed_at}, {third.KEY}, {campaign_data.KEY})"
	if err == nil || err.Error() != want {
		t.Errorf("Check message = %v, want %q (unchanged for status templates)", err, want)
	}
	got, err := Order.Render("{order.a}/{wa_id}", lookup(map[string]string{"order.a": "x{wa_id}", "wa_id": "212600000000"}), nil)
	if err != nil || got != "x{wa_id}/212600000000" {
		t.Errorf("Order.Render = %q, %v", got, err)
	}
	if u := Uses("a {order.x} {b|c} { } {order.y}"); strings.Join(u, ",") != "order.x,b|c,order.y" {
		t.Errorf("Uses = %q", u)
	}
}
