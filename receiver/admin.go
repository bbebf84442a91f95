package receiver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/mapping"
	"github.com/statusbridge/statusbridge/store"
)

// AdminStore is what the admin API reads: *store.DB implements it.
type AdminStore interface {
	ListEvents(f store.EventFilter) ([]store.Event, string, error)
	GetEvent(id string) (*store.Event, []byte, error)
	Deliveries(ids []string) ([]store.Delivery, error)
	ListDeliveries(f store.DeliveryFilter) ([]store.Delivery, string, error)
}

var _ AdminStore = (*store.DB)(nil)

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
	g.Any("/*", func(echo.Context) error { return &apiError{code: http.StatusNotFound, msg: "no such admin route"} })
}

// adminAuth requires Authorization: Bearer <admin.token>, compared in constant time.
func (s *Server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	want := []byte(s.opt.AdminToken)
	return func(c echo.Context) error {
		scheme, got, ok := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
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

var eventStates = map[string]bool{}

func init() {
	for _, o := range []mapping.Outcome{mapping.Invalid, mapping.NoStatusChange, mapping.Ignored, mapping.Unmapped,
		mapping.NoOrderID, mapping.NoAction, mapping.Superseded, mapping.Unchanged, mapping.Dispatched} {
		eventStates[string(o)] = true
	}
}

// EventSummary is one row of GET /admin/events.
type EventSummary struct {
	ID         string          `json:"id"`
	ReceivedAt time.Time       `json:"received_at"`
	Event      string          `json:"event"`
	TicketID   string          `json:"ticket_id,omitempty"`
	OrderID    string          `json:"order_id,omitempty"`
	State      mapping.Outcome `json:"state"`
	StatusID   string          `json:"status_id,omitempty"`
	StatusName string          `json:"status_name,omitempty"`
	Error      string          `json:"error,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	// Deliveries counts the event's deliveries by state.
	Deliveries map[string]int `json:"deliveries"`
}

func (s *Server) adminEvents(c echo.Context) error {
	q := c.QueryParams()
	f := store.EventFilter{State: q.Get("state"), OrderID: q.Get("order_id"), TicketID: q.Get("ticket_id"), Cursor: q.Get("cursor")}
	if f.State != "" && !eventStates[f.State] {
		return badRequest("state: unknown event state " + strconv.Quote(f.State))
	}
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
	events, next, err := s.opt.Admin.ListEvents(f)
	if errors.Is(err, store.ErrNotFound) {
		return badRequest("cursor: not a cursor from a previous page")
	}
	if err != nil {
		return err
	}
	rows := make([]EventSummary, 0, len(events))
	for _, ev := range events {
		row := EventSummary{ID: ev.ID, ReceivedAt: ev.ReceivedAt, Event: ev.Name, TicketID: ev.TicketID,
			OrderID: ev.OrderID, State: ev.State, Error: ev.Error, Deliveries: map[string]int{}}
		if n := len(ev.Decisions); n > 0 {
			d := ev.Decisions[n-1]
			row.StatusID, row.StatusName, row.Reason = d.StatusID, d.StatusName, d.Reason
		}
		ds, err := s.opt.Admin.Deliveries(ev.DeliveryIDs)
		if err != nil {
			return err
		}
		for _, d := range s.overlay(ds) {
			row.Deliveries[string(d.State)]++
		}
		rows = append(rows, row)
	}
	return c.JSON(http.StatusOK, map[string]any{"events": rows, "next_cursor": next})
}

// overlay marks deliveries being sent right now as in_flight (that state is
// never written to disk).
func (s *Server) overlay(ds []store.Delivery) []store.Delivery {
	if s.opt.InFlight == nil {
		return ds
	}
	for i := range ds {
		if ds[i].State == store.Pending && s.opt.InFlight(ds[i].ID) {
			ds[i].State = store.InFlight
		}
	}
	return ds
}

func (s *Server) adminEvent(c echo.Context) error {
	ev, raw, err := s.opt.Admin.GetEvent(c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		return &apiError{code: http.StatusNotFound, msg: "no such event"}
	}
	if err != nil {
		return err
	}
	ds, err := s.opt.Admin.Deliveries(ev.DeliveryIDs)
	if err != nil {
		return err
	}
	var payload any = string(raw)
	if json.Valid(raw) {
		payload = json.RawMessage(raw)
	}
	return c.JSON(http.StatusOK, map[string]any{"event": ev, "payload": payload, "deliveries": s.overlay(ds)})
}

var deliveryStates = map[string]bool{"pending": true, "in_flight": true, "done": true, "dead": true, "skipped": true, "superseded": true}

func (s *Server) adminDeliveries(c echo.Context) error {
	q := c.QueryParams()
	f := store.DeliveryFilter{State: q.Get("state"), Target: q.Get("target"), Cursor: q.Get("cursor")}
	if f.State != "" && !deliveryStates[f.State] {
		return badRequest("state: one of pending, in_flight, done, dead, skipped, superseded")
	}
	inFlightOnly := f.State == string(store.InFlight)
	if inFlightOnly {
		f.State = string(store.Pending) // in_flight is pending on disk
	}
	var err error
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return err
	}
	ds, next, err := s.opt.Admin.ListDeliveries(f)
	if errors.Is(err, store.ErrNotFound) {
		return badRequest("cursor: not a cursor from a previous page")
	}
	if err != nil {
		return err
	}
	ds = s.overlay(ds)
	if inFlightOnly {
		kept := ds[:0]
		for _, d := range ds {
			if d.State == store.InFlight {
				kept = append(kept, d)
			}
		}
		ds = kept
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": ds, "next_cursor": next})
}

func (s *Server) adminMapping(c echo.Context) error {
	t := s.opt.Mapping()
	return c.JSON(http.StatusOK, map[string]any{
		"version": t.Version(), "loaded_at": s.loadedAt, "targets": t.Targets(),
		"ticket_types": t.TicketTypes(), "statuses": t.Entries(),
	})
}
