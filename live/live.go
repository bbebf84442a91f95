// Package live holds the mapping in force and replaces it at run time: a
// candidate config file is validated whole; if it is invalid the running
// mapping stays and the problems are returned; if valid the new mapping is
// swapped in atomically (each event is decided under one mapping, old or
// new, never a mix), logged as a diff and versioned.
package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/mapping"
)

// ErrNoFile is returned by Reload when the service runs on built-in defaults.
var ErrNoFile = errors.New("live: no config file to reload (running on built-in defaults)")

// Observer is told each reload's result (metrics).
type Observer interface{ Reload(ok bool) }

// Result describes an accepted reload.
type Result struct {
	Version       string   `json:"version"`
	Added         []string `json:"added"`
	Removed       []string `json:"removed"`
	Changed       []string `json:"changed"` // status ids whose entry changed ("ticket_types" when that list did)
	RestartNeeded []string `json:"restart_needed"`
	// Redecided counts held unmapped events decided again (see OnReload).
	Redecided int `json:"redecided"`
}

type state struct {
	table    *mapping.Table
	cfg      *config.Config // the config in force: running sections + current mapping
	loadedAt time.Time
}

// Mapping is the mapping in force.
type Mapping struct {
	getenv func(string) (string, bool)
	log    *slog.Logger
	obs    Observer
	cur    atomic.Pointer[state]
	last   atomic.Pointer[Outcome]
	mu     sync.Mutex // one reload at a time
	// OnReload, when set, is called after a swap with the status ids that
	// gained or changed an entry; it returns how many events it re-decided.
	OnReload func(statusIDs []string, t *mapping.Table) (int, error)
}

// New starts with the config the service was started with.
func New(cfg *config.Config, getenv func(string) (string, bool), log *slog.Logger, obs Observer) *Mapping {
	m := &Mapping{getenv: getenv, log: log, obs: obs}
	m.cur.Store(&state{table: mapping.New(cfg), cfg: cfg, loadedAt: time.Now().UTC()})
	return m
}

// Current returns the mapping in force.
func (m *Mapping) Current() *mapping.Table { return m.cur.Load().table }

// Config returns the config in force: the sections the service started
// with and the mapping in force.
func (m *Mapping) Config() *config.Config { return m.cur.Load().cfg }

// Outcome is the result of one reload, accepted or refused.
type Outcome struct {
	At      time.Time
	Version string // the version in force after it
	Result  Result // when accepted
	Err     error  // why it was refused (a *config.Error, ErrNoFile, …)
}

// LastReload returns the last reload's outcome (nil before any).
func (m *Mapping) LastReload() *Outcome { return m.last.Load() }

// LoadedAt returns when the mapping in force was loaded.
func (m *Mapping) LoadedAt() time.Time { return m.cur.Load().loadedAt }

// Reload reads the config file again. On a problem it returns a *config.Error
// (or ErrNoFile) and keeps the running mapping.
func (m *Mapping) Reload() (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur.Load()
	res, next, err := m.candidate(old)
	defer func() {
		m.last.Store(&Outcome{At: time.Now().UTC(), Version: m.Current().Version(), Result: res, Err: err})
	}()
	if err != nil {
		m.obs.Reload(false)
		m.log.Error("mapping reload refused; the running mapping stays", "version", old.table.Version(), "err", err)
		return Result{}, err
	}
	m.obs.Reload(true)
	if next == nil {
		m.log.Info("mapping reload: no change", "version", res.Version, "restart_needed", res.RestartNeeded)
		return res, nil
	}
	m.cur.Store(next)
	m.log.Info("mapping reloaded", "old_version", old.table.Version(), "version", res.Version,
		"added", res.Added, "removed", res.Removed, "changed", res.Changed,
		"changes", changes(old, next, res), "restart_needed", res.RestartNeeded)
	if m.OnReload != nil {
		ids := append(append([]string{}, res.Added...), res.Changed...)
		n, err := m.OnReload(ids, next.table)
		res.Redecided = n
		if err != nil {
			m.log.Error("re-deciding unmapped events after reload", "err", err)
		} else if n > 0 {
			m.log.Info("unmapped events decided again", "events", n)
		}
	}
	return res, nil
}

