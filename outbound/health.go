package outbound

import "github.com/statusbridge/statusbridge/bridge"

// Health reports each sender's circuit breaker as this process sees it:
// closed, open until a time, or half-open (the cool-down is over; one probe
// may go through). A target without a breaker is closed.
func (w *Worker) Health() map[string]bridge.TargetHealth {
	now := w.now()
	out := make(map[string]bridge.TargetHealth, len(w.senders))
	for name := range w.senders {
		h := bridge.TargetHealth{Breaker: "closed"}
		if b := w.breakers[name]; b != nil {
			st, until := b.state(now)
			h.Failures = b.failureCount()
			switch st {
			case breakerOpen:
				h.Breaker, h.OpenUntil = "open", until
			case breakerHalfOpen:
				h.Breaker = "half_open"
			}
		}
		out[name] = h
	}
	return out
}
