// Package receiver owns HTTP: the Echo routes, authentication, body limits,
// and the translation of results and errors into status codes. It never
// touches bbolt: it hands decoded events to the store's Ingest.
package receiver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/mapping"
)

// Ingester stores a webhook call durably: *bolt.DB implements it.
type Ingester interface {
	Ingest(ctx context.Context, in bridge.Incoming, dec bridge.Decider) (bridge.IngestResult, error)
}

var _ Ingester = bridge.Store{}

// Observer is told the outcome of every webhook call (metrics).
type Observer interface {
	Webhook(outcome string)
	Event(state string)
	// Stored is told how long a stored webhook took to answer.
	Stored(d time.Duration)
}

type noObserver struct{}

func (noObserver) Webhook(string)       {}
func (noObserver) Event(string)         {}
func (noObserver) Stored(time.Duration) {}

// Options configure the server.
type Options struct {
	WebhookPath string
	Token       string // empty: no authentication
	MaxBody     int64
	// Mapping returns the mapping in force (it may be swapped at run time).
	Mapping func() *mapping.Table
	// Ready reports whether the service can take events (/readyz).
	Ready func() error
	// ReadyInfo, when set, adds fields to every /readyz answer (e.g. whether
	// this replica is the sender).
	ReadyInfo func() map[string]any
	// AdminToken enables the admin API under /admin (empty: disabled, 404).
	AdminToken string
	Admin      AdminStore
	// Service is the admin service: the admin API lists, shows, retries,
	// replays, reloads and runs jobs through it (as the console does).
	Service *admin.Service
	// Guard checks the admin token (nil: one is made from AdminToken).
	Guard *admin.Guard
	// Proxies are the trusted reverse proxies: the client address of logs
	// and of the token check's slow-down is read through them.
	Proxies admin.Proxies
	// Console, when set with AdminToken, is served at /ui/ and / redirects there.
	Console http.Handler
	// Observer is told webhook outcomes (nil: nobody).
	Observer Observer
	// Metrics, when set, is served at GET /metrics (no token needed).
	Metrics http.Handler
	// Feed feeds the live tail (GET /admin/events/stream); nil: 404.
	Feed Feed
	// StreamPoll is how often the live tail polls the store (default 1s).
	StreamPoll time.Duration
	// Intake is the order intake endpoint (POST Intake.Path) and what the
	// admin API's POST /admin/intake causes.
	Intake IntakeOptions
	// MappingLoadedAt says when the mapping in force was loaded.
	MappingLoadedAt func() time.Time
	Log             *slog.Logger
	Now             func() time.Time

	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// Server is the HTTP front of statusbridge.
type Server struct {
	e    *echo.Echo
	http *http.Server
	opt  Options
	in   Ingester
	log  *slog.Logger
	// streamsDone is closed when shutdown begins: live tails end, so the
	// shutdown does not wait for them.
	streamsDone chan struct{}
	// overload counts webhooks refused because the store's queue is full,
	// for one log line a second at most (refuseOverloaded).
	overload struct {
		sync.Mutex
		logged  time.Time
		refused int
	}
}

// refuseOverloaded answers a webhook refused because the store's commit
// queue is full. In overload that is thousands a second: the first is
// logged at once, the rest at most once a second, with how many were
// refused since the last line (statusbridge_webhooks_total counts each).
func (s *Server) refuseOverloaded() error {
	s.opt.Observer.Webhook("store_error")
	now := s.opt.Now()
	s.overload.Lock()
	s.overload.refused++
	n := 0
	if now.Sub(s.overload.logged) >= time.Second {
		n, s.overload.refused, s.overload.logged = s.overload.refused, 0, now
	}
	s.overload.Unlock()
	if n > 0 {
		s.log.Warn("webhooks refused with 503: the store's commit queue is full; Digishare retries them", "refused", n)
	}
	return &apiError{code: http.StatusServiceUnavailable, msg: "overloaded, retry later", retryAfter: "1"}
}

// New builds the server with every route.
func New(in Ingester, opt Options) *Server {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Ready == nil {
		opt.Ready = func() error { return nil }
	}
	if opt.Observer == nil {
		opt.Observer = noObserver{}
	}
	setDefault(&opt.ReadHeaderTimeout, 5*time.Second)
	setDefault(&opt.ReadTimeout, 30*time.Second)
	setDefault(&opt.WriteTimeout, 30*time.Second)
	setDefault(&opt.IdleTimeout, 120*time.Second)
	setDefault(&opt.StreamPoll, time.Second)
	if opt.MappingLoadedAt == nil {
		started := opt.Now().UTC()
		opt.MappingLoadedAt = func() time.Time { return started }
	}
	if opt.Guard == nil {
		opt.Guard = admin.NewGuard(opt.AdminToken)
	}
	s := &Server{opt: opt, in: in, log: opt.Log, streamsDone: make(chan struct{})}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = opt.Proxies.ClientIP
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.log.Error("panic in handler", "path", c.Path(), "err", err)
			return err
		}}))
	e.Use(s.accessLog)
	e.POST(opt.WebhookPath, s.webhook, s.authenticate)
	if opt.Intake.Path != "" {
		e.POST(opt.Intake.Path, s.intake, s.intakeAuth)
	}
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		ans := map[string]any{}
		if s.opt.ReadyInfo != nil {
			for k, v := range s.opt.ReadyInfo() {
				ans[k] = v
			}
		}
		ans["mapping_version"] = s.opt.Mapping().Version()
		if err := s.opt.Ready(); err != nil {
			ans["status"], ans["error"] = "not ready", err.Error()
			return c.JSON(http.StatusServiceUnavailable, ans)
		}
		ans["status"] = "ready"
		return c.JSON(http.StatusOK, ans)
	})
	if opt.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(opt.Metrics))
	}
	s.routeAdmin(e)
	s.routeConsole(e)
	s.e = e
	s.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: opt.ReadHeaderTimeout,
		ReadTimeout:       opt.ReadTimeout,
		WriteTimeout:      opt.WriteTimeout,
		IdleTimeout:       opt.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(opt.Log.Handler(), slog.LevelDebug),
	}
	s.http.RegisterOnShutdown(func() { close(s.streamsDone) })
	return s
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Handler returns the HTTP handler (for tests with httptest).
func (s *Server) Handler() http.Handler { return s.e }

