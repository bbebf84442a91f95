package receiver

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
)

// openapiDoc describes every /admin route; a test keeps it in step with the
// routes registered here.
//
//go:embed openapi.json
var openapiDoc []byte

// AdminStore is what the admin API reads: bridge.Store implements it over
// either backend; listings show a claimed delivery as in_flight.
type AdminStore interface {
	EventSummaries(ctx context.Context, f bridge.EventFilter) ([]bridge.EventSummary, string, error)
	Detail(ctx context.Context, id string) (*bridge.EventDetail, error)
	ListDeliveries(ctx context.Context, f bridge.DeliveryFilter) ([]bridge.Delivery, string, error)
	GetDelivery(ctx context.Context, id string) (*bridge.Delivery, error)
	// ResolveEventID and ResolveDeliveryID turn what a listing shows (the end
	// of an id) into the id.
	ResolveEventID(ctx context.Context, ref string) (string, error)
	ResolveDeliveryID(ctx context.Context, ref string) (string, error)
	FillShortDeliveryIDs(ctx context.Context, ds []bridge.Delivery) error
	// Orders and Order are the order intake's views.
	Orders(ctx context.Context, f bridge.IntakeFilter) ([]bridge.OrderSummary, string, error)
	Order(ctx context.Context, orderID string) (*bridge.OrderDetail, error)
}

var _ AdminStore = bridge.Store{}

// AdminDisabledHeader marks the 404s of a server started without
// admin.token, so a client can tell them from a missing record.
const AdminDisabledHeader = "X-Statusbridge-Admin"

// routeAdmin mounts /admin. Without a token every admin route answers 404
// (start-up says why): an admin API must never run unauthenticated.
func (s *Server) routeAdmin(e *echo.Echo) {
	if s.opt.AdminToken == "" || s.opt.Admin == nil || s.opt.Service == nil {
		e.Any("/admin/*", func(c echo.Context) error {
			c.Response().Header().Set(AdminDisabledHeader, "disabled") // the CLI says what to do
			return &apiError{code: http.StatusNotFound, msg: "admin API disabled: the server was started without admin.token " +
				"(the example config reads it from STATUSBRIDGE_ADMIN_TOKEN: set that in the server's environment and restart it)"}
		})
		return
	}
	g := e.Group("/admin", s.adminAuth)
	g.GET("/events", s.adminEvents)
	g.GET("/events/stream", s.adminStream(true))
	g.GET("/deliveries/stream", s.adminStream(false))
	g.GET("/events/:id", s.adminEvent)
	g.GET("/events/:id/payload", s.adminPayload)
	g.GET("/deliveries", s.adminDeliveries)
	g.GET("/deliveries/:id", s.adminDelivery)
	g.GET("/mapping", s.adminMapping)
	g.POST("/mapping/reload", s.adminReload)
	g.POST("/replay", s.adminReplay)
	g.POST("/deliveries/:id/retry", s.adminRetry)
	g.POST("/jobs", s.adminCreateJob)
	g.GET("/jobs", s.adminJobs)
	g.GET("/jobs/:id", s.adminJob)
	g.POST("/intake", s.adminIntake)
	g.GET("/orders", s.adminOrders)
	g.GET("/orders/:id", s.adminOrder)
	g.GET("/openapi.json", func(c echo.Context) error { return c.Blob(http.StatusOK, "application/json", openapiDoc) })
	g.Any("/*", func(echo.Context) error { return &apiError{code: http.StatusNotFound, msg: "no such admin route"} })
}

