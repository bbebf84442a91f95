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
	"slices"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/mapping"
	"github.com/statusbridge/statusbridge/outbound"
	"github.com/statusbridge/statusbridge/receiver"
	"github.com/statusbridge/statusbridge/storeopen"
)

// Env is the command's environment.
type Env struct {
	Getenv         func(string) (string, bool)
	Stdout, Stderr io.Writer
	// Ctx, when set, ends a tail (tests); otherwise SIGINT/SIGTERM do.
	Ctx context.Context
}

// backend is where the commands read and replay events.
type backend interface {
	EventSummaries(f bridge.EventFilter) ([]bridge.EventSummary, string, error)
	Detail(id string) (*bridge.EventDetail, error)
	// Payload returns an event's body exactly as it was received.
	Payload(id string) ([]byte, error)
	Replay(req receiver.ReplayRequest, progress func(done, total int)) (bridge.ReplaySummary, error)
	Deliveries(f bridge.DeliveryFilter) ([]bridge.Delivery, string, error)
	// Retry queues a dead delivery again (ref: its id or the end of it).
	Retry(ref string) (*bridge.Delivery, error)
	// Orders and Order are the order intake's listing and detail.
	Orders(f bridge.IntakeFilter) ([]bridge.OrderSummary, string, error)
	Order(id string) (*bridge.OrderDetail, error)
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
	noteDefaults(cfg, env) // the store is read, and replays decide under cfg's mapping
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := storeopen.Open(ctx, cfg, storeopen.Options{LockTimeout: 500 * time.Millisecond, ReadOnly: !writable, MaxConns: 4})
	if errors.Is(err, bolt.ErrLocked) {
		return nil, errServerHoldsFile
	}
	if err != nil {
		return nil, fmt.Errorf("no server answered at %s and the store cannot be opened: %w", server, err)
	}
	return &fileBackend{db: bridge.Store{Backend: db}, table: mapping.New(cfg), intakeTargets: outbound.Plan(cfg).Targets()}, nil
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
	// intakeTargets are the targets of the order intake's steps (digishare).
	intakeTargets []string
}

func (f *fileBackend) EventSummaries(flt bridge.EventFilter) ([]bridge.EventSummary, string, error) {
	return f.db.EventSummaries(context.Background(), flt)
}

func (f *fileBackend) Detail(ref string) (*bridge.EventDetail, error) {
	ctx := context.Background()
	id, err := f.db.ResolveEventID(ctx, ref)
	if err != nil {
		return nil, err
	}
	return f.db.Detail(ctx, id)
}

func (f *fileBackend) Payload(ref string) ([]byte, error) {
	ctx := context.Background()
	id, err := f.db.ResolveEventID(ctx, ref)
	if err != nil {
		return nil, err
	}
	_, raw, err := f.db.GetEvent(ctx, id)
	return raw, err
}

func (f *fileBackend) Deliveries(flt bridge.DeliveryFilter) ([]bridge.Delivery, string, error) {
	ctx := context.Background()
	ds, next, err := f.db.ListDeliveries(ctx, flt)
	if err == nil {
		err = f.db.FillShortDeliveryIDs(ctx, ds)
	}
	return ds, next, err
}

func (f *fileBackend) Retry(ref string) (*bridge.Delivery, error) {
	ctx := context.Background()
	id, err := f.db.ResolveDeliveryID(ctx, ref)
	if err != nil {
		return nil, err
	}
	return f.db.RetryDelivery(ctx, id, time.Now())
}

func (f *fileBackend) Replay(req receiver.ReplayRequest, progress func(done, total int)) (bridge.ReplaySummary, error) {
	sel, opt, err := selection(req, f.table, f.intakeTargets)
	if err != nil {
		return bridge.ReplaySummary{}, err
	}
	for i, ref := range sel.EventIDs { // what the listing shows, as the server accepts it
		id, err := f.db.ResolveEventID(context.Background(), ref)
		var ae *bridge.AmbiguousError
		switch {
		case errors.As(err, &ae):
			return bridge.ReplaySummary{}, fmt.Errorf("--event: %w", ae)
		case err == nil:
			sel.EventIDs[i] = id
		}
	}
	opt.Progress = progress
	return f.db.Replay(context.Background(), sel, f.table, opt, time.Now())
}

func (f *fileBackend) Close() error { return f.db.Close() }