// Serve accepts connections on ln until Shutdown; it returns nil after a
// graceful shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("receiver: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// apiError is an error with the status code and message to answer.
type apiError struct {
	code       int
	msg        string
	retryAfter string
}

func (e *apiError) Error() string { return e.msg }

// handleError turns every error into a JSON answer, in one place.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg := http.StatusInternalServerError, "internal error"
	var ae *apiError
	var he *echo.HTTPError
	var ie *admin.InputError
	switch {
	case errors.As(err, &ie):
		code, msg = http.StatusBadRequest, ie.Msg
	case errors.As(err, &ae):
		code, msg = ae.code, ae.msg
		if ae.retryAfter != "" {
			c.Response().Header().Set("Retry-After", ae.retryAfter)
		}
	case errors.As(err, &he):
		code, msg = he.Code, http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
	default:
		s.log.Error("request failed", "path", c.Path(), "err", err)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(code)
		return
	}
	_ = c.JSON(code, map[string]string{"error": msg})
}

// accessLog logs each request at debug level with its path only: the query
// string may carry the webhook token and never reaches a log line.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		if s.log.Enabled(c.Request().Context(), slog.LevelDebug) {
			s.log.Debug("http request", "method", c.Request().Method, "path", c.Request().URL.Path,
				"status_code", c.Response().Status, "duration", time.Since(start), "remote", c.RealIP())
		}
		return nil
	}
}

// authenticate accepts the configured token as a Bearer token, as the HTTP
// Basic password, as X-Webhook-Token or as ?token=, compared in constant
// time, before the body is read.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	if s.opt.Token == "" {
		return next
	}
	return s.tokenAuth(s.opt.Token, func(c echo.Context) {
		s.opt.Observer.Webhook("unauthorized")
		s.log.Warn("webhook refused: wrong or missing credentials", "remote", c.RealIP())
	})(next)
}

