// Package cli implements the operator commands (events, replay, mapping diff,
// store compact, store copy). bbolt allows one process per file, so they talk
// to the running server's admin API and open the store directly (the file,
// or the PostgreSQL database) only when no server answers.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/mapping"
	"github.com/statusbridge/statusbridge/receiver"
	"github.com/statusbridge/statusbridge/storeopen"
)

// Env is the command's environment.
type Env struct {
	Getenv         func(string) (string, bool)
	Stdout, Stderr io.Writer
}

// backend is where the commands read and replay events.
type backend interface {
	EventSummaries(f bridge.EventFilter) ([]bridge.EventSummary, string, error)
	Detail(id string) (*bridge.EventDetail, error)
	Replay(req receiver.ReplayRequest, progress func(done, total int)) (bridge.ReplaySummary, error)
	Close() error
}

// errServerHoldsFile: the file is locked but no server answered.
var errServerHoldsFile = errors.New("a statusbridge server holds the store file but does not answer at its admin address; check --server and that it is running")

// connect returns the server backend when --server is given (never falling
// back) or when a server answers at the config's listen address; otherwise
// the store itself: the bbolt file, opened with a short lock timeout, or the
// PostgreSQL database (any number of processes may connect to it).
func connect(cfg *config.Config, server string, explicit bool, env Env, writable bool) (backend, error) {
	token, _ := env.Getenv("STATUSBRIDGE_ADMIN_TOKEN")
	hb := &httpBackend{base: strings.TrimRight(server, "/"), token: token,
		client: &http.Client{Timeout: 5 * time.Minute}}
	if explicit {
		return hb, nil
	}
	if hb.answers() {
		return hb, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := storeopen.Open(ctx, cfg, storeopen.Options{LockTimeout: 500 * time.Millisecond, ReadOnly: !writable, MaxConns: 4})
	if errors.Is(err, bolt.ErrLocked) {
		return nil, errServerHoldsFile
	}
	if err != nil {
		return nil, fmt.Errorf("no server answered at %s and the store cannot be opened: %w", server, err)
	}
	return &fileBackend{db: bridge.Store{Backend: db}, table: mapping.New(cfg)}, nil
}

// serverURL is --server, or http:// + the config's listen address (0.0.0.0
// and :: mean this machine).
func serverURL(cfg *config.Config, flag string) (string, bool) {
	if flag != "" {
		if !strings.Contains(flag, "://") {
			flag = "http://" + flag
		}
		return flag, true
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return "http://" + cfg.Listen, false
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), false
}

// fileBackend reads the store directly — the bbolt file or the database —
// through the same rules as the server (no server answered).
type fileBackend struct {
	db    bridge.Store
	table *mapping.Table
}

func (f *fileBackend) EventSummaries(flt bridge.EventFilter) ([]bridge.EventSummary, string, error) {
	return f.db.EventSummaries(context.Background(), flt)
}

func (f *fileBackend) Detail(id string) (*bridge.EventDetail, error) {
	return f.db.Detail(context.Background(), id)
}

func (f *fileBackend) Replay(req receiver.ReplayRequest, progress func(done, total int)) (bridge.ReplaySummary, error) {
	sel, opt, err := selection(req, f.table)
	if err != nil {
		return bridge.ReplaySummary{}, err
	}
	opt.Progress = progress
	return f.db.Replay(context.Background(), sel, f.table, opt, time.Now())
}

func (f *fileBackend) Close() error { return f.db.Close() }

// selection turns a replay request into store arguments (the file backend
// validates like the admin API does).
func selection(req receiver.ReplayRequest, t *mapping.Table) (bridge.ReplaySelector, bridge.ReplayOptions, error) {
	sel := bridge.ReplaySelector{EventIDs: req.EventIDs, OrderID: req.OrderID, State: req.State, Dead: req.Dead}
	var err error
	if sel.Since, err = parseTime("--since", req.Since); err != nil {
		return sel, bridge.ReplayOptions{}, err
	}
	if sel.Until, err = parseTime("--until", req.Until); err != nil {
		return sel, bridge.ReplayOptions{}, err
	}
	for _, target := range req.Targets {
		found := false
		for _, k := range t.Targets() {
			found = found || k == target
		}
		if !found {
			return sel, bridge.ReplayOptions{}, fmt.Errorf("--target %q is not a configured target (%s)", target, strings.Join(t.Targets(), ", "))
		}
	}
	return sel, bridge.ReplayOptions{Targets: req.Targets, DryRun: req.DryRun, Force: req.Force}, nil
}

type httpBackend struct {
	base   string
	token  string
	client *http.Client
}

// answers reports whether something answers HTTP at the server address.
func (h *httpBackend) answers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func (h *httpBackend) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		return err
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("server %s: %w", h.base, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("server %s refused the admin token: set STATUSBRIDGE_ADMIN_TOKEN", h.base)
		case http.StatusNotFound:
			if e.Error != "" {
				return fmt.Errorf("server %s: %s", h.base, e.Error)
			}
		}
		return fmt.Errorf("server %s: HTTP %d: %s", h.base, resp.StatusCode, strings.TrimSpace(e.Error+" "+string(raw[:min(len(raw), 200)])))
	}
	return json.Unmarshal(raw, out)
}

func (h *httpBackend) EventSummaries(f bridge.EventFilter) ([]bridge.EventSummary, string, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", f.State)
	set("order_id", f.OrderID)
	set("ticket_id", f.TicketID)
	set("cursor", f.Cursor)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	var out struct {
		Events     []bridge.EventSummary `json:"events"`
		NextCursor string                `json:"next_cursor"`
	}
	err := h.do(http.MethodGet, "/admin/events?"+q.Encode(), nil, &out)
	return out.Events, out.NextCursor, err
}

func (h *httpBackend) Detail(id string) (*bridge.EventDetail, error) {
	var out bridge.EventDetail
	if err := h.do(http.MethodGet, "/admin/events/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (h *httpBackend) Replay(req receiver.ReplayRequest, _ func(done, total int)) (bridge.ReplaySummary, error) {
	var out bridge.ReplaySummary
	err := h.do(http.MethodPost, "/admin/replay", req, &out)
	return out, err
}

func (h *httpBackend) Close() error { return nil }