// adminAuth requires Authorization: Bearer <admin.token>, compared in
// constant time; an address with five wrong tokens in a minute gets 429
// until the oldest of them is a minute old (admin.Guard, shared with the
// console's login).
func (s *Server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		scheme, got, found := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			got = ""
		}
		ok, wait := s.opt.Guard.Check(c.RealIP(), strings.TrimSpace(got))
		if wait > 0 {
			s.log.Warn("admin request refused: too many wrong tokens from this address", "path", c.Request().URL.Path, "remote", c.RealIP())
			return &apiError{code: http.StatusTooManyRequests, msg: "too many wrong tokens; try again later",
				retryAfter: strconv.Itoa(int(wait.Seconds()) + 1)}
		}
		if !ok {
			s.log.Warn("admin request refused: wrong or missing token", "path", c.Request().URL.Path, "remote", c.RealIP())
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="statusbridge admin"`)
			return &apiError{code: http.StatusUnauthorized, msg: "unauthorized"}
		}
		return next(c)
	}
}

func badRequest(msg string) error { return &apiError{code: http.StatusBadRequest, msg: msg} }

// parseTime accepts RFC 3339 or "YYYY-MM-DD HH:MM:SS" (UTC).
func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := digishare.ParseTime(v)
	if err != nil {
		return time.Time{}, badRequest(name + ": use RFC 3339 or YYYY-MM-DD HH:MM:SS (UTC)")
	}
	return t, nil
}

func parseBool(name, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(name + ": true or false")
	}
	return b, nil
}

func parseLimit(v string) (int, error) {
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, badRequest("limit: a whole number from 1 to 1000")
	}
	return n, nil
}

func (s *Server) adminEvents(c echo.Context) error {
	q := c.QueryParams()
	f := bridge.EventFilter{State: q.Get("state"), OrderID: q.Get("order_id"), TicketID: q.Get("ticket_id"), Cursor: q.Get("cursor"),
		DeliveryState: q.Get("delivery_state"), StatusID: q.Get("status_id")}
	if err := bridge.CheckEventState(f.State); err != nil {
		return badRequest("state: " + err.Error())
	}
	if err := bridge.CheckDeliveryState(f.DeliveryState); err != nil {
		return badRequest("delivery_state: " + err.Error())
	}
	var err error
	if f.IncludeResolved, err = parseBool("include_resolved", q.Get("include_resolved")); err != nil {
		return err
	}
	if f.Since, err = parseTime("since", q.Get("since")); err != nil {
		return err
	}
	if f.Until, err = parseTime("until", q.Get("until")); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	rows, next, err := s.opt.Service.Events(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"events": rows, "next_cursor": next})
}

// resolveErr answers a reference that resolves to no id (404) or to several
// (400, naming them).
func resolveErr(err error, kind string) error {
	var ae *bridge.AmbiguousError
	switch {
	case errors.As(err, &ae):
		return badRequest(ae.Error())
	case errors.Is(err, bridge.ErrNotFound):
		return &apiError{code: http.StatusNotFound, msg: "no such " + kind + " (give its id, or at least the last 8 characters of it)"}
	}
	return err
}

func (s *Server) eventID(c echo.Context) (string, error) {
	id, err := s.opt.Admin.ResolveEventID(c.Request().Context(), c.Param("id"))
	if err != nil {
		return "", resolveErr(err, "event")
	}
	return id, nil
}

func (s *Server) deliveryID(c echo.Context) (string, error) {
	id, err := s.opt.Admin.ResolveDeliveryID(c.Request().Context(), c.Param("id"))
	if err != nil {
		return "", resolveErr(err, "delivery")
	}
	return id, nil
}

func (s *Server) adminEvent(c echo.Context) error {
	id, err := s.eventID(c)
	if err != nil {
		return err
	}
	d, err := s.opt.Service.Event(c.Request().Context(), id)
	if errors.Is(err, bridge.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such event"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// adminPayload answers an event's payload exactly as it was received (the
// event detail's JSON re-encodes it compactly).
func (s *Server) adminPayload(c echo.Context) error {
	id, err := s.eventID(c)
	if err != nil {
		return err
	}
	d, err := s.opt.Admin.Detail(c.Request().Context(), id)
	if errors.Is(err, bridge.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such event"}
	}
	if err != nil {
		return err
	}
	var text string
	if json.Unmarshal(d.Payload, &text) == nil { // the body was not JSON: stored as a JSON string
		return c.Blob(http.StatusOK, "application/octet-stream", []byte(text))
	}
	return c.Blob(http.StatusOK, "application/json", d.Payload)
}

func (s *Server) adminDeliveries(c echo.Context) error {
	q := c.QueryParams()
	f := bridge.DeliveryFilter{State: q.Get("state"), Target: q.Get("target"), OrderID: q.Get("order_id"), Cursor: q.Get("cursor")}
	if err := bridge.CheckDeliveryState(f.State); err != nil {
		return badRequest("state: " + err.Error())
	}
	var err error
	if f.IncludeResolved, err = parseBool("include_resolved", q.Get("include_resolved")); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	ds, next, err := s.opt.Service.Deliveries(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": ds, "next_cursor": next})
}

// adminDelivery answers one delivery with its attempts and the requests they
// sent.
func (s *Server) adminDelivery(c echo.Context) error {
	id, err := s.deliveryID(c)
	if err != nil {
		return err
	}
	d, err := s.opt.Admin.GetDelivery(c.Request().Context(), id)
	if errors.Is(err, bridge.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such delivery"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"delivery": d})
}

func (s *Server) adminMapping(c echo.Context) error {
	t := s.opt.Mapping()
	return c.JSON(http.StatusOK, map[string]any{
		"version": t.Version(), "loaded_at": s.opt.MappingLoadedAt(), "targets": t.Targets(),
		"ticket_types": t.TicketTypes(), "statuses": t.Entries(),
	})
}

// ReplayRequest is the body of POST /admin/replay.
type ReplayRequest struct {
	EventIDs []string `json:"event_ids"`
	OrderID  string   `json:"order_id"`
	Since    string   `json:"since"`
	Until    string   `json:"until"`
	State    string   `json:"state"`
	Dead     bool     `json:"dead"`
	Targets  []string `json:"targets"`
	DryRun   bool     `json:"dry_run"`
	Force    bool     `json:"force"`
	// IncludeUnknown: with dead, retry tickets whose outcome is unknown too
	// (they may exist in Digishare); left out and counted by default.
	IncludeUnknown bool `json:"include_unknown"`
}

func (s *Server) adminReplay(c echo.Context) error {
	var req ReplayRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	sel := bridge.ReplaySelector{OrderID: req.OrderID, State: req.State, Dead: req.Dead}
	for _, ref := range req.EventIDs {
		id, err := s.opt.Admin.ResolveEventID(c.Request().Context(), ref)
		var ae *bridge.AmbiguousError
		switch {
		case errors.As(err, &ae):
			return badRequest("event_ids: " + ae.Error())
		case err != nil:
			id = ref // reported in the summary as not found
		}
		sel.EventIDs = append(sel.EventIDs, id)
	}
	var err error
	if sel.Since, err = parseTime("since", req.Since); err != nil {
		return err
	}
	if sel.Until, err = parseTime("until", req.Until); err != nil {
		return err
	}
	sum, err := s.opt.Service.Replay(c.Request().Context(), c.RealIP(), sel, bridge.ReplayOptions{Targets: req.Targets, DryRun: req.DryRun,
		Force: req.Force, IncludeUnknown: req.IncludeUnknown})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sum)
}

func (s *Server) adminRetry(c echo.Context) error {
	id, err := s.deliveryID(c)
	if err != nil {
		return err
	}
	d, err := s.opt.Service.Retry(c.Request().Context(), c.RealIP(), id)
	var ce *bridge.ConflictError
	switch {
	case errors.Is(err, bridge.ErrNotFound):
		return &apiError{code: http.StatusNotFound, msg: "no such delivery"}
	case errors.As(err, &ce): // written for the API user: shown as it is
		return &apiError{code: http.StatusConflict, msg: ce.Msg}
	case errors.Is(err, bridge.ErrConflict):
		return &apiError{code: http.StatusConflict, msg: "the delivery cannot be retried in its current state"}
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"delivery": d})
}

func (s *Server) adminReload(c echo.Context) error {
	res, err := s.opt.Service.Reload(c.Request().Context(), c.RealIP())
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		return c.JSON(http.StatusUnprocessableEntity, map[string]any{"errors": ce.Problems})
	case err != nil:
		return &apiError{code: http.StatusConflict, msg: admin.UserMessage(err)}
	}
	return c.JSON(http.StatusOK, res)
}

// decodeBody reads a JSON request body of at most 1 MiB, refusing unknown fields.
func decodeBody(c echo.Context, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: " + err.Error())
	}
	return nil
}

// adminCreateJob starts a bulk job (POST /admin/jobs): 201 with the job, or
// with dry_run 200 with what it would do.
func (s *Server) adminCreateJob(c echo.Context) error {
	var req admin.JobRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.DryRun {
		p, err := s.opt.Service.PreviewRetry(c.Request().Context(), req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"dry_run": true, "preview": p})
	}
	j, err := s.opt.Service.CreateJob(c.Request().Context(), c.RealIP(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"job": j})
}

func (s *Server) adminJobs(c echo.Context) error {
	jobs, err := s.opt.Service.Jobs(c.Request().Context(), 100)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"jobs": jobs})
}

func (s *Server) adminJob(c echo.Context) error {
	j, err := s.opt.Service.Job(c.Request().Context(), c.Param("id"))
	if errors.Is(err, bridge.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such job"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"job": j})
}

// adminOrders lists orders by their newest intake, newest first.
func (s *Server) adminOrders(c echo.Context) error {
	q := c.QueryParams()
	f := bridge.IntakeFilter{OrderID: q.Get("order_id"), Cursor: q.Get("cursor")}
	var err error
	if f.Since, err = parseTime("since", q.Get("since")); err != nil {
		return err
	}
	if f.Until, err = parseTime("until", q.Get("until")); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	rows, next, err := s.opt.Admin.Orders(c.Request().Context(), f)
	if errors.Is(err, bridge.ErrNotFound) {
		return badRequest("cursor: not a cursor from a previous page")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"orders": rows, "next_cursor": next})
}

// adminOrder answers one order: its intakes, its ticket, the last status per
// target and its timeline across targets.
func (s *Server) adminOrder(c echo.Context) error {
	id := c.Param("id")
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	d, err := s.opt.Admin.Order(c.Request().Context(), id)
	if errors.Is(err, bridge.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such order (nothing of it is stored)"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}
