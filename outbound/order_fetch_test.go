package outbound

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
)

func orderSystemConfig(base string) config.OrderSystem {
	return config.OrderSystem{BaseURL: base, Token: "os-token-xyz", Limits: config.Limits{Timeout: config.Duration(2 * time.Second)}}
}

func TestOrderFetch(t *testing.T) {
	seed, err := os.ReadFile("../orders/testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := fake.NewServer(t, fake.Answer{Body: string(seed)})
	f := NewOrderFetcher(orderSystemConfig(srv.URL+"/"), 1)
	o, resp, err := f.Fetch(t.Context(), "44212809")
	if err != nil {
		t.Fatalf("Fetch = %v", err)
	}
	if o.ID != "44212809" || o.IDOnly || string(o.Raw) != string(seed) || resp.StatusCode != 200 {
		t.Errorf("Fetch = %q (IDOnly %v, raw kept %v), %d", o.ID, o.IDOnly, string(o.Raw) == string(seed), resp.StatusCode)
	}
	r := srv.Requests()[0]
	if r.Method != http.MethodGet || r.Path != "/_ah/api/esb/v2/order/44212809" || r.Header.Get("Authorization") != "Bearer os-token-xyz" {
		t.Errorf("request %s %s, Authorization %q", r.Method, r.Path, r.Header.Get("Authorization"))
	}
	// Without a token no Authorization is sent.
	cfg := orderSystemConfig(srv.URL)
	cfg.Token = ""
	if _, _, err := NewOrderFetcher(cfg, 1).Fetch(t.Context(), "44212809"); err == nil {
		t.Error("the fake's default answer {} was taken for an order")
	}
	if h := srv.Requests()[1].Header.Get("Authorization"); h != "" {
		t.Errorf("Authorization %q sent without a token", h)
	}
}

func TestOrderFetchEscapesTheID(t *testing.T) {
	var raw string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw = r.URL.EscapedPath()
		_, _ = w.Write([]byte(`{"orderId":"A/1 ?#","orderTotal":1}`))
	}))
	t.Cleanup(srv.Close)
	o, _, err := NewOrderFetcher(orderSystemConfig(srv.URL), 1).Fetch(t.Context(), "A/1 ?#")
	if err != nil || o.ID != "A/1 ?#" {
		t.Fatalf("Fetch = %v, %v", o, err)
	}
	if raw != "/_ah/api/esb/v2/order/A%2F1%20%3F%23" {
		t.Errorf("path = %q, want the id escaped as one segment", raw)
	}
}

func TestOrderFetchFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     fake.Answer
		permanent  bool
		says       string
		retryAfter time.Duration
	}{
		{"unknown order", fake.Answer{Code: 404, Body: `{"error":"not found"}`}, true, "order unknown to the order system", 0},
		{"refused", fake.Answer{Code: 403}, true, "HTTP 403", 0},
		{"redirect", fake.Answer{Code: 302, Header: map[string]string{"Location": "/login"}}, true, "redirect", 0},
		{"error body", fake.Answer{Body: `{"error":"failed to read order","reason":"db down"}`}, true, "db down", 0},
		{"not JSON", fake.Answer{Body: `<html>login</html>`}, true, "not an order: body is not JSON", 0},
		{"no orderId", fake.Answer{Body: `{"order":{}}`}, true, "missing orderId", 0},
		{"another order", fake.Answer{Body: `{"orderId":"999","items":[]}`}, true, `answered order "999" for order "44212809"`, 0},
		{"only the id", fake.Answer{Body: `{"orderId":44212809}`}, true, "nothing but orderId", 0},
		{"server error", fake.Answer{Code: 500, Body: `{"error":"boom"}`}, false, "HTTP 500", 0},
		{"bad gateway", fake.Answer{Code: 502}, false, "HTTP 502", 0},
		{"rate limited", fake.Answer{Code: 429, Header: map[string]string{"Retry-After": "9"}}, false, "HTTP 429", 9 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fake.NewServer(t, tc.answer)
			_, _, err := NewOrderFetcher(orderSystemConfig(srv.URL), 1).Fetch(t.Context(), "44212809")
			var oe *Error
			if !errors.As(err, &oe) || oe.Permanent != tc.permanent || !strings.Contains(oe.Msg, tc.says) || oe.RetryAfter != tc.retryAfter {
				t.Errorf("Fetch = %v, want permanent=%v saying %q (Retry-After %v)", err, tc.permanent, tc.says, tc.retryAfter)
			}
			if oe != nil && strings.Contains(oe.Msg, "os-token-xyz") {
				t.Errorf("message shows the token: %s", oe.Msg)
			}
		})
	}
}

func TestOrderFetchTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	cfg := orderSystemConfig(srv.URL)
	cfg.Timeout = config.Duration(200 * time.Millisecond)
	_, _, err := NewOrderFetcher(cfg, 1).Fetch(t.Context(), "1")
	var oe *Error
	if !errors.As(err, &oe) || oe.Permanent || !strings.Contains(oe.Msg, "timeout") {
		t.Errorf("Fetch from a hanging order system = %v, want a retryable timeout", err)
	}
}
