package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statusbridge/statusbridge/config"
)

func TestConfigCheckPostgresStore(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ignored := write("ignored.yaml", "store:\n  path: x.db\n  postgres:\n    dsn: host=db\n")
	code, out, errOut := runCLI(t, "config", "check", "--config", ignored)
	if code != 0 || !strings.Contains(out, "ok") || !strings.Contains(errOut, "warning: line 3: store.postgres: is ignored") {
		t.Errorf("postgres section under bbolt: exit %d, stdout %q, stderr %q; want 0, ok and a warning naming line 3 and store.postgres", code, out, errOut)
	}

	noDSN := write("nodsn.yaml", "store:\n  driver: postgres\n  postgres:\n    dsn: ${STATUSBRIDGE_POSTGRES_DSN:-}\n")
	code, _, errOut = runCLI(t, "config", "check", "--config", noDSN)
	if code != 1 || !strings.Contains(errOut, "line 4: store.postgres.dsn: must be set") {
		t.Errorf("driver postgres without a DSN: exit %d, stderr %q; want 1 naming line 4 and store.postgres.dsn", code, errOut)
	}
	code, _, errOut = runCLI(t, "serve", "--config", noDSN)
	if code != 2 || !strings.Contains(errOut, "store.postgres.dsn") {
		t.Errorf("serve, driver postgres without a DSN: exit %d, stderr %q; want 2", code, errOut)
	}

	const pw = "Sup3r-Secret-Pw"
	badDSN := write("baddsn.yaml", "store:\n  driver: postgres\n  postgres:\n    dsn: ${DSN}\n")
	var o, e bytes.Buffer
	getenv := func(k string) (string, bool) {
		if k == "DSN" {
			return "postgres://u:" + pw + "@db:notaport/x", true
		}
		return "", false
	}
	if code := run(context.Background(), []string{"config", "check", "--config", badDSN}, getenv, &o, &e); code != 1 || strings.Contains(e.String()+o.String(), pw) {
		t.Errorf("bad DSN: exit %d, output %q; want 1 without the password", code, e.String()+o.String())
	}
}

func TestSecretsIncludeDSNPassword(t *testing.T) {
	cfg, err := config.Parse([]byte("store:\n  driver: postgres\n  postgres:\n    dsn: postgres://u:p%40ssw0rd@db/x\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	s := secrets(cfg)
	if !slices.Contains(s, "p@ssw0rd") || !slices.Contains(s, "p%40ssw0rd") {
		t.Errorf("secrets = %q, want the DSN password decoded and as written", s)
	}
}
