package config

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStoreDefaultsToBbolt(t *testing.T) {
	cfg, err := Parse([]byte("listen: 127.0.0.1:8080\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Driver != DriverBbolt || cfg.Store.Path != "data/statusbridge.db" || cfg.Store.Postgres != nil {
		t.Errorf("store = %+v, want bbolt at data/statusbridge.db without postgres", cfg.Store)
	}
	if cfg.Delivery.Failover.D() != 15*time.Second {
		t.Errorf("delivery.failover = %v, want 15s", cfg.Delivery.Failover.D())
	}
	if len(cfg.Server.TrustedProxies) != 0 || len(cfg.Warnings) != 0 {
		t.Errorf("trusted_proxies = %v, warnings = %v; want none", cfg.Server.TrustedProxies, cfg.Warnings)
	}
}

func TestPostgresStore(t *testing.T) {
	yaml := `store:
  driver: postgres
  postgres:
    dsn: ${STATUSBRIDGE_POSTGRES_DSN:-}
`
	dsn := "postgres://bridge:s3cr%40t@db.internal:5432/statusbridge?sslmode=require"
	cfg, err := Parse([]byte(yaml), env(map[string]string{"STATUSBRIDGE_POSTGRES_DSN": dsn}))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Store.Postgres
	if cfg.Store.Driver != DriverPostgres || p == nil || p.DSN != dsn || p.Schema != "statusbridge" || p.MaxConns != 16 {
		t.Fatalf("store = %+v, postgres = %+v; want the DSN from the environment, schema statusbridge, max_conns 16", cfg.Store, p)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings = %v, want none", cfg.Warnings)
	}
	got := cfg.Store.Secrets()
	if !contains(got, "s3cr@t") || !contains(got, "s3cr%40t") {
		t.Errorf("Store.Secrets() = %q, want the password decoded and as written", got)
	}
	cfg, err = Parse([]byte("store:\n  driver: postgres\n  postgres: { dsn: 'host=db user=u dbname=d', schema: Bridge_2, max_conns: 1000 }\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Store.Postgres; p.Schema != "Bridge_2" || p.MaxConns != 1000 {
		t.Errorf("postgres = %+v", p)
	}
}

func TestStoreProblems(t *testing.T) {
	long := strings.Repeat("s", 64)
	for _, tc := range []struct {
		name, yaml string
		path       string
		line       int
		msg        string
	}{
		{"unknown driver", "store:\n  driver: sqlite\n", "store.driver", 2, `"sqlite" is not one of bbolt, postgres`},
		{"postgres without section", "store:\n  driver: postgres\n", "store.postgres.dsn", 2, "must be set when store.driver is postgres"},
		{"postgres without dsn", "store:\n  driver: postgres\n  postgres:\n    schema: x\n", "store.postgres.dsn", 2, "must be set"},
		{"empty dsn from env", "store:\n  driver: postgres\n  postgres:\n    dsn: ${STATUSBRIDGE_POSTGRES_DSN:-}\n", "store.postgres.dsn", 4, "must be set"},
		{"unset env", "store:\n  driver: postgres\n  postgres:\n    dsn: ${STATUSBRIDGE_POSTGRES_DSN}\n", "store.postgres.dsn", 4, "STATUSBRIDGE_POSTGRES_DSN is not set"},
		{"schema digit", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    schema: 1bridge\n", "store.postgres.schema", 5, "not a plain SQL identifier"},
		{"schema dash", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    schema: status-bridge\n", "store.postgres.schema", 5, "not a plain SQL identifier"},
		{"schema quote", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    schema: 'a\"; DROP'\n", "store.postgres.schema", 5, "not a plain SQL identifier"},
		{"schema empty", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    schema: ''\n", "store.postgres.schema", 5, "not a plain SQL identifier"},
		{"schema long", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    schema: " + long + "\n", "store.postgres.schema", 5, "63 bytes"},
		{"max_conns 0", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    max_conns: 0\n", "store.postgres.max_conns", 5, "between 1 and 1000"},
		{"max_conns 1001", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    max_conns: 1001\n", "store.postgres.max_conns", 5, "between 1 and 1000"},
		{"max_conns word", "store:\n  driver: postgres\n  postgres:\n    dsn: host=db\n    max_conns: many\n", "store.postgres.max_conns", 5, "not a whole number"},
		{"typo in section", "store:\n  driver: postgres\n  postgres:\n    dns: host=db\n", "store.postgres.dns", 4, `did you mean "dsn"`},
		{"typo in driver key", "store:\n  drivr: postgres\n", "store.drivr", 2, `did you mean "driver"`},
		{"dsn not a dsn", "store:\n  driver: postgres\n  postgres:\n    dsn: db.internal\n", "store.postgres.dsn", 4, "must be a postgres:// URL or key=value pairs"},
		{"dsn unterminated quote", "store:\n  driver: postgres\n  postgres:\n    dsn: \"host=db password='abc\"\n", "store.postgres.dsn", 4, "no closing quote"},
		{"dsn other scheme", "store:\n  driver: postgres\n  postgres:\n    dsn: mysql://u:p@h/db\n", "store.postgres.dsn", 4, "postgres://"},
		{"dsn bad url", "store:\n  driver: postgres\n  postgres:\n    dsn: 'postgres://u:pa/ss@h/db'\n", "store.postgres.dsn", 4, "percent-encode"},
		{"bbolt empty path", "store:\n  path: ''\n", "store.path", 2, "must not be empty"},
		{"failover short", "delivery:\n  failover: 500ms\n", "delivery.failover", 2, "at least 1s"},
		{"failover zero", "delivery:\n  failover: 0s\n", "delivery.failover", 2, "at least 1s"},
		{"failover word", "delivery:\n  failover: soon\n", "delivery.failover", 2, "not a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(nil))
			assertProblem(t, err, tc.path, tc.line, tc.msg)
		})
	}
}

func TestStoreWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		path       string
		line       int
		msg        string
	}{
		{"postgres section under bbolt", "store:\n  path: x.db\n  postgres:\n    dsn: host=db\n", "store.postgres", 3, "is ignored"},
		{"postgres section under default driver", "store:\n  postgres: { schema: s }\n", "store.postgres", 2, "is ignored"},
		{"path under postgres", "store:\n  driver: postgres\n  path: x.db\n  postgres: { dsn: host=db }\n", "store.path", 3, "is ignored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), env(nil))
			if err != nil {
				t.Fatalf("Parse: %v (a warning is not an error)", err)
			}
			for _, w := range cfg.Warnings {
				if w.Path == tc.path && w.Line == tc.line && strings.Contains(w.Message, tc.msg) {
					if !strings.HasPrefix(w.String(), "line ") || !strings.Contains(w.String(), tc.path) {
						t.Errorf("warning reads %q, want the line and %s", w, tc.path)
					}
					return
				}
			}
			t.Errorf("warnings = %v, want one at %s line %d containing %q", cfg.Warnings, tc.path, tc.line, tc.msg)
		})
	}
}

func TestDSNPasswordNeverInProblems(t *testing.T) {
	const pw = "Hunter2-Secret"
	for _, dsn := range []string{
		"postgres://u:" + pw + "@h:5432/db?sslmode=require&x=%zz",
		"postgres://u:" + pw + "/x@h/db",
		"postgres://u:" + pw + "@h:notaport/db",
		"host=h password='" + pw,
		"host=h password=" + pw + " broken",
		pw,
	} {
		t.Run(dsn, func(t *testing.T) {
			yaml := "store:\n  driver: postgres\n  postgres:\n    dsn: ${DSN}\n    max_conns: 0\n"
			_, err := Parse([]byte(yaml), env(map[string]string{"DSN": dsn}))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want a *config.Error", err)
			}
			assertProblem(t, err, "store.postgres.dsn", 4, "")
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "Hunter2") {
				t.Errorf("the error shows the password:\n%v", err)
			}
		})
	}
}

func TestTrustedProxies(t *testing.T) {
	cfg, err := Parse([]byte("listen: 0.0.0.0:8080\nserver:\n  trusted_proxies: [10.0.0.0/8, \"fd00::/8\", 192.168.1.10, 192.168.2.0/24]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "fd00::/8", "192.168.1.10/32", "192.168.2.0/24"}
	if len(cfg.Server.TrustedProxies) != len(want) {
		t.Fatalf("trusted_proxies = %v, want %v", cfg.Server.TrustedProxies, want)
	}
	for i, w := range want {
		if got := cfg.Server.TrustedProxies[i].String(); got != w {
			t.Errorf("trusted_proxies[%d] = %s, want %s", i, got, w)
		}
	}
	if !cfg.Server.TrustedProxies[0].Contains(netip.MustParseAddr("10.1.2.3")) {
		t.Error("10.0.0.0/8 does not contain 10.1.2.3")
	}
	if cfg.Listen != "0.0.0.0:8080" {
		t.Errorf("listen = %q: the server section must not disturb it", cfg.Listen)
	}

	yaml := `server:
  trusted_proxies:
    - 10.0.0.0/8
    - 10.0.0.0/33
    - not-a-network
    - 10.1.2.3/8
  trusted_proxy: []
`
	_, err = Parse([]byte(yaml), env(nil))
	assertProblem(t, err, "server.trusted_proxies[1]", 4, "not a CIDR")
	assertProblem(t, err, "server.trusted_proxies[2]", 5, "not a CIDR")
	assertProblem(t, err, "server.trusted_proxies[3]", 6, "write 10.0.0.0/8")
	assertProblem(t, err, "server.trusted_proxy", 7, "unknown key (valid keys: trusted_proxies)")

	_, err = Parse([]byte("server:\n  trusted_proxies: 10.0.0.0/8\n"), env(nil))
	assertProblem(t, err, "server.trusted_proxies", 2, "must be a list")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestExampleConfigHasNoWarnings(t *testing.T) {
	cfg, err := Resolve("../config.example.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 || cfg.Store.Driver != DriverBbolt || cfg.Delivery.Failover.D() != 15*time.Second {
		t.Errorf("example: warnings %v, driver %q, failover %v; want none, bbolt, 15s", cfg.Warnings, cfg.Store.Driver, cfg.Delivery.Failover.D())
	}
}

// TestExamplePostgresSectionIsValid uncomments the example's store.postgres
// section, so the documented keys stay in step with the decoder.
func TestExamplePostgresSectionIsValid(t *testing.T) {
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	uncommented, inSection := 0, false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "  driver: bbolt"):
			line = "  driver: postgres"
		case strings.HasPrefix(line, "  # postgres:"), inSection && strings.HasPrefix(line, "  #   "):
			line = strings.Replace(line, "# ", "", 1)
			uncommented++
			inSection = true
		default:
			inSection = false
		}
		out = append(out, line)
	}
	if uncommented != 4 {
		t.Fatalf("uncommented %d lines of the example's store.postgres section, want 4 (postgres, dsn, schema, max_conns)", uncommented)
	}
	cfg, err := Parse([]byte(strings.Join(out, "\n")), env(map[string]string{"STATUSBRIDGE_POSTGRES_DSN": "postgres://u:p@db/x"}))
	if err != nil {
		t.Fatalf("the example with store.postgres uncommented: %v", err)
	}
	if p := cfg.Store.Postgres; p == nil || p.Schema != "statusbridge" || p.MaxConns != 16 || p.DSN != "postgres://u:p@db/x" {
		t.Errorf("postgres = %+v", p)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Path != "store.path" {
		t.Errorf("warnings = %v, want only store.path ignored", cfg.Warnings)
	}
}
