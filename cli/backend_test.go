package cli

import (
	"testing"

	"github.com/statusbridge/statusbridge/config"
)

func TestServerURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		"0.0.0.0:9000":   "http://127.0.0.1:9000",
		"[::]:9001":      "http://127.0.0.1:9001",
		":9002":          "http://127.0.0.1:9002",
		"10.1.2.3:80":    "http://10.1.2.3:80",
	} {
		got, explicit := serverURL(&config.Config{Listen: listen}, "")
		if got != want || explicit {
			t.Errorf("serverURL(%q) = %q, %v; want %q from the config", listen, got, explicit, want)
		}
	}
	if got, explicit := serverURL(&config.Config{Listen: "127.0.0.1:1"}, "bridge.internal:8080"); got != "http://bridge.internal:8080" || !explicit {
		t.Errorf("explicit --server = %q, %v", got, explicit)
	}
}
