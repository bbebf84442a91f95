package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/orders"
)

// IntakeTaker stores order intakes durably: bridge.Store implements it.
type IntakeTaker interface {
	TakeIntake(ctx context.Context, in bridge.IncomingOrder, plan bridge.IntakePlan, now time.Time) (bridge.IntakeResult, error)
}

var _ IntakeTaker = bridge.Store{}

// IntakeObserver is told the outcome of every order intake (metrics:
// statusbridge_intake_total{outcome}).
type IntakeObserver interface {
	Intake(outcome string)
}

// IntakeOptions configure the order intake endpoint, POST {intake.path}.
type IntakeOptions struct {
	Path    string // empty: no intake endpoint
	Token   string // empty: every intake is refused (401)
	MaxBody int64
	// Plan says which deliveries an intake causes (ticket, upsert, fetch).
	Plan bridge.IntakePlan
}

// intakeAnswer is the body of every 200 intake answer.
type intakeAnswer struct {
	OrderID   string             `json:"order_id"`
	IntakeID  string             `json:"intake_id"`
	Duplicate bool               `json:"duplicate"`
	State     bridge.IntakeState `json:"state"`
}

func (s *Server) observeIntake(outcome string) {
	if o, ok := s.opt.Observer.(IntakeObserver); ok {
		o.Intake(outcome)
	}
}

// intakeAuth checks the intake token, before the body is read, in the four
// forms the webhook accepts. Without a token every intake is refused: an
// order intake creates tickets that message customers.
func (s *Server) intakeAuth(next echo.HandlerFunc) echo.HandlerFunc {
	check := s.tokenAuth(s.opt.Intake.Token, func(c echo.Context) {
		s.observeIntake("unauthorized")
		s.log.Warn("order intake refused: wrong or missing credentials", "remote", c.RealIP())
	})
	return func(c echo.Context) error {
		if s.opt.Intake.Token == "" {
			s.observeIntake("unauthorized")
			s.log.Warn("order intake refused: intake.token is empty, so every intake is refused", "remote", c.RealIP())
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="statusbridge intake"`)
			return &apiError{code: http.StatusUnauthorized, msg: "unauthorized: intake.token is not set on this server"}
		}
		return check(next)(c)
	}
}

// intake answers POST {intake.path}.
func (s *Server) intake(c echo.Context) error {
	return s.takeIntake(c, bridge.SourceHTTP, s.opt.Intake.MaxBody)
}

// adminIntake answers POST /admin/intake: the same body and answers, with
// the admin token (orders push and orders import post here).
func (s *Server) adminIntake(c echo.Context) error {
	limit := s.opt.Intake.MaxBody
	if limit <= 0 {
		limit = 1 << 20
	}
	return s.takeIntake(c, bridge.SourceAdmin, limit)
}

func (s *Server) takeIntake(c echo.Context, source bridge.IntakeSource, maxBody int64) error {
	r := c.Request()
	received := s.opt.Now()
	taker, ok := s.in.(IntakeTaker)
	if !ok || taker == nil {
		return &apiError{code: http.StatusNotFound, msg: "order intake is not available"}
	}
	if b, ok := s.in.(busy); ok && b.Busy() {
		s.observeIntake("store_error")
		return &apiError{code: http.StatusServiceUnavailable, msg: "overloaded, retry later", retryAfter: "1"}
	}
	if r.ContentLength > maxBody {
		s.observeIntake("too_large")
		return intakeTooLarge(maxBody)
	}
	raw, err := readBody(http.MaxBytesReader(c.Response(), r.Body, maxBody), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.observeIntake("too_large")
			return intakeTooLarge(maxBody)
		}
		s.observeIntake("bad_request")
		return &apiError{code: http.StatusBadRequest, msg: "reading body: " + err.Error()}
	}
	o, err := orders.Decode(raw)
	var inv *orders.InvalidError
	switch {
	case errors.Is(err, orders.ErrNotJSON):
		s.observeIntake("bad_request")
		s.log.Warn("order intake refused: body is not JSON", "source", source, "err", err)
		return &apiError{code: http.StatusBadRequest, msg: err.Error()}
	case errors.As(err, &inv):
		s.observeIntake("invalid")
		s.log.Warn("order intake refused: not an order", "source", source, "reason", inv.Reason)
		return &apiError{code: http.StatusUnprocessableEntity, msg: inv.Error()}
	case err != nil:
		return fmt.Errorf("receiver: decode order: %w", err)
	}
	in := bridge.IncomingOrder{OrderID: o.ID, IDOnly: o.IDOnly, Key: o.Key, Raw: raw, Source: source, ReceivedAt: received}
	res, err := taker.TakeIntake(r.Context(), in, s.opt.Intake.Plan, received)
	if err != nil {
		s.observeIntake("store_error")
		s.log.Error("order intake not stored; asking the sender to retry", "order_id", o.ID, "source", source, "err", err)
		if errors.Is(err, bridge.ErrOverloaded) {
			return &apiError{code: http.StatusServiceUnavailable, msg: "overloaded, retry later", retryAfter: "1"}
		}
		return &apiError{code: http.StatusServiceUnavailable, msg: "order not stored, retry later", retryAfter: "5"}
	}
	if res.Duplicate {
		s.observeIntake("duplicate")
	} else {
		s.observeIntake("accepted")
	}
	s.logIntake(r.Context(), o, source, res)
	return c.JSON(http.StatusOK, intakeAnswer{OrderID: res.OrderID, IntakeID: res.IntakeID, Duplicate: res.Duplicate, State: res.State})
}

// logIntake writes the intake's one line: order id, what was stored, the
// deliveries it caused, and the customer's phone and email masked.
func (s *Server) logIntake(ctx context.Context, o *orders.Order, source bridge.IntakeSource, res bridge.IntakeResult) {
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	kinds := make([]string, 0, len(res.Deliveries))
	for _, d := range res.Deliveries {
		k := string(d.Kind)
		if d.State != bridge.Pending {
			k += " (" + string(d.State) + ")"
		}
		kinds = append(kinds, k)
	}
	attrs := []any{"order_id", res.OrderID, "intake_id", res.IntakeID, "state", res.State, "duplicate", res.Duplicate,
		"source", source, "deliveries", strings.Join(kinds, ",")}
	if !o.IDOnly {
		phone, _ := o.Text("shippingAddress.contactPhone")
		if phone != "" {
			phone = orders.MaskPhone(phone)
		}
		attrs = append(attrs, "phone", phone, "email", orders.MaskEmail(o.Email()))
	}
	s.log.Info("order intake", attrs...)
}

func intakeTooLarge(limit int64) error {
	return &apiError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body is larger than intake.max_body (%d bytes)", limit)}
}
