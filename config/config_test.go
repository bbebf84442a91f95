package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := Resolve("../config.example.yaml", env(nil))
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Webhook.MaxBody != 1<<20 || cfg.Delivery.MaxAttempts != 12 {
		t.Errorf("unexpected values: %+v", cfg)
	}
	if es := cfg.Targets.ExpertSender; es == nil || es.Enabled() || es.BaseURL != "https://api.ecdp.app" {
		t.Errorf("expertsender = %+v, want configured but disabled (no key)", es)
	}
	if got := cfg.Mapping.Statuses["yqdwrbka7kz69v8e"]; got.Name != "Order Confirmed" || got.ExpertSender != "paid" {
		t.Errorf("mapping entry = %+v", got)
	}
	if cfg.OrderID.StripPrefix != "ORDER-" {
		t.Errorf("strip_prefix = %q", cfg.OrderID.StripPrefix)
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg, err := Resolve("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Store.Path != "data/statusbridge.db" || cfg.Targets.ExpertSender != nil {
		t.Errorf("defaults = %+v", cfg)
	}
	if err := os.WriteFile("config.yaml", []byte("listen: 127.0.0.1:9999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Resolve("", env(nil))
	if err != nil || cfg.Listen != "127.0.0.1:9999" || cfg.File != "config.yaml" {
		t.Errorf("with ./config.yaml: %+v, %v", cfg, err)
	}
}

func TestEnvExpansion(t *testing.T) {
	yaml := `
webhook:
  token: ${TOKEN}
targets:
  expertsender:
    api_key: "${KEY:-fallback}"
    base_url: ${URL:-https://api.ecdp.app}
store: { path: "$${literal}" }
`
	cfg, err := Parse([]byte(yaml), env(map[string]string{"TOKEN": "a#b: c ${x}"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Webhook.Token != "a#b: c ${x}" {
		t.Errorf("token = %q: a secret with # and : must survive, and values are not expanded twice", cfg.Webhook.Token)
	}
	if cfg.Targets.ExpertSender.APIKey != "fallback" || cfg.Targets.ExpertSender.Timeout.D() != 10*time.Second {
		t.Errorf("expertsender = %+v", cfg.Targets.ExpertSender)
	}
	if cfg.Store.Path != "${literal}" {
		t.Errorf("$$ must be a literal $: %q", cfg.Store.Path)
	}
	_, err = Parse([]byte("listen: 127.0.0.1:1\nwebhook:\n  token: ${NOPE}\n"), env(nil))
	assertProblem(t, err, "webhook.token", 3, "NOPE is not set")
}

func TestProblemsNameKeyPathAndLine(t *testing.T) {
	yaml := `listen: 127.0.0.1:8080
webhok:
  path: /x
delivery:
  max_attempts: many
  backoff: { initial: 1s, max: soon }
webhook:
  max_body: 1XB
targets:
  expertsender:
    base_url: ftp://x
    timeout: 10s
    api_kee: k
`
	_, err := Parse([]byte(yaml), env(nil))
	assertProblem(t, err, "webhok", 2, `did you mean "webhook"`)
	assertProblem(t, err, "delivery.max_attempts", 5, "not a whole number")
	assertProblem(t, err, "delivery.backoff.max", 6, "not a duration")
	assertProblem(t, err, "webhook.max_body", 8, "unknown unit")
	assertProblem(t, err, "targets.expertsender.api_kee", 13, "unknown key")
}

func TestSemanticProblems(t *testing.T) {
	yaml := `listen: nope
log: { level: loud, format: xml }
webhook: { path: hooks, max_body: 0 }
order_id: { from: campaign_data. }
delivery: { max_attempts: 0, concurrency: 0, backoff: { initial: 10s, max: 1s } }
mapping:
  ticket_types: [""]
  statuses:
    abc: { name: X, expertsender: paid }
`
	_, err := Parse([]byte(yaml), env(nil))
	for _, p := range []struct {
		path string
		line int
		msg  string
	}{
		{"listen", 1, "host:port"},
		{"log.level", 2, "loud"},
		{"log.format", 2, "xml"},
		{"webhook.path", 3, "start with /"},
		{"webhook.max_body", 3, "between"},
		{"order_id.from", 4, "campaign_data.<key>"},
		{"delivery.max_attempts", 5, "between 1"},
		{"delivery.concurrency", 5, "between 1"},
		{"delivery.backoff.max", 5, "at least"},
		{"mapping.ticket_types[0]", 7, "empty"},
		{"mapping.statuses.abc.expertsender", 9, "not configured"},
	} {
		assertProblem(t, err, p.path, p.line, p.msg)
	}
}

func TestYAMLSyntaxErrorHasLine(t *testing.T) {
	_, err := Parse([]byte("listen: a\nlog:\n  level: [\n"), env(nil))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Line == 0 {
		t.Fatalf("syntax error = %v, want one problem with a line", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]Size{"1048576": 1 << 20, "1MiB": 1 << 20, "1MB": 1000000, "512KB": 512000, "2 KiB": 2048, "3kib": 3072} {
		var s Size
		if err := s.decodeScalar(in); err != nil || s != want {
			t.Errorf("Size(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MB", "1XB", "MB"} {
		var s Size
		if err := s.decodeScalar(in); err == nil {
			t.Errorf("Size(%q) accepted, want error", in)
		}
	}
}

func TestMissingExplicitFile(t *testing.T) {
	_, err := Resolve(filepath.Join(t.TempDir(), "nope.yaml"), env(nil))
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing file error = %v", err)
	}
}

func assertProblem(t *testing.T, err error, path string, line int, contains string) {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want *config.Error", err)
	}
	for _, p := range ce.Problems {
		if p.Path == path && p.Line == line && strings.Contains(p.Message, contains) {
			return
		}
	}
	t.Errorf("no problem at %s line %d containing %q in:\n%v", path, line, contains, ce)
}

func TestTargetReferences(t *testing.T) {
	yaml := `targets:
  order_system:
    base_url: https://orders.example.com
    phone_region: XX
    status_update: { method: FETCH, path: "orders/{order}", body: { s: "{status}", bad: "{customer.email}" } }
  http:
    crm: { url: "https://crm.example.com/{order_id}", rate: fast }
    "bad name": { url: "x" }
mapping:
  statuses:
    s1:
      everlytic: { workflow_id: 0 }
      http: { crm: "", erp: shipped }
      whatsapp_opt_in: true
    s2: { order_system: confirmed, expertsender: paid }
`
	_, err := Parse([]byte(yaml), env(nil))
	for _, p := range []struct {
		path string
		line int
		msg  string
	}{
		{"targets.order_system.phone_region", 4, "region"},
		{"targets.order_system.status_update.method", 5, "FETCH"},
		{"targets.order_system.status_update.path", 5, "start with /"},
		{"targets.http.crm.rate", 7, "not a rate"},
		{"targets.http.bad name", 8, "letters, digits"},
		{"mapping.statuses.s1.everlytic", 12, "targets.everlytic is not configured"},
		{"mapping.statuses.s1.everlytic.workflow_id", 12, "positive integer"},
		{"mapping.statuses.s1.http.crm", 13, "must not be empty"},
		{"mapping.statuses.s1.http.erp", 13, "targets.http.erp is not configured"},
		{"mapping.statuses.s1.whatsapp_opt_in", 14, "phone_region"},
		{"mapping.statuses.s2.expertsender", 15, "targets.expertsender is not configured"},
	} {
		assertProblem(t, err, p.path, p.line, p.msg)
	}
	_, err = Parse([]byte(strings.Replace(yaml, `path: "orders/{order}"`, `path: "/orders/{order}"`, 1)), env(nil))
	assertProblem(t, err, "targets.order_system.status_update.path", 5, "unknown placeholder {order}")
	assertProblem(t, err, "targets.order_system.status_update.body", 5, "{customer.email}")
}

func TestOrderSystemWithoutStatusUpdate(t *testing.T) {
	_, err := Parse([]byte(`targets: { order_system: { base_url: "https://o.example.com" } }
mapping: { statuses: { s: { order_system: confirmed } } }
`), env(nil))
	assertProblem(t, err, "mapping.statuses.s.order_system", 2, "status_update is not configured")
}

func TestFullTargetsParse(t *testing.T) {
	cfg, err := Parse([]byte(`targets:
  order_system:
    base_url: https://orders.example.com
    token: ${OS_TOKEN:-}
    account_id: "1489"
    phone_region: MA
    rate: 600/m
    concurrency: 2
    circuit_breaker: { failures: 3, cooldown: 1m }
    status_update: { method: put, path: "/orders/{order_id}/status", body: { status: "{status}", n: 1, ok: true } }
  everlytic: { base_url: https://x.everlytic.net, store_hash: a, customer_hash: b }
  http:
    crm: { url: "https://crm.example.com/{order_id}", headers: { Authorization: "Bearer ${CRM:-t}" }, success_when_body_lacks: error }
mapping:
  statuses:
    s: { name: S, order_system: confirmed, whatsapp_opt_in: true, everlytic: { workflow_id: 42 }, http: { crm: confirmed } }
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Targets.OrderSystem
	if o.Rate.PerSecond() != 10 || o.Concurrency != 2 || o.CircuitBreaker.Failures != 3 || o.Timeout.D() != 10*time.Second || o.StatusUpdate.Method != "PUT" {
		t.Errorf("order_system = %+v", o)
	}
	if b := o.StatusUpdate.Body.(map[string]any); b["n"] != 1 || b["ok"] != true || b["status"] != "{status}" {
		t.Errorf("body = %#v", o.StatusUpdate.Body)
	}
	crm := cfg.Targets.HTTP["crm"]
	if crm.Method != "POST" || crm.Headers["Authorization"] != "Bearer t" || crm.CircuitBreaker.Failures != 5 || crm.CircuitBreaker.Cooldown.D() != 30*time.Second {
		t.Errorf("crm = %+v", crm)
	}
	if cfg.Mapping.Statuses["s"].Everlytic.WorkflowID != 42 || !cfg.Mapping.Statuses["s"].WhatsAppOptIn {
		t.Errorf("mapping = %+v", cfg.Mapping.Statuses["s"])
	}
}

func TestAliasCyclesAndBombsAreProblems(t *testing.T) {
	for name, c := range map[string]struct {
		yaml, contains string
	}{
		"cycle in a body": {"targets: { http: { crm: { url: \"https://x\", body: &a { x: *a } } } }\n", "cycle"},
		"indirect cycle":  {"targets: &t { http: { crm: { url: \"https://x\", body: { all: *t } } } }\n", "cycle"},
		"billion laughs": {`a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
targets: { http: { crm: { url: "https://x", body: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e] } } }
`, "nodes"},
	} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Parse([]byte(c.yaml), env(nil)); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), c.contains) {
					t.Errorf("Parse = %v, want a problem about %q", err, c.contains)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Parse did not return")
			}
		})
	}
}
