package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/mapping"
)

type reloads chan bool

func (r reloads) Reload(ok bool) { r <- ok }

const base = `listen: 127.0.0.1:8080
targets: { expertsender: { api_key: k } }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }
`

func setup(t *testing.T) (*Mapping, string, reloads) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	write(t, path, base)
	cfg, err := config.Resolve(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	obs := make(reloads, 10)
	return New(cfg, nil, slog.New(slog.DiscardHandler), obs), path, obs
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidReloadKeepsMapping(t *testing.T) {
	m, path, obs := setup(t)
	before := m.Current()
	write(t, path, base+"    bad: { expertsender: paid, nme: x }\n")
	_, err := m.Reload()
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Problems[0].Line != 6 || ce.Problems[0].Path != "mapping.statuses.bad.nme" {
		t.Fatalf("invalid reload: %v", err)
	}
	if m.Current() != before || <-obs {
		t.Error("an invalid reload replaced the mapping or was counted ok")
	}
	// A mapping naming a target the running config does not have is refused
	// even if the candidate file configures it: targets need a restart.
	write(t, path, base+"targets_extra: 1\n")
	if _, err := m.Reload(); err == nil {
		t.Error("unknown key accepted")
	}
	<-obs
	write(t, path, `listen: 127.0.0.1:8080
targets: { expertsender: { api_key: k }, http: { crm: { url: "https://crm.example.com" } } }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid, http: { crm: x } } } }
`)
	_, err = m.Reload()
	if !errors.As(err, &ce) || ce.Problems[0].Path != "mapping.statuses.yqdwrbka7kz69v8e.http.crm" {
		t.Errorf("reference to a target not running: %v", err)
	}
	<-obs
}

func TestValidReloadSwapsAndDiffs(t *testing.T) {
	m, path, obs := setup(t)
	before := m.Current().Version()
	var got []string
	m.OnReload = func(ids []string, tb *mapping.Table) (int, error) {
		got = ids
		return 3, nil
	}
	write(t, path, `listen: 127.0.0.1:9999
targets: { expertsender: { api_key: k } }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: completed }
    newstatus0000000: { name: New, expertsender: placed }
`)
	res, err := m.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if !<-obs {
		t.Error("reload not counted ok")
	}
	if res.Version == before || m.Current().Version() != res.Version {
		t.Errorf("version %s → %s, current %s", before, res.Version, m.Current().Version())
	}
	if len(res.Added) != 1 || res.Added[0] != "newstatus0000000" || len(res.Changed) != 1 || len(res.Removed) != 0 {
		t.Errorf("diff = %+v", res)
	}
	if len(res.RestartNeeded) != 1 || res.RestartNeeded[0] != "listen" {
		t.Errorf("restart_needed = %v", res.RestartNeeded)
	}
	if len(got) != 2 || res.Redecided != 3 {
		t.Errorf("OnReload got %v, redecided %d", got, res.Redecided)
	}
	if e := m.Current().Entries()["yqdwrbka7kz69v8e"]; e.Targets["expertsender"] != "completed" {
		t.Errorf("entry = %+v", e)
	}
}

func TestWatchReloadsOnFileChange(t *testing.T) {
	m, path, obs := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx) }()
	defer func() { cancel(); <-done }()
	// Editors often save by writing a new file and renaming it over the old.
	// The watcher may not be registered yet when the first save happens, so
	// save again until a reload applies the change (or the deadline passes).
	deadline := time.After(10 * time.Second)
	for {
		tmp := path + ".tmp"
		write(t, tmp, base+"    added0000000000: { name: Added, expertsender: paid }\n")
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		select {
		case ok := <-obs:
			if !ok {
				t.Fatal("watch reload failed")
			}
			if _, has := m.Current().Entries()["added0000000000"]; has {
				return
			}
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatal("the watched change was never applied")
		}
	}
}

// TestWatchReloadsOnConfigMapUpdate updates the config the way the kubelet
// updates a ConfigMap volume: config.yaml -> ..data/config.yaml, and ..data
// a symlink to a timestamped directory, swapped atomically by renaming.
func TestWatchReloadsOnConfigMapUpdate(t *testing.T) {
	dir := t.TempDir()
	version := func(n int, body string) {
		d := filepath.Join(dir, fmt.Sprintf("..2026_01_01_00_00_%02d.0000", n))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "config.yaml"), body)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(d), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version(0, base)
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), path); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Resolve(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	obs := make(reloads, 10)
	m := New(cfg, nil, slog.New(slog.DiscardHandler), obs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx) }()
	defer func() { cancel(); <-done }()
	// As above: update again until the watcher, once registered, sees it.
	deadline := time.After(10 * time.Second)
	for n := 1; ; n++ {
		version(n, base+"    added0000000000: { name: Added, expertsender: paid }\n")
		select {
		case ok := <-obs:
			if !ok {
				t.Fatal("watch reload failed")
			}
			if _, has := m.Current().Entries()["added0000000000"]; has {
				return
			}
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatal("the ConfigMap update was never applied")
		}
	}
}

func TestNoFile(t *testing.T) {
	m := New(config.Default(), nil, slog.New(slog.DiscardHandler), make(reloads, 1))
	if _, err := m.Reload(); !errors.Is(err, ErrNoFile) {
		t.Errorf("reload without a file: %v", err)
	}
}

// TestSyntaxErrorOnReloadNamesItsLine: a reload refused for a YAML syntax
// error reports the line where it is (not the one before) and the key.
func TestSyntaxErrorOnReloadNamesItsLine(t *testing.T) {
	m, path, obs := setup(t)
	write(t, path, base+"    abc000000000000: { name: Shipped, expertsender: shipped\n")
	_, err := m.Reload()
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 {
		t.Fatalf("reload = %v, want one problem", err)
	}
	if p := ce.Problems[0]; p.Line != 6 || p.Column != 22 || p.Path != "mapping.statuses.abc000000000000" {
		t.Errorf("problem = %+v, want line 6, column 22, path mapping.statuses.abc000000000000", p)
	}
	if <-obs {
		t.Error("a refused reload was counted ok")
	}
}

// TestReloadLogShowsOldAndNewValues: the reload's log line says what each
// changed entry was and what it is now, not only its id.
func TestReloadLogShowsOldAndNewValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	write(t, path, base)
	cfg, err := config.Resolve(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m := New(cfg, nil, slog.New(slog.NewJSONHandler(&logs, nil)), make(reloads, 10))
	write(t, path, `listen: 127.0.0.1:8080
targets: { expertsender: { api_key: k } }
mapping:
  statuses:
    yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: completed }
`)
	if _, err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	want := `yqdwrbka7kz69v8e: \"Order Confirmed\" (expertsender=paid) → \"Order Confirmed\" (expertsender=completed)`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("reload log = %s, want it to contain %s", logs.String(), want)
	}
}