// tokenAuth returns a middleware accepting token (non-empty) in the four
// forms of authenticate; refused is told each refusal before the 401.
func (s *Server) tokenAuth(token string, refused func(c echo.Context)) echo.MiddlewareFunc {
	want := []byte(token)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			var candidates []string
			if h := r.Header.Get("Authorization"); h != "" {
				if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
					candidates = append(candidates, strings.TrimSpace(rest))
				}
			}
			if _, pw, ok := r.BasicAuth(); ok {
				candidates = append(candidates, pw)
			}
			if h := r.Header.Get("X-Webhook-Token"); h != "" {
				candidates = append(candidates, h)
			}
			if q := r.URL.Query().Get("token"); q != "" {
				candidates = append(candidates, q)
			}
			ok := 0
			for _, cand := range candidates {
				ok |= subtle.ConstantTimeCompare([]byte(cand), want)
			}
			if ok != 1 {
				refused(c)
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="statusbridge"`)
				return &apiError{code: http.StatusUnauthorized, msg: "unauthorized"}
			}
			return next(c)
		}
	}
}

// webhookAnswer is the body of every 2xx webhook answer.
type webhookAnswer struct {
	EventID   string            `json:"event_id"`
	Duplicate bool              `json:"duplicate"`
	State     bridge.EventState `json:"state"`
	Error     string            `json:"error,omitempty"`
}

// busy is implemented by ingesters that can say they would refuse now.
type busy interface{ Busy() bool }

func (s *Server) webhook(c echo.Context) error {
	r := c.Request()
	start := time.Now()
	received := s.opt.Now()
	if b, ok := s.in.(busy); ok && b.Busy() {
		return s.refuseOverloaded()
	}
	if r.ContentLength > s.opt.MaxBody {
		s.opt.Observer.Webhook("too_large")
		return tooLarge(s.opt.MaxBody)
	}
	raw, err := readBody(http.MaxBytesReader(c.Response(), r.Body, s.opt.MaxBody), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.opt.Observer.Webhook("too_large")
			return tooLarge(s.opt.MaxBody)
		}
		s.opt.Observer.Webhook("bad_request")
		return &apiError{code: http.StatusBadRequest, msg: "reading body: " + err.Error()}
	}
	ev, err := digishare.Decode(raw)
	var shape *digishare.ShapeError
	switch {
	case errors.Is(err, digishare.ErrNotJSON):
		s.opt.Observer.Webhook("bad_request")
		s.log.Warn("webhook refused: body is not JSON", "err", err)
		return &apiError{code: http.StatusBadRequest, msg: err.Error()}
	case errors.As(err, &shape):
	case err != nil:
		return fmt.Errorf("receiver: decode: %w", err)
	}
	in := bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: received}
	if shape != nil {
		in.Invalid = shape.Reason
	}
	res, err := s.in.Ingest(r.Context(), in, s.opt.Mapping())
	if err != nil {
		if errors.Is(err, bridge.ErrOverloaded) {
			return s.refuseOverloaded()
		}
		s.opt.Observer.Webhook("store_error")
		s.log.Error("webhook not stored; asking Digishare to retry", "ticket_id", ev.TicketID, "err", err)
		return &apiError{code: http.StatusServiceUnavailable, msg: "event not stored, retry later", retryAfter: "5"}
	}
	s.logStored(r.Context(), ev, in, res)
	switch {
	case res.Duplicate:
		s.opt.Observer.Webhook("duplicate")
	case res.State == bridge.EventInvalid:
		s.opt.Observer.Webhook("invalid")
	case res.State == bridge.EventIgnored:
		s.opt.Observer.Webhook("ignored")
	default:
		s.opt.Observer.Webhook("accepted")
	}
	if !res.Duplicate {
		s.opt.Observer.Event(string(res.State))
	}
	ans := webhookAnswer{EventID: res.EventID, Duplicate: res.Duplicate, State: res.State}
	code := http.StatusOK
	if res.State == bridge.EventInvalid {
		code, ans.Error = http.StatusAccepted, in.Invalid
		if res.Duplicate {
			ans.Error = "duplicate of an invalid event"
		}
	}
	s.opt.Observer.Stored(time.Since(start))
	return c.JSON(code, ans)
}

// logStored writes the event's one line. Its attributes are built only when
// the line's level is on: at saturation with info off they were a dozen
// allocations per webhook for nothing.
func (s *Server) logStored(ctx context.Context, ev *digishare.Update, in bridge.Incoming, res bridge.IngestResult) {
	level, msg := slog.LevelInfo, "webhook received"
	switch {
	case res.State == bridge.EventInvalid:
		level, msg = slog.LevelWarn, "webhook stored as invalid"
	case res.State == bridge.EventUnmapped && !res.Duplicate:
		level, msg = slog.LevelWarn, "webhook received: status id not mapped"
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []any{"event_id", res.EventID, "event", ev.Name, "ticket_id", ev.TicketID,
		"state", res.State, "duplicate", res.Duplicate}
	if d := res.Decision; d != nil {
		attrs = append(attrs, "order_id", d.OrderID, "status_id", d.StatusID, "deliveries", len(res.Deliveries))
		if d.Reason != "" {
			attrs = append(attrs, "reason", d.Reason)
		}
	}
	if res.State == bridge.EventInvalid {
		attrs = append(attrs, "error", in.Invalid)
	}
	s.log.Log(ctx, level, msg, attrs...)
}

// readBody reads a body whose declared length (already checked against the
// limit; -1 when unknown) sizes the buffer: one allocation instead of
// io.ReadAll's doubling from 512 bytes (three for a 1.5 KB webhook, 3.5 KB).
func readBody(body io.Reader, declared int64) ([]byte, error) {
	if declared < 0 {
		return io.ReadAll(body)
	}
	buf := make([]byte, 0, declared+1) // +1: EOF is seen without growing
	for {
		if len(buf) == cap(buf) { // longer than declared: the reader will say so
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func tooLarge(limit int64) error {
	return &apiError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body is larger than webhook.max_body (%d bytes)", limit)}
}
