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
