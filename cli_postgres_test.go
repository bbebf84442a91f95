package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
	"github.com/statusbridge/statusbridge/postgres"
)

// postgresConfig is adminConfig on the PostgreSQL store of dsn.
func postgresConfig(dsn, esURL, extra string) string {
	return fmt.Sprintf(`listen: ADDR
log: { level: debug, format: json }
store: { driver: postgres, postgres: { dsn: %q, schema: sb_test } }
admin: { token: admin-secret-99 }
targets: { expertsender: { base_url: "%s", api_key: k-1234567, timeout: 2s } }
delivery: { max_attempts: 1, backoff: { initial: 1ms, max: 1ms }, failover: 1s }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
%s`, dsn, esURL, extra)
}

// TestCLIPostgresDirect: with store.driver postgres, events list, events
// show and mapping diff print the same through a running server and, once
// no server answers, from the database itself; replay works on the
// database directly too.
func TestCLIPostgresDirect(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	es := fake.NewServer(t)
	s := startServer(t, postgresConfig(dsn, es.URL, ""))
	hookTo(t, s.addr, fake.Update{TicketID: "t1", OrderID: "300", StatusID: confirmed, DateStatus: "2026-01-13 10:00:00"})
	hookTo(t, s.addr, fake.Update{TicketID: "t2", OrderID: "301", StatusID: "unknown000000000", DateStatus: "2026-01-13 10:00:00"})
	es.WaitRequests(1, 10*time.Second)
	eventually(t, "the delivery recorded done", func() bool {
		_, out, _ := runWith(t, tokenEnv, "events", "list", "--config", s.cfg, "--order", "300")
		return strings.Contains(out, "1 done")
	})
	// The admin API answers on PostgreSQL, the routes that show the
	// console's counts included (kept by the PostgreSQL store as on bbolt).
	for _, path := range []string{"/admin/mapping", "/admin/events?limit=5", "/admin/deliveries?state=done"} {
		if code, body := s.call("GET", path, nil); code != 200 {
			t.Errorf("GET %s on PostgreSQL: %d %v", path, code, body)
		}
	}
	cand := filepath.Join(t.TempDir(), "new.yaml")
	raw, _ := os.ReadFile(s.cfg)
	os.WriteFile(cand, []byte(string(raw)+"    unknown000000000: { name: Shipped, expertsender: completed }\n"), 0o600)

	commands := func(id string) [][]string {
		return [][]string{
			{"events", "list", "--config", s.cfg},
			{"events", "list", "--config", s.cfg, "--state", "unmapped", "--json"},
			{"events", "show", id, "--config", s.cfg},
			{"events", "show", id, "--config", s.cfg, "--json"},
			{"mapping", "diff", "--config", cand},
		}
	}
	_, out, _ := runWith(t, tokenEnv, "events", "list", "--config", s.cfg, "--order", "300", "--json")
	id := between(out, `"id": "`, `"`)
	if id == "" {
		t.Fatalf("no event id in %s", out)
	}
	viaServer := map[string]string{}
	for _, args := range commands(id) {
		code, out, errOut := runWith(t, tokenEnv, args...)
		if code != 0 {
			t.Fatalf("%v via the server: exit %d\n%s%s", args, code, out, errOut)
		}
		viaServer[strings.Join(args, " ")] = out
	}
	if !strings.Contains(viaServer["mapping diff --config "+cand], "1 of 2 events would change") {
		t.Errorf("mapping diff: %s", viaServer["mapping diff --config "+cand])
	}

	s.cancel()
	<-s.exited
	for _, args := range commands(id) {
		code, out, errOut := runWith(t, noEnv, args...) // no admin token: nothing answers anyway
		if code != 0 {
			t.Fatalf("%v on the database: exit %d\n%s%s", args, code, out, errOut)
		}
		if want := viaServer[strings.Join(args, " ")]; out != want {
			t.Errorf("%v: the database directly printed\n%s\nthe server printed\n%s", args, out, want)
		}
	}
	code, out, errOut := runWith(t, noEnv, "replay", "--config", s.cfg, "--order", "300", "--force")
	if code != 0 || !strings.Contains(out, "replayed: events: 1 matched, 1 dispatched") {
		t.Fatalf("replay on the database: %d\n%s%s", code, out, errOut)
	}
	db, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, Schema: "sb_test"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if st, _ := db.Stats(context.Background()); st.Pending != 1 {
		t.Errorf("the direct replay queued %d deliveries, want 1", st.Pending)
	}
	// A database that does not answer: exit 1, saying so, without the password.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(raw), dsn, "postgres://u:pw-SECRET-1@127.0.0.1:1/x?sslmode=disable&connect_timeout=1", 1)), 0o600)
	code, _, errOut = runWith(t, noEnv, "events", "list", "--config", bad)
	if code != 1 || !strings.Contains(errOut, "cannot be opened") || strings.Contains(errOut, "pw-SECRET-1") {
		t.Errorf("unreachable database: exit %d, %s", code, errOut)
	}
}
