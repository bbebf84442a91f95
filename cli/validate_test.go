package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/receiver"
)

// TestStateFilterValidatedOnBothPaths: an unknown --state is refused with
// the same message whether the server answers or the file is read.
func TestStateFilterValidatedOnBothPaths(t *testing.T) {
	s := newSite(t)
	s.ingest("t1", "100", "2026-01-13 10:00:00")
	s.close()
	code, out, fileErr := s.run(noEnv, Events, "list", "--config", s.cfg, "--state", "bogus")
	if code != exitUsage || out != "" || !strings.Contains(fileErr, `"bogus" is not an event state`) || !strings.Contains(fileErr, "dispatched, unmapped") {
		t.Errorf("file: exit %d, stdout %q, stderr %q; want exit 2 naming the valid states", code, out, fileErr)
	}
	s.serve()
	code, out, srvErr := s.run(tokenEnv, Events, "list", "--config", s.cfg, "--server", s.server, "--state", "bogus")
	if code != exitUsage || out != "" || srvErr != fileErr {
		t.Errorf("server: exit %d, stdout %q, stderr %q; want exit 2 and %q", code, out, srvErr, fileErr)
	}
	// The server itself answers 400 with the same words.
	req, _ := http.NewRequest(http.MethodGet, s.server+"/admin/events?state=bogus", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if want := "state: " + bridge.CheckEventState("bogus").Error(); resp.StatusCode != 400 || body.Error != want {
		t.Errorf("GET /admin/events?state=bogus: %d %q, want 400 %q", resp.StatusCode, body.Error, want)
	}
}

// TestEventsShowPrettyAndRaw: events show indents the payload evenly
// whatever indentation it arrived with; --raw prints it byte for byte, on
// the file and through the server alike.
func TestEventsShowPrettyAndRaw(t *testing.T) {
	s := newSite(t)
	raw, err := os.ReadFile("../digishare/testdata/ticket_updated.json")
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("\n  "), []byte("\n\t   ")) // odd indentation, as some senders have
	id := s.ingestRaw(raw).EventID
	check := func(name string, getenv func(string) (string, bool), extra ...string) {
		t.Helper()
		code, out, errOut := s.run(getenv, Events, append([]string{"show", id, "--config", s.cfg}, extra...)...)
		payload := out[strings.Index(out, "Payload\n")+len("Payload\n"):]
		if code != 0 || !strings.HasPrefix(payload, "  {\n    \"event\": \"ticket.updated\",\n    \"data\": {\n      \"id\": \"hashed_ticket_id\",") ||
			strings.Contains(payload, "\t") {
			t.Errorf("%s: events show: %d %q\n%s", name, code, errOut, out)
		}
		code, out, errOut = s.run(getenv, Events, append([]string{"show", id, "--raw", "--config", s.cfg}, extra...)...)
		if code != 0 || out != string(raw) {
			t.Errorf("%s: events show --raw: %d %q\n%q, want the bytes as received", name, code, errOut, out)
		}
	}
	s.close()
	check("file", noEnv)
	check("server", tokenEnv, "--server", s.serve())
}

// TestDryRunSummaryCountsEventsAndDeliveries: a dispatched event whose
// deliveries are all skipped (target disabled) is counted as one event and
// that many skipped deliveries, each labelled, as its rows say.
func TestDryRunSummaryCountsEventsAndDeliveries(t *testing.T) {
	s := newSiteTargets(t, `targets: { expertsender: { base_url: "http://127.0.0.1:9" } }`) // no api_key: disabled
	s.ingest("t1", "100", "2026-01-13 10:00:00")
	s.close()
	code, out, errOut := s.run(noEnv, Replay, "--config", s.cfg, "--order", "100", "--dry-run", "--force")
	want := "dry run: events: 1 matched, 1 dispatched, 0 superseded, 0 unchanged, 0 with no delivery to make, 0 failed; deliveries: 0 would be sent, 1 skipped (target disabled)"
	if code != 0 || !strings.Contains(out, "skipped: targets.expertsender has no api_key") || !strings.Contains(out, want) {
		t.Errorf("replay --dry-run: %d %s\n%s, want rows skipped and %q", code, errOut, out, want)
	}
}

// TestAdminTokenMessagesSayWhatToDo: a server without an admin token, or a
// CLI without one, is told apart and the message names the variable.
func TestAdminTokenMessagesSayWhatToDo(t *testing.T) {
	s := newSite(t)
	db := s.open()
	off := httptest.NewServer(receiver.New(bridge.Store{Backend: db}, receiver.Options{WebhookPath: "/webhooks/digishare", MaxBody: 1 << 20}).Handler())
	t.Cleanup(off.Close)
	on := s.serve()
	for _, c := range []struct {
		name, server string
		getenv       func(string) (string, bool)
		want         []string
	}{
		{"server without token", off.URL, noEnv, []string{"started without admin.token", "STATUSBRIDGE_ADMIN_TOKEN", "restart"}},
		{"CLI token, server without", off.URL, tokenEnv, []string{"STATUSBRIDGE_ADMIN_TOKEN is set here, but the server was started without admin.token"}},
		{"server token, CLI without", on, noEnv, []string{"needs its admin token: set STATUSBRIDGE_ADMIN_TOKEN"}},
		{"wrong token", on, func(string) (string, bool) { return "nope", true }, []string{"refused the admin token in STATUSBRIDGE_ADMIN_TOKEN"}},
	} {
		code, _, errOut := s.run(c.getenv, Events, "list", "--config", s.cfg, "--server", c.server)
		for _, w := range c.want {
			if code != exitFailure || !strings.Contains(errOut, w) {
				t.Errorf("%s: exit %d, stderr %q; want 1 and %q", c.name, code, errOut, w)
			}
		}
	}
	if code, out, errOut := s.run(tokenEnv, Events, "list", "--config", s.cfg, "--server", on); code != 0 || !strings.Contains(out, "RECEIVED") {
		t.Errorf("with the same token on both sides: %d %s %s", code, out, errOut)
	}
}
