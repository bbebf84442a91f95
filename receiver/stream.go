package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
)

// Feed is what the live tail polls besides the event listing: the delivery
// results recorded after a position. *bolt.DB and *postgres.DB (a changes
// table with a sequence, which every replica sharing the database sees)
// implement it: the tail only polls what is stored.
type Feed interface {
	ChangesPosition() (string, error)
	ChangesAfter(pos string, limit int) ([]bridge.Delivery, string, error)
}

var _ Feed = (*bolt.DB)(nil)

// The live tail (GET /admin/events/stream, GET /admin/deliveries/stream)
// is server-sent events. It polls the store (every Options.StreamPoll,
// default 1 s) for events stored and delivery results recorded since it
// started, so it shows what every process sharing the store stored and
// sent, not only this one. Lines: "event: event" with an EventSummary,
// "event: delivery" with a Delivery (its attempts and the requests sent),
// and a ": ping" comment every 15 s. A stream ends when the client goes or
// the server shuts down.

const (
	streamBatch = 500 // changes read per poll, at most
	streamPing  = 15 * time.Second
)

// adminStream serves the tail; events says whether stored events are sent
// too (else only delivery results).
func (s *Server) adminStream(events bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.opt.Feed == nil {
			return &apiError{code: http.StatusNotFound, msg: "the live tail is not available"}
		}
		pos, err := s.opt.Feed.ChangesPosition()
		if err != nil {
			return err
		}
		last, err := s.newestEvent()
		if err != nil {
			return err
		}
		w := c.Response()
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, ": statusbridge live tail\n\n")
		w.Flush()
		poll := time.NewTicker(s.opt.StreamPoll)
		defer poll.Stop()
		ping := time.NewTicker(streamPing)
		defer ping.Stop()
		ctx := c.Request().Context()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-s.streamsDone:
				return nil
			case <-ping.C:
				fmt.Fprint(w, ": ping\n\n")
			case <-poll.C:
				if events {
					rows, err := s.eventsAfter(last)
					if err != nil {
						s.log.Warn("live tail: read events", "err", err)
						continue
					}
					for _, r := range rows {
						writeSSE(w, "event", r)
						last = r.ID
					}
				}
				ds, next, err := s.opt.Feed.ChangesAfter(pos, streamBatch)
				if err != nil {
					s.log.Warn("live tail: read delivery results", "err", err)
					continue
				}
				pos = next
				if err := s.opt.Admin.FillShortDeliveryIDs(ctx, ds); err != nil {
					s.log.Warn("live tail: short ids", "err", err)
				}
				for _, d := range ds {
					writeSSE(w, "delivery", d)
				}
			}
			w.Flush()
		}
	}
}

func writeSSE(w *echo.Response, kind string, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", kind, raw)
}

// newestEvent returns the id of the newest stored event ("" for none).
func (s *Server) newestEvent() (string, error) {
	rows, _, err := s.opt.Admin.EventSummaries(context.Background(), bridge.EventFilter{Limit: 1})
	if err != nil || len(rows) == 0 {
		return "", err
	}
	return rows[0].ID, nil
}

// eventsAfter returns the events stored after the one with id last (ids are
// time-ordered), oldest first.
func (s *Server) eventsAfter(last string) ([]bridge.EventSummary, error) {
	var out []bridge.EventSummary
	f := bridge.EventFilter{Limit: 100}
	for {
		rows, next, err := s.opt.Admin.EventSummaries(context.Background(), f)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if r.ID <= last {
				slices.Reverse(out)
				return out, nil
			}
			out = append(out, r)
		}
		if next == "" || len(out) >= 10000 {
			slices.Reverse(out)
			return out, nil
		}
		f.Cursor = next
	}
}