// selection turns a replay request into store arguments (the file backend
// validates like the admin API does).
func selection(req receiver.ReplayRequest, t *mapping.Table, intakeTargets []string) (bridge.ReplaySelector, bridge.ReplayOptions, error) {
	known := t.Targets()
	for _, it := range intakeTargets {
		if !slices.Contains(known, it) {
			known = append(known, it)
		}
	}
	sel := bridge.ReplaySelector{EventIDs: req.EventIDs, OrderID: req.OrderID, State: req.State, Dead: req.Dead}
	var err error
	if sel.Since, err = parseTime("--since", req.Since); err != nil {
		return sel, bridge.ReplayOptions{}, err
	}
	if sel.Until, err = parseTime("--until", req.Until); err != nil {
		return sel, bridge.ReplayOptions{}, err
	}
	for _, target := range req.Targets {
		if !slices.Contains(known, target) {
			return sel, bridge.ReplayOptions{}, fmt.Errorf("--target %q is not a configured target (%s)", target, strings.Join(known, ", "))
		}
	}
	return sel, bridge.ReplayOptions{Targets: req.Targets, DryRun: req.DryRun, Force: req.Force, IncludeUnknown: req.IncludeUnknown}, nil
}

type httpBackend struct {
	base   string
	token  string
	client *http.Client
	// connected, when set, is called once a stream is accepted.
	connected func()
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
		return h.statusError(resp, raw)
	}
	if p, ok := out.(*[]byte); ok { // the body itself, as it is
		*p = raw
		return nil
	}
	return json.Unmarshal(raw, out)
}

// statusError says what a refused admin request means for the user.
func (h *httpBackend) statusError(resp *http.Response, raw []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	switch {
	case resp.Header.Get(receiver.AdminDisabledHeader) == "disabled" && h.token != "":
		return fmt.Errorf("server %s has no admin API: STATUSBRIDGE_ADMIN_TOKEN is set here, but the server was started "+
			"without admin.token; set STATUSBRIDGE_ADMIN_TOKEN in the server's environment too (the example config "+
			"reads admin.token from it) and restart the server", h.base)
	case resp.Header.Get(receiver.AdminDisabledHeader) == "disabled":
		return fmt.Errorf("server %s has no admin API: it was started without admin.token; set STATUSBRIDGE_ADMIN_TOKEN "+
			"in the server's environment (the example config reads admin.token from it), restart the server, and set "+
			"the same value here for the CLI", h.base)
	case resp.StatusCode == http.StatusUnauthorized && h.token == "":
		return fmt.Errorf("server %s needs its admin token: set STATUSBRIDGE_ADMIN_TOKEN here to the server's admin.token", h.base)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("server %s refused the admin token in STATUSBRIDGE_ADMIN_TOKEN: it is not the server's admin.token", h.base)
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		if e.Error != "" {
			return fmt.Errorf("server %s: %s", h.base, e.Error)
		}
	}
	if e.Error != "" {
		return fmt.Errorf("server %s: HTTP %d: %s", h.base, resp.StatusCode, e.Error)
	}
	return fmt.Errorf("server %s: HTTP %d: %s", h.base, resp.StatusCode, strings.TrimSpace(string(raw[:min(len(raw), 200)])))
}

func (h *httpBackend) EventSummaries(f bridge.EventFilter) ([]bridge.EventSummary, string, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", f.State)
	set("delivery_state", f.DeliveryState)
	if f.IncludeResolved {
		q.Set("include_resolved", "true")
	}
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

func (h *httpBackend) Payload(id string) ([]byte, error) {
	var raw []byte
	if err := h.do(http.MethodGet, "/admin/events/"+url.PathEscape(id)+"/payload", nil, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

func (h *httpBackend) Replay(req receiver.ReplayRequest, _ func(done, total int)) (bridge.ReplaySummary, error) {
	var out bridge.ReplaySummary
	err := h.do(http.MethodPost, "/admin/replay", req, &out)
	return out, err
}

func (h *httpBackend) Deliveries(f bridge.DeliveryFilter) ([]bridge.Delivery, string, error) {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "target": f.Target, "order_id": f.OrderID, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.IncludeResolved {
		q.Set("include_resolved", "true")
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	var out struct {
		Deliveries []bridge.Delivery `json:"deliveries"`
		NextCursor string            `json:"next_cursor"`
	}
	err := h.do(http.MethodGet, "/admin/deliveries?"+q.Encode(), nil, &out)
	return out.Deliveries, out.NextCursor, err
}

func (h *httpBackend) Retry(ref string) (*bridge.Delivery, error) {
	var out struct {
		Delivery *bridge.Delivery `json:"delivery"`
	}
	if err := h.do(http.MethodPost, "/admin/deliveries/"+url.PathEscape(ref)+"/retry", nil, &out); err != nil {
		return nil, err
	}
	return out.Delivery, nil
}

func (h *httpBackend) Close() error { return nil }
