package cli

import (
	"net/http"
	"strings"
	"testing"

	"github.com/statusbridge/statusbridge/config"
)

// TestConfigFallbackIsSaidAndExplicitMissingFails: without --config and
// without ./config.yaml, a command that decides or sends says it runs on
// the built-in defaults; a --config that does not exist is an error for
// every command, config.yaml included.
func TestConfigFallbackIsSaidAndExplicitMissingFails(t *testing.T) {
	t.Chdir(t.TempDir()) // no config.yaml here; the defaults' store lands here too
	fileFallback := Events
	if (&httpBackend{base: "http://127.0.0.1:8080", client: http.DefaultClient}).answers() {
		fileFallback = nil // something else listens at the defaults' address: events would ask it
	}
	for _, c := range []struct {
		name string
		cmd  func([]string, Env) int
		args []string
	}{
		{"replay", Replay, []string{"--order", "1", "--dry-run"}},
		{"mapping diff", MappingDiff, []string{"diff"}},
		{"events list (file)", fileFallback, []string{"list"}},
	} {
		if c.cmd == nil {
			continue
		}
		var out, errb strings.Builder
		c.cmd(c.args, Env{Getenv: noEnv, Stdout: &out, Stderr: &errb})
		if !strings.Contains(errb.String(), config.DefaultsNote) || !strings.Contains(errb.String(), "./config.yaml") {
			t.Errorf("%s without --config: stderr %q, want it to say it runs on built-in defaults", c.name, errb.String())
		}
	}
	for _, c := range []struct {
		name string
		cmd  func([]string, Env) int
		args []string
	}{
		{"events list", Events, []string{"list"}},
		{"events show", Events, []string{"show", "x"}},
		{"replay", Replay, []string{"--order", "1"}},
		{"mapping diff", MappingDiff, []string{"diff"}},
		{"store compact", StoreCompact, []string{"compact"}},
	} {
		for _, file := range []string{"config.yaml", "missing.yaml"} {
			var out, errb strings.Builder
			code := c.cmd(append(c.args, "--config", file), Env{Getenv: noEnv, Stdout: &out, Stderr: &errb})
			if code != exitFailure || !strings.Contains(errb.String(), file) || !strings.Contains(errb.String(), "not found") {
				t.Errorf("%s --config %s (absent): exit %d, stderr %q; want 1 and the file not found", c.name, file, code, errb.String())
			}
		}
	}
}

// TestConfigFlagHelpIsTheSameEverywhere: every command's --help gives
// --config the same default.
func TestConfigFlagHelpIsTheSameEverywhere(t *testing.T) {
	for name, c := range map[string]struct {
		cmd  func([]string, Env) int
		args []string
	}{
		"events list": {Events, []string{"list", "--help"}}, "events show": {Events, []string{"show", "--help"}},
		"replay": {Replay, []string{"--help"}}, "mapping diff": {MappingDiff, []string{"diff", "--help"}},
		"store compact": {StoreCompact, []string{"compact", "--help"}},
	} {
		var out, errb strings.Builder
		c.cmd(c.args, Env{Getenv: noEnv, Stdout: &out, Stderr: &errb})
		if !strings.Contains(strings.Join(strings.Fields(out.String()), " "), config.FlagUsage) {
			t.Errorf("%s --help: %q, want --config described as %q", name, out.String(), config.FlagUsage)
		}
	}
}
