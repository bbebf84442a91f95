package receiver

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
)

// TestOpenAPIMatchesRoutes fails when an /admin route is added, removed or
// renamed without the OpenAPI document following (and the reverse).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, "", nil, withAdmin)
	a := e.admin("/admin/openapi.json", adminToken)
	if a.code != http.StatusOK || a.body["openapi"] != "3.0.3" {
		t.Fatalf("openapi.json: %d", a.code)
	}
	if b := e.admin("/admin/openapi.json", ""); b.code != http.StatusUnauthorized {
		t.Errorf("openapi.json without token: %d, want 401", b.code)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	s := New(nil, Options{WebhookPath: hookPath, AdminToken: "x", Admin: bridge.Store{Backend: e.db}, Service: e.server.opt.Service})
	param := regexp.MustCompile(`:([a-z_]+)`)
	registered := map[string]bool{}
	for _, r := range s.e.Routes() {
		if !strings.HasPrefix(r.Path, "/admin/") || strings.HasSuffix(r.Path, "*") {
			continue // the catch-all 404 is not an operation
		}
		registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	var missing, extra []string
	for k := range registered {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !registered[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("OpenAPI out of step: routes not documented %v; documented but not routed %v", missing, extra)
	}
	if len(registered) < 8 {
		t.Errorf("only %d admin routes found: %v", len(registered), registered)
	}
}
