package outbound

import (
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// breaker is a copy of a target's circuit breaker, for readers outside the
// scheduler goroutine.
type breaker struct {
	failures, threshold int
	openUntil           time.Time
}

// publishBreaker copies a target's breaker after the scheduler changed it.
func (w *Worker) publishBreaker(name string, ts *targetState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.breakers == nil {
		w.breakers = map[string]breaker{}
	}
	w.breakers[name] = breaker{failures: ts.failures, threshold: ts.pol.BreakerFailures, openUntil: ts.openUntil}
}

// Health reports each sender's circuit breaker: closed, open until a time,
// or half-open (the cool-down is over; one probe may go through). A target
// that has not failed yet is closed.
func (w *Worker) Health() map[string]bridge.TargetHealth {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bridge.TargetHealth, len(w.senders))
	for name := range w.senders {
		h := bridge.TargetHealth{Breaker: "closed"}
		if b, ok := w.breakers[name]; ok {
			h.Failures = b.failures
			if b.threshold > 0 && b.failures >= b.threshold {
				h.Breaker, h.OpenUntil = "half_open", b.openUntil
				if now.Before(b.openUntil) {
					h.Breaker = "open"
				}
			}
		}
		out[name] = h
	}
	return out
}
