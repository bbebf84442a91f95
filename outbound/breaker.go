package outbound

import (
	"sync"
	"time"
)

// breaker is one target's circuit breaker. The attempt that learns an
// outcome updates it at once, before its sender reports itself free, so the
// scheduler never admits a delivery on stale health: while the breaker is
// half-open exactly one delivery is in flight, and the others wait for its
// answer.
type breaker struct {
	failuresToOpen int
	cooldown       time.Duration

	mu        sync.Mutex
	failures  int // consecutive retryable failures
	openUntil time.Time
}

// breakerState is what the scheduler needs to know.
type breakerState int

const (
	breakerClosed   breakerState = iota
	breakerOpen                  // no delivery until openUntil
	breakerHalfOpen              // one probe at a time
)

func newBreaker(p TargetPolicy) *breaker {
	if p.BreakerFailures <= 0 {
		return nil
	}
	return &breaker{failuresToOpen: p.BreakerFailures, cooldown: p.BreakerCooldown}
}

// state reports the breaker's state at now and, when open, until when.
func (b *breaker) state(now time.Time) (breakerState, time.Time) {
	if b == nil {
		return breakerClosed, time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.failuresToOpen:
		return breakerClosed, time.Time{}
	case now.Before(b.openUntil):
		return breakerOpen, b.openUntil
	}
	return breakerHalfOpen, time.Time{}
}

// observe records the outcome of an attempt that reached (or tried to reach)
// the target: retryable failures count, anything else closes the breaker.
// It returns until when the target is paused (zero when it is not; a failed
// probe pauses it again) and whether the breaker just opened (from closed)
// or closed.
func (b *breaker) observe(retryable bool, now time.Time) (until time.Time, opened, closed bool) {
	if b == nil {
		return time.Time{}, false, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !retryable {
		closed = b.failures >= b.failuresToOpen
		b.failures = 0
		return time.Time{}, false, closed
	}
	b.failures++
	if b.failures < b.failuresToOpen {
		return time.Time{}, false, false
	}
	b.openUntil = now.Add(b.cooldown)
	return b.openUntil, b.failures == b.failuresToOpen, false
}

// failureCount returns the consecutive retryable failures (for logs).
func (b *breaker) failureCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures
}

// circuitObserver is implemented by observers that show each target's
// breaker (the statusbridge_circuit_open gauge).
type circuitObserver interface {
	SetCircuitOpen(target string, open bool)
}