// candidate loads and checks the file; next is nil when the mapping did not change.
func (m *Mapping) candidate(old *state) (Result, *state, error) {
	if old.cfg.File == "" {
		return Result{}, nil, ErrNoFile
	}
	cand, err := config.Resolve(old.cfg.File, m.getenv)
	if err != nil {
		return Result{}, nil, err
	}
	if err := config.CheckMapping(cand, old.cfg.Targets); err != nil {
		return Result{}, nil, err
	}
	merged := *old.cfg
	merged.Mapping = cand.Mapping
	table := mapping.New(&merged)
	res := Result{Version: table.Version(), Added: []string{}, Removed: []string{}, Changed: []string{},
		RestartNeeded: restartNeeded(old.cfg, cand)}
	for id, e := range cand.Mapping.Statuses {
		prev, ok := old.cfg.Mapping.Statuses[id]
		switch {
		case !ok:
			res.Added = append(res.Added, id)
		case !reflect.DeepEqual(prev, e):
			res.Changed = append(res.Changed, id)
		}
	}
	for id := range old.cfg.Mapping.Statuses {
		if _, ok := cand.Mapping.Statuses[id]; !ok {
			res.Removed = append(res.Removed, id)
		}
	}
	if !slices.Equal(old.cfg.Mapping.TicketTypes, cand.Mapping.TicketTypes) {
		res.Changed = append(res.Changed, "ticket_types")
	}
	slices.Sort(res.Added)
	slices.Sort(res.Removed)
	slices.Sort(res.Changed)
	if table.Version() == old.table.Version() {
		return res, nil, nil
	}
	return res, &state{table: table, cfg: &merged, loadedAt: time.Now().UTC()}, nil
}

// changes describes each added, removed and changed entry with its old and
// new values, for the reload's log line: "yqd…: Order Confirmed
// (expertsender=paid) → Order Confirmed (expertsender=completed)".
func changes(old, next *state, res Result) []string {
	before, after := old.table.Entries(), next.table.Entries()
	var out []string
	for _, id := range res.Changed {
		if id == "ticket_types" {
			out = append(out, fmt.Sprintf("ticket_types: %v → %v", old.cfg.Mapping.TicketTypes, next.cfg.Mapping.TicketTypes))
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s → %s", id, describe(before[id]), describe(after[id])))
	}
	for _, id := range res.Added {
		out = append(out, fmt.Sprintf("%s: (none) → %s", id, describe(after[id])))
	}
	for _, id := range res.Removed {
		out = append(out, fmt.Sprintf("%s: %s → (none)", id, describe(before[id])))
	}
	return out
}

// describe writes an entry as its name and what each target is sent.
func describe(e mapping.Entry) string {
	targets := make([]string, 0, len(e.Targets))
	for t, st := range e.Targets {
		targets = append(targets, t+"="+st)
	}
	slices.Sort(targets)
	return fmt.Sprintf("%q (%s)", e.Name, strings.Join(targets, ", "))
}

// restartNeeded names the sections, other than mapping, that differ.
func restartNeeded(running, cand *config.Config) []string {
	out := []string{}
	for _, s := range []struct {
		name string
		a, b any
	}{
		{"listen", running.Listen, cand.Listen}, {"log", running.Log, cand.Log}, {"store", running.Store, cand.Store},
		{"webhook", running.Webhook, cand.Webhook}, {"order_id", running.OrderID, cand.OrderID},
		{"targets", running.Targets, cand.Targets}, {"delivery", running.Delivery, cand.Delivery},
		{"admin", running.Admin, cand.Admin}, {"server", running.Server, cand.Server},
		{"intake", running.Intake, cand.Intake},
	} {
		if !reflect.DeepEqual(s.a, s.b) {
			out = append(out, s.name)
		}
	}
	return out
}

// Watch reloads when the config file changes, until ctx ends. It watches the
// file's directory, so editors that replace the file by renaming are seen,
// and so are Kubernetes ConfigMap updates (the ..data symlink swapped).
func (m *Mapping) Watch(ctx context.Context) error {
	file := m.cur.Load().cfg.File
	if file == "" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("live: watch: %w", err)
	}
	defer w.Close()
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("live: watch: %w", err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("live: watch %s: %w", filepath.Dir(abs), err)
	}
	// Editors write in bursts: reload once the file has been quiet briefly.
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// A Kubernetes ConfigMap volume updates config.yaml (a symlink
			// into ..data/) by swapping the ..data symlink: no event names
			// the file itself.
			p, _ := filepath.Abs(ev.Name)
			if (p == abs || p == filepath.Join(filepath.Dir(abs), "..data")) && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(200 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			m.log.Warn("config watch", "err", err)
		case <-debounce:
			debounce = nil
			_, _ = m.Reload() // the outcome is logged
		}
	}
}
