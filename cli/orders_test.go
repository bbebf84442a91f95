package cli

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/receiver"
)

// serveIntake starts the admin API with the order intake (an ExpertSender
// upsert step, so intakes make deliveries).
func (s *site) serveIntake() string {
	s.t.Helper()
	db := s.open()
	opts := s.adminOptions(db)
	opts.Intake = receiver.IntakeOptions{Path: "/webhooks/orders", Token: "intake-tok", MaxBody: 200,
		Plan: bridge.IntakePlan{Upsert: bridge.Step{On: true}, Fetch: bridge.Step{On: true}}}
	srv := receiver.New(bridge.Store{Backend: db}, opts)
	hs := httptest.NewServer(srv.Handler())
	s.t.Cleanup(hs.Close)
	s.server = hs.URL
	return hs.URL
}

func TestOrdersImport(t *testing.T) {
	s := newSite(t)
	srv := s.serveIntake()
	file := filepath.Join(s.dir, "orders.jsonl")
	lines := strings.Join([]string{
		`{"orderId": "A1", "orderTotal": 10.0}`,
		`{"orderId": "A2", "orderTotal": 20.0}`,
		``,
		`{"orderId": "A1", "orderTotal": 10.0}`, // duplicate
		`{"orderId": "A2", "orderTotal": 21.0}`, // update
		`{"orderId": "A3"}`,                     // fetched by the server
		`not json`,                              // refused: 400
		`{"id": "no order id"}`,                 // refused: 422
		`{"orderId": "A4", "pad": "` + strings.Repeat("x", 300) + `"}`, // refused: 413
		`{"orderId": "A5", "orderTotal": 5}`,                           // after the bad lines: still taken
	}, "\n")
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := s.run(tokenEnv, Orders, "import", file, "--server", srv)
	if code != exitFailure {
		t.Errorf("import with refused lines exited %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"import: 5 taken (3 new, 1 updated, 1 to fetch), 1 duplicate, 3 refused",
		"line 7: HTTP 400", "line 8: HTTP 422", "missing orderId", "line 9: HTTP 413"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	st, _ := s.db.Stats(context.Background())
	if st.Intakes != 5 {
		t.Errorf("%d intakes stored, want 5", st.Intakes)
	}
	good := filepath.Join(s.dir, "good.jsonl")
	if err := os.WriteFile(good, []byte(`{"orderId": "A1", "orderTotal": 10.0}`+"\n"+`{"orderId": "B1", "orderTotal": 1}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := s.run(tokenEnv, Orders, "import", good, "--server", srv); code != exitOK ||
		!strings.Contains(out, "1 taken (1 new, 0 updated, 0 to fetch), 1 duplicate, 0 refused") {
		t.Errorf("import of good lines: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = s.run(tokenEnv, Orders, "list", "--server", srv)
	if code != exitOK || !strings.Contains(out, "ORDER") || !strings.Contains(out, "A2") || !strings.Contains(out, "updated") || !strings.Contains(out, "B1") {
		t.Errorf("orders list: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = s.run(tokenEnv, Orders, "show", "A2", "--server", srv)
	if code != exitOK || !strings.Contains(out, "Order A2") || !strings.Contains(out, "Intakes (2)") || !strings.Contains(out, "delivery order") {
		t.Errorf("orders show: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := s.run(tokenEnv, Orders, "show", "nope", "--server", srv); code != exitFailure || !strings.Contains(errOut, "no such order") {
		t.Errorf("orders show of an unknown order: %d %s", code, errOut)
	}
}

func TestOrdersPushNeedsTheServer(t *testing.T) {
	s := newSite(t)
	code, _, errOut := s.run(tokenEnv, Orders, "push", "42", "--config", s.cfg)
	if code != exitFailure || !strings.Contains(errOut, "needs the running server") {
		t.Errorf("push without a server: %d %s", code, errOut)
	}
	srv := s.serveIntake()
	code, out, errOut := s.run(tokenEnv, Orders, "push", "42", "43", "--server", srv)
	if code != exitOK || strings.Count(out, "(fetch)") != 2 {
		t.Errorf("push: %d\n%s%s", code, out, errOut)
	}
	rows, _, err := bridge.Orders(context.Background(), s.db, bridge.IntakeFilter{})
	if err != nil || len(rows) != 2 || rows[0].LastIntake.Source != bridge.SourceAdmin || rows[0].LastIntake.State != bridge.IntakeFetch {
		t.Errorf("after push: %+v, %v", rows, err)
	}
	if code, _, errOut := s.run(noEnv, Orders, "push", "44", "--server", srv); code != exitFailure || !strings.Contains(errOut, "STATUSBRIDGE_ADMIN_TOKEN") {
		t.Errorf("push without the admin token: %d %s", code, errOut)
	}
	if code, _, _ := s.run(tokenEnv, Orders, "push", "--server", srv); code != exitUsage {
		t.Errorf("push without ids: %d, want 2", code)
	}
}
