package outbound

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// TestAttemptKeepsTheRequestSentWithSecretsRedacted: each attempt keeps the
// request it sent — method, URL, headers, body up to 4 KiB — with secret
// headers redacted by name and every configured secret by value, the URL
// included.
func TestAttemptKeepsTheRequestSentWithSecretsRedacted(t *testing.T) {
	t.Setenv("CRM_TOKEN", "crm-token-abcdef")
	t.Setenv("CRM_SIGNATURE", "sig-0123456789")
	es, crm := fake.NewServer(t), fake.NewServer(t)
	long := strings.Repeat("n", 5000)
	h := newHarnessYAML(t, fmt.Sprintf(`
targets:
  expertsender: { base_url: %q, api_key: secret-key-123, timeout: 2s }
  http:
    crm:
      method: PUT
      url: "%s/crm/{order_id}?k=secret-key-123"
      headers: { Authorization: "Bearer ${CRM_TOKEN}", X-Signature: "${CRM_SIGNATURE}", X-Source: statusbridge-test }
      body: { order: "{order_id}", status: "{status}", echo: "${CRM_TOKEN}", note: %q }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid, http: { crm: confirmed } } } }
`, es.URL, crm.URL, long))
	h.start(Policy{Initial: time.Millisecond})
	res := h.ingest("t1", "42", confirmed, "")
	byTarget := map[string]*bridge.Delivery{}
	for _, d := range res.Deliveries {
		byTarget[d.Target] = h.waitDelivery(d.ID, bridge.Done)
	}
	if got := crm.Requests(); len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer crm-token-abcdef" {
		t.Fatalf("the CRM did not get the real token: %+v", got)
	}
	r := byTarget["http.crm"].Attempts[0].Request
	if r == nil {
		t.Fatal("no request kept with the attempt")
	}
	if r.Method != "PUT" || r.URL != crm.URL+"/crm/42?k=***" {
		t.Errorf("request line = %s %s", r.Method, r.URL)
	}
	for k, want := range map[string]string{"Authorization": "[redacted]", "X-Signature": "[redacted]", "X-Source": "statusbridge-test",
		"Content-Type": "application/json", "User-Agent": "statusbridge"} {
		if r.Headers[k] != want {
			t.Errorf("header %s = %q, want %q", k, r.Headers[k], want)
		}
	}
	if len(r.Body) != bridge.SentRequestBodyLimit || r.BodySize <= bridge.SentRequestBodyLimit || !strings.Contains(r.Body, `"echo":"***"`) {
		t.Errorf("body kept: %d bytes of %d, %.80q", len(r.Body), r.BodySize, r.Body)
	}
	es1 := byTarget["expertsender"].Attempts[0].Request
	if es1 == nil || es1.Headers["X-Api-Key"] != "[redacted]" || es1.Body != `{"orderId":"42","orderStatus":"paid","websiteId":0}` && es1.Body != `{"orderId":"42","orderStatus":"paid"}` {
		t.Errorf("ExpertSender request = %+v", es1)
	}
	for _, d := range byTarget {
		raw, _ := json.Marshal(d)
		for _, secret := range []string{"secret-key-123", "crm-token-abcdef", "sig-0123456789"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("%s: secret %q stored: %s", d.Target, secret, raw)
			}
		}
	}
}
