package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestSenderCircuitAndMappingGauges(t *testing.T) {
	m := New(nil)
	if out := scrape(t, m); !strings.Contains(out, "\nstatusbridge_sender 0\n") {
		t.Errorf("before SetSender, want statusbridge_sender 0 in:\n%s", out)
	}
	m.SetSender(true)
	m.SetCircuitOpen("expertsender", true)
	m.SetCircuitOpen("everlytic", false)
	m.SetMappingVersion("aaaaaaaaaaaa")
	m.SetMappingVersion("bbbbbbbbbbbb")
	out := scrape(t, m)
	for _, want := range []string{
		"\nstatusbridge_sender 1\n",
		`statusbridge_circuit_open{target="expertsender"} 1`,
		`statusbridge_circuit_open{target="everlytic"} 0`,
		`statusbridge_mapping_info{version="bbbbbbbbbbbb"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(out, "aaaaaaaaaaaa") {
		t.Error("statusbridge_mapping_info still has the previous version: it must have one series")
	}
	m.SetSender(false)
	if out := scrape(t, m); !strings.Contains(out, "\nstatusbridge_sender 0\n") {
		t.Error("SetSender(false) did not set statusbridge_sender to 0")
	}
}
