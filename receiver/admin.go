package receiver

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
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

// routeAdmin mounts /admin. Without a token every admin route answers 404
// (start-up says why): an admin API must never run unauthenticated.
func (s *Server) routeAdmin(e *echo.Echo) {
	if s.opt.AdminToken == "" || s.opt.Admin == nil {
		e.Any("/admin/*", func(echo.Context) error {
			return &apiError{code: http.StatusNotFound, msg: "admin API disabled: set admin.token"}
		})
		return
	}
	g := e.Group("/admin", s.adminAuth)
	g.GET("/events", s.adminEvents)
	g.GET("/events/:id", s.adminEvent)
	g.GET("/deliveries", s.adminDeliveries)
	g.GET("/mapping", s.adminMapping)
	g.POST("/mapping/reload", s.adminReload)
	g.POST("/replay", s.adminReplay)
	g.POST("/deliveries/:id/retry", s.adminRetry)
	g.POST("/jobs", s.adminCreateJob)
	g.GET("/jobs", s.adminJobs)
	g.GET("/jobs/:id", s.adminJob)
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
	f := bridge.EventFilter{State: q.Get("state"), OrderID: q.Get("order_id"), TicketID: q.Get("ticket_id"),
		StatusID: q.Get("status_id"), Cursor: q.Get("cursor")}
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
	rows, next, err := s.opt.Admin.Events(f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"events": rows, "next_cursor": next})
}

func (s *Server) adminEvent(c echo.Context) error {
	d, err := s.opt.Admin.Event(c.Param("id"))
	if errors.Is(err, bridge.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such event"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Server) adminDeliveries(c echo.Context) error {
	q := c.QueryParams()
	f := bridge.DeliveryFilter{State: q.Get("state"), Target: q.Get("target"), Cursor: q.Get("cursor")}
	var err error
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	ds, next, err := s.opt.Admin.Deliveries(f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": ds, "next_cursor": next})
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
}

func (s *Server) adminReplay(c echo.Context) error {
	var req ReplayRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	sel := bridge.ReplaySelector{EventIDs: req.EventIDs, OrderID: req.OrderID, State: req.State, Dead: req.Dead}
	var err error
	if sel.Since, err = parseTime("since", req.Since); err != nil {
		return err
	}
	if sel.Until, err = parseTime("until", req.Until); err != nil {
		return err
	}
	sum, err := s.opt.Admin.Replay(c.RealIP(), sel, bridge.ReplayOptions{Targets: req.Targets, DryRun: req.DryRun, Force: req.Force})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sum)
}

func (s *Server) adminRetry(c echo.Context) error {
	d, err := s.opt.Admin.Retry(c.RealIP(), c.Param("id"))
	switch {
	case errors.Is(err, bridge.ErrNotFound):
		return &apiError{code: http.StatusNotFound, msg: "no such delivery"}
	case errors.Is(err, bridge.ErrConflict):
		return &apiError{code: http.StatusConflict, msg: admin.UserMessage(err)}
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"delivery": d})
}

func (s *Server) adminReload(c echo.Context) error {
	res, err := s.opt.Admin.Reload(c.RealIP())
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
		p, err := s.opt.Admin.PreviewRetry(req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"dry_run": true, "preview": p})
	}
	j, err := s.opt.Admin.CreateJob(c.RealIP(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"job": j})
}

func (s *Server) adminJobs(c echo.Context) error {
	jobs, err := s.opt.Admin.Jobs(100)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"jobs": jobs})
}

func (s *Server) adminJob(c echo.Context) error {
	j, err := s.opt.Admin.Job(c.Param("id"))
	if errors.Is(err, bridge.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such job"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"job": j})
}
