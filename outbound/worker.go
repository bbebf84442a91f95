package outbound

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/orders"
)

// Sender sends one delivery to one downstream system. A nil error means the
// delivery is done; an *Error says whether to retry.
type Sender interface {
	Send(ctx context.Context, m *Message) (Response, error)
}

// OnceSender is a Sender whose calls are not idempotent: the worker never
// sends two deliveries with the same key unless the delivery is forced.
type OnceSender interface {
	Sender
	OnceKey(m *Message) string
}

// UnknownWhenCut is implemented by senders whose request, once sent, can
// neither be taken back nor safely repeated (creating a Digishare ticket:
// TicketSender): when our own shutdown cuts such an attempt off after the
// request went out, its outcome is unknown, so the worker records the
// attempt and ends the delivery dead with that reason, for a person to
// check, instead of putting it back to pending as if nothing was sent
// (what it does for every other sender). A delivery of such a sender is
// claimed durably (the claim is committed before the request goes out): one
// found at start with a claim left by a process that is gone ends dead the
// same way, and so does an attempt whose answer said nothing about the
// outcome (UnknownOutcomeError).
type UnknownWhenCut interface {
	Sender
	OutcomeUnknownWhenCut() bool
}

// lateClaimer is implemented by UnknownWhenCut senders that do work that
// may be repeated (an invoice upload) before the request that may not: the
// worker claims their deliveries in memory, and they call Message.Sending,
// which makes the claim durable, right before that request. A crash before
// then leaves no durable claim: the delivery is simply sent at the next
// start.
type lateClaimer interface{ claimsLate() }

// outcomeReporter is implemented by UnknownWhenCut senders that tell which
// failures mean the request went out, and what a person should check.
type outcomeReporter interface {
	sent(err error) bool
	unknownReason(m *Message) string
}

// Outbox is what the worker needs from the store: the backend's outbox
// (claims included), the events and intakes its deliveries came from, and
// the transactions that record what a delivery made (a ticket, a fetched
// order) with the attempt.
type Outbox interface {
	bridge.Outbox
	bridge.Updater
	GetEvent(ctx context.Context, id string) (*bridge.Event, []byte, error)
	View(ctx context.Context, fn func(tx bridge.Tx) error) error
}

// ErrNotSender, as the cause of Run's context, stops the worker at once:
// in-flight sends are cancelled without the shutdown grace, because this
// replica is no longer the deployment's sender.
var ErrNotSender = errors.New("no longer the sender")

// ResultAlreadyTriggered is the outcome of a non-idempotent delivery whose
// key was already sent.
const ResultAlreadyTriggered = "already_triggered"

var _ Outbox = bridge.Backend(nil)

// Observer is told every attempt's result (metrics): done, retry, dead,
// skipped or superseded.
type Observer interface {
	Attempt(target, result string, d time.Duration)
}

type noObserver struct{}

func (noObserver) Attempt(string, string, time.Duration) {}

// Policy bounds retries and parallelism.
type Policy struct {
	MaxAttempts int           // every attempt counts, the first included
	Initial     time.Duration // first retry delay (before jitter)
	Max         time.Duration // cap of the exponential delay (Retry-After may exceed it)
	Concurrency int           // deliveries in flight at once, all targets together
	// Targets holds per-target limits (a target not listed has none).
	Targets map[string]TargetPolicy
	// ShutdownGrace is how long in-flight sends may finish at shutdown before
	// they are cancelled and left pending (default 10s).
	ShutdownGrace time.Duration
	// MaxHeld bounds the pending deliveries of one target held in memory
	// (default 10,000, ~1 KB each); the rest wait on disk and are read, in
	// commit order, as held ones finish. A target that is down for long
	// therefore costs bounded memory and never delays the other targets.
	MaxHeld int
}

// TargetPolicy limits one target.
type TargetPolicy struct {
	Concurrency int     // deliveries in flight at once (0 = Policy.Concurrency)
	Rate        float64 // attempts per second (0 = unlimited)
	// BreakerFailures consecutive retryable failures pause the target for
	// BreakerCooldown; then one probe goes through (0 = no breaker).
	BreakerFailures int
	BreakerCooldown time.Duration
}

// Backoff returns the delay before the attempt after attempt n (1-based):
// exponential from Initial, capped at Max, with equal jitter (half fixed,
// half random) so retries of many deliveries spread out.
func (p Policy) Backoff(n int, random float64) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return d/2 + time.Duration(random*float64(d/2))
}

// Worker sends pending deliveries: one at a time per (target, order) lane in
// commit order, lanes in parallel up to the concurrency limits. It is woken
// by the store after each commit and by its own timer for retries; it never
// polls. Memory holds one small record per pending delivery, up to
// Policy.MaxHeld per target, and a fixed number of goroutines, however many
// are pending.
type Worker struct {
	outbox  Outbox
	senders map[string]Sender
	pol     Policy
	log     *slog.Logger
	now     func() time.Time
	obs     Observer

	// breakers holds each target's circuit breaker (none: no breaker); the
	// map is fixed at construction, each breaker locks itself.
	breakers map[string]*breaker

	// Attempt records committed (or failed) since the scheduler last looked:
	// filled by the committer's callbacks, which must never block.
	recMu     sync.Mutex
	recorded  []result
	recNotify chan struct{}

	peakHeld atomic.Int64 // most deliveries of one target ever held (tests)
	// stopping is set when Run's context ends: an attempt that then ends
	// without an answer was cut off by our shutdown, not by the target.
	stopping atomic.Bool
}

// NewWorker builds a worker. senders maps target names to their clients.
func NewWorker(outbox Outbox, senders map[string]Sender, pol Policy, log *slog.Logger) *Worker {
	if pol.Concurrency < 1 {
		pol.Concurrency = 1
	}
	if pol.MaxAttempts < 1 {
		pol.MaxAttempts = 1
	}
	if pol.ShutdownGrace <= 0 {
		pol.ShutdownGrace = 10 * time.Second
	}
	if pol.MaxHeld <= 0 {
		pol.MaxHeld = 10000
	}
	w := &Worker{outbox: outbox, senders: senders, pol: pol, log: log, now: time.Now,
		obs: noObserver{}, recNotify: make(chan struct{}, 1), breakers: map[string]*breaker{}}
	for name, tp := range pol.Targets {
		if b := newBreaker(tp); b != nil {
			w.breakers[name] = b
		}
	}
	return w
}

// Observe sets who is told each attempt's result.
func (w *Worker) Observe(o Observer) { w.obs = o }

type laneKey struct{ target, order string }

type item struct {
	d        bridge.Delivery // Attempts cleared: memory stays small
	attempts int
	// shown is the delivery's next_attempt_at on disk, what the admin API
	// shows; showDelay moves it when a pause holds the delivery back.
	shown time.Time
}

type lane struct {
	key      laneKey
	queue    []*item
	running  bool // a job of this lane is being sent or recorded
	recorded bool // its sender is done; the record is being committed
	due      time.Time
	heapIdx  int // index in the waiting heap, -1 when not waiting
}

type job struct {
	lane *lane
	it   item
}

// result is what the scheduler learns about a job. A sender goroutine reports
// "sent" as soon as its attempt is handed to the store (its slot is free);
// the lane stays busy until the attempt's record is on disk ("recorded"), so
// the lane's next delivery never starts before the previous one is durably
// finished, and per-order order survives a crash.
type result struct {
	lane    *lane
	sent    bool // the sender goroutine is free; the record is pending
	outcome bridge.AttemptResult
	aborted bool // cancelled by shutdown: nothing recorded, stays pending
	refused bool // the store refused the claim: another sender has it, or an older one of its lane waits
	failed  bool // the outcome could not be recorded
}

// targetState is a target's limits, owned by the scheduler (its health is
// its breaker, updated by the attempts themselves).
type targetState struct {
	pol     TargetPolicy
	limiter *rate.Limiter // nil: unlimited
	breaker *breaker      // nil: none
	running int
	// shownUntil and shownAt: the pause last written to its held
	// deliveries' next_attempt_at, and when (see showDelay).
	shownUntil, shownAt time.Time
}

// scheduler is the worker's state, owned by the Run goroutine.
type scheduler struct {
	w       *Worker
	lanes   map[laneKey]*lane
	ready   map[string][]*lane // per target, FIFO
	targets []string           // round-robin order of targets with ready lanes
	rr      int
	waiting laneHeap
	running int
	state   map[string]*targetState
	cursor  string // every pending delivery up to here was read once
	// held counts each target's deliveries in memory. behind holds, for a
	// target that reached Policy.MaxHeld, the id up to which its deliveries
	// are held: the ones after it (up to cursor) wait on disk and are read
	// by catchUp, in id order, as held ones finish.
	held map[string]int
	// known holds the ids of the deliveries in memory: a store may return a
	// delivery again (after a refused claim the worker reads from the start).
	known map[string]bool
	// reload: read the store from the start at the next chance.
	reload bool
	// refused holds deliveries whose claim was refused, and until when they
	// wait once read again (so a refusal that persists never spins).
	refused map[string]time.Time
	behind  map[string]string
	// recording counts attempts handed to the store and not yet committed.
	recording int
	// blockedUntil is the earliest time a target paused by its rate limit or
	// circuit breaker can take a delivery again (zero: none paused).
	blockedUntil time.Time
}

func (s *scheduler) target(name string) *targetState {
	ts := s.state[name]
	if ts == nil {
		ts = &targetState{pol: s.w.pol.Targets[name], breaker: s.w.breakers[name]}
		if ts.pol.Rate > 0 {
			ts.limiter = rate.NewLimiter(rate.Limit(ts.pol.Rate), max(1, int(ts.pol.Rate)))
		}
		s.state[name] = ts
	}
	return ts
}

// admit says whether target t may start a delivery now. When it may not
// because of the clock (its breaker is open, its rate limit has no token
// yet), until says when it may and the scheduler's timer is set for it;
// until is zero when it waits for a delivery to finish.
func (s *scheduler) admit(t string, now time.Time) (ok bool, until time.Time) {
	ts := s.target(t)
	if limit := ts.pol.Concurrency; limit > 0 && ts.running >= limit {
		return false, time.Time{} // woken by a finishing delivery
	}
	switch st, openUntil := ts.breaker.state(now); st {
	case breakerOpen:
		s.blockAt(openUntil)
		return false, openUntil
	case breakerHalfOpen:
		if ts.running > 0 {
			return false, time.Time{} // one probe at a time: the others wait for its answer
		}
	}
	if ts.limiter != nil {
		r := ts.limiter.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			s.blockAt(now.Add(d))
			return false, now.Add(d)
		}
	}
	return true, time.Time{}
}

// showDelay writes, for the deliveries of target t that are due but held
// back by a pause until until (breaker open, rate limit), when they will
// really go as their next_attempt_at, so the admin API and the logs show the
// truth. After a breaker's cool-down they go once its probe answers; under a
// rate limit one after another at its pace. Only a move of a second or more
// is written, and each target's deliveries are looked at once per pause and
// at most once a second.
func (s *scheduler) showDelay(t string, until, now time.Time) {
	ts := s.target(t)
	if !until.After(ts.shownUntil.Add(time.Second)) && now.Sub(ts.shownAt) < time.Second {
		return
	}
	ts.shownUntil, ts.shownAt = until, now
	var step time.Duration
	reason := "circuit open"
	if st, _ := ts.breaker.state(now); st != breakerOpen {
		reason = "rate limit"
		if ts.pol.Rate > 0 {
			step = time.Duration(float64(time.Second) / ts.pol.Rate)
		}
	}
	moved := 0
	for i, l := range s.ready[t] {
		head := l.queue[0]
		at := until.Add(time.Duration(i) * step)
		shown := head.shown
		if shown.IsZero() || shown.Before(now) {
			shown = now
		}
		if at.Sub(shown) < time.Second {
			continue
		}
		head.shown = at
		moved++
		id := head.d.ID
		err := s.w.outbox.RecordAsync(context.Background(), id, bridge.AttemptResult{State: bridge.Pending, NextAttemptAt: at}, now, func(err error) {
			if err != nil && !errors.Is(err, bridge.ErrClosed) {
				s.w.log.Warn("record delayed retry time", "delivery_id", id, "err", err)
			}
		})
		if err != nil {
			break // the store is closing
		}
	}
	if moved > 0 {
		s.w.log.Info("deliveries delayed", "target", t, "reason", reason, "deliveries", moved, "retry_at", until)
	}
}

func (s *scheduler) blockAt(t time.Time) {
	if s.blockedUntil.IsZero() || t.Before(s.blockedUntil) {
		s.blockedUntil = t
	}
}

// Run sends deliveries until ctx is cancelled, then lets in-flight sends
// finish (up to Policy.ShutdownGrace; then they are cancelled and stay
// pending) and returns. It returns an error only if the store cannot be read
// at start.
func (w *Worker) Run(ctx context.Context) error {
	sendCtx, cancelSends := context.WithCancel(context.Background())
	defer cancelSends()
	jobs := make(chan job, w.pol.Concurrency)
	var wg sync.WaitGroup
	for range w.pol.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				w.attempt(sendCtx, j) // reports through pushRecorded, in order
			}
		}()
	}
	defer func() { close(jobs); wg.Wait() }()

	s := &scheduler{w: w, lanes: map[laneKey]*lane{}, ready: map[string][]*lane{}, state: map[string]*targetState{},
		held: map[string]int{}, behind: map[string]string{}, known: map[string]bool{},
		refused: map[string]time.Time{}}
	if err := s.load(); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var grace <-chan time.Time
	done := ctx.Done()
	for {
		if done != nil {
			s.dispatch(jobs)
		} else if s.running == 0 && s.recording == 0 {
			return nil
		}
		s.resetTimer(timer)
		select {
		case <-done:
			done = nil
			w.stopping.Store(true)
			if errors.Is(context.Cause(ctx), ErrNotSender) {
				cancelSends() // another replica sends now: stop at once
			} else {
				grace = time.After(w.pol.ShutdownGrace)
			}
		case <-grace:
			cancelSends()
		case <-w.outbox.Wake():
			if err := s.load(); err != nil {
				w.log.Error("read pending deliveries", "err", err)
			}
			if err := s.catchUp(); err != nil {
				w.log.Error("read pending deliveries", "err", err)
			}
		case <-timer.C:
			s.promote()
		case <-w.recNotify:
			for _, r := range w.takeRecorded() {
				s.finish(r)
			}
			if s.reload {
				s.reload = false
				if err := s.load(); err != nil {
					w.log.Error("read pending deliveries", "err", err)
				}
			}
			if err := s.catchUp(); err != nil {
				w.log.Error("read pending deliveries", "err", err)
			}
		}
	}
}

// pushRecorded queues a job's news for the scheduler (never blocks). Sender
// goroutines and the committer's callbacks both report here, so a job's
// "sent" always comes before its "recorded".
func (w *Worker) pushRecorded(r result) {
	w.recMu.Lock()
	w.recorded = append(w.recorded, r)
	w.recMu.Unlock()
	select {
	case w.recNotify <- struct{}{}:
	default:
	}
}

func (w *Worker) takeRecorded() []result {
	w.recMu.Lock()
	defer w.recMu.Unlock()
	out := w.recorded
	w.recorded = nil
	return out
}

// load reads deliveries committed since the last load. A target at
// Policy.MaxHeld, or already behind, is left behind: its deliveries stay on
// disk for catchUp, so each target's are still taken in commit order.
func (s *scheduler) load() error {
	for {
		batch, err := s.w.outbox.PendingAfter(context.Background(), s.cursor, 1000)
		if err != nil {
			return err
		}
		for i := range batch {
			d := batch[i]
			if _, late := s.behind[d.Target]; !late {
				if s.held[d.Target] < s.w.pol.MaxHeld {
					s.hold(d)
				} else {
					s.behind[d.Target] = s.cursor // all of its up to here are held
				}
			}
			s.cursor = d.ID
		}
		if len(batch) < 1000 {
			return nil
		}
	}
}

// catchUp reads, for each target left behind whose held deliveries fell to
// half of Policy.MaxHeld, the deliveries it left on disk, in id order, up to
// the cursor; a target that caught up is taken by load again.
func (s *scheduler) catchUp() error {
	for t, after := range s.behind {
		for s.held[t] <= s.w.pol.MaxHeld/2 {
			batch, err := s.w.outbox.PendingAfter(context.Background(), after, 1000)
			if err != nil {
				return err
			}
			caughtUp := len(batch) < 1000
			for i := range batch {
				d := batch[i]
				if d.ID > s.cursor { // not read by load yet: it will be, in order
					caughtUp = true
					break
				}
				if d.Target == t {
					if s.held[t] >= s.w.pol.MaxHeld {
						caughtUp = false
						break
					}
					s.hold(d)
				}
				after = d.ID
			}
			s.behind[t] = after
			if caughtUp {
				delete(s.behind, t)
				break
			}
		}
	}
	return nil
}

// refusedPause is how long a delivery whose claim was refused waits before
// it is tried again.
const refusedPause = time.Second

// dropHead forgets a lane's head.
func (s *scheduler) dropHead(l *lane) {
	delete(s.known, l.queue[0].d.ID)
	l.queue = l.queue[1:]
	s.held[l.key.target]--
}

// hold takes a delivery into memory.
func (s *scheduler) hold(d bridge.Delivery) {
	if s.known[d.ID] {
		return
	}
	s.known[d.ID] = true
	it := &item{d: d, attempts: len(d.Attempts), shown: d.NextAttemptAt}
	it.d.Attempts = nil
	if until, ok := s.refused[d.ID]; ok { // read again after a refused claim: not at once
		delete(s.refused, d.ID)
		if until.After(it.d.NextAttemptAt) {
			it.d.NextAttemptAt = until
		}
	}
	s.held[d.Target]++
	if n := int64(s.held[d.Target]); n > s.w.peakHeld.Load() {
		s.w.peakHeld.Store(n)
	}
	s.add(it)
}

// Lanes hold deliveries of several kinds: an (expertsender, order) lane has
// the order's upserts (kind order) and its status PUTs, an (order_system,
// order) lane its fetches and status write-backs. The rules:
//
//   - an order upsert goes ahead of every delivery of its lane not being
//     sent (one in flight finishes first): the order is registered before
//     any status of it is sent, and a status waiting to retry waits behind
//     it too;
//   - a newer upsert supersedes an older one still waiting; a newer status
//     (or fetch) supersedes an older one of its kind waiting to retry, as
//     before; a delivery never supersedes one of another kind.

// supersedes reports whether a newer delivery of by's kind replaces an older
// one of head's kind that waits (tickets never replace each other).
func supersedes(head, by *item) bool {
	k := head.d.KindOrStatus()
	return k == by.d.KindOrStatus() && k != bridge.KindTicket
}

func (s *scheduler) add(it *item) {
	k := laneKey{it.d.Target, it.d.OrderID}
	l := s.lanes[k]
	if l == nil {
		l = &lane{key: k, heapIdx: -1}
		s.lanes[k] = l
	}
	if it.d.KindOrStatus() == bridge.KindOrder && len(l.queue) > 0 {
		s.addUpsert(l, it)
		return
	}
	l.queue = append(l.queue, it)
	if l.running {
		return
	}
	if len(l.queue) == 1 {
		s.schedule(l)
		return
	}
	if l.heapIdx >= 0 && supersedes(l.queue[0], it) { // the head waits to retry: the newer one goes next
		heap.Remove(&s.waiting, l.heapIdx)
		s.supersede(l, 0, it)
		s.schedule(l)
	}
}

// addUpsert puts an order upsert ahead of its lane's deliveries that are not
// being sent, superseding the older upserts that wait.
func (s *scheduler) addUpsert(l *lane, it *item) {
	first := 0
	if l.running {
		first = 1 // in flight: it finishes first
	}
	for i := first; i < len(l.queue); {
		if l.queue[i].d.KindOrStatus() == bridge.KindOrder {
			if i == 0 && l.heapIdx >= 0 {
				heap.Remove(&s.waiting, l.heapIdx)
			}
			s.supersede(l, i, it)
			continue
		}
		i++
	}
	l.queue = slices.Insert(l.queue, first, it)
	if l.running {
		return
	}
	s.unschedule(l) // the head changed
	s.schedule(l)
}

// upsertFirst moves a waiting upsert ahead of a head of another kind that
// is not being sent (a status that got a retry while the upsert queued).
func (s *scheduler) upsertFirst(l *lane) {
	if l.running || len(l.queue) < 2 || l.queue[0].d.KindOrStatus() == bridge.KindOrder {
		return
	}
	for i := 1; i < len(l.queue); i++ {
		if l.queue[i].d.KindOrStatus() == bridge.KindOrder {
			it := l.queue[i]
			l.queue = slices.Insert(slices.Delete(l.queue, i, i+1), 0, it)
			return
		}
	}
}

// unschedule takes a lane out of the waiting heap or its target's ready
// queue (wherever it is).
func (s *scheduler) unschedule(l *lane) {
	if l.heapIdx >= 0 {
		heap.Remove(&s.waiting, l.heapIdx)
		return
	}
	t := l.key.target
	i := slices.Index(s.ready[t], l)
	if i < 0 {
		return
	}
	s.ready[t] = slices.Delete(s.ready[t], i, i+1)
	if len(s.ready[t]) > 0 {
		return
	}
	delete(s.ready, t)
	if j := slices.Index(s.targets, t); j >= 0 {
		s.targets = slices.Delete(s.targets, j, j+1)
		if j < s.rr {
			s.rr--
		}
	}
}

// nextOfKind returns the first item after the head that would supersede it.
func nextOfKind(l *lane) *item {
	for _, it := range l.queue[1:] {
		if supersedes(l.queue[0], it) {
			return it
		}
	}
	return nil
}

// supersede drops the lane's item at i, which waits, because a newer
// delivery (by) of its kind replaces it.
func (s *scheduler) supersede(l *lane, i int, by *item) {
	old := l.queue[i]
	reason := fmt.Sprintf("superseded by newer delivery %s while waiting to retry", by.d.ID)
	if old.attempts == 0 {
		reason = fmt.Sprintf("superseded by newer delivery %s before it was sent", by.d.ID)
	}
	if err := s.w.outbox.Record(context.Background(), old.d.ID, bridge.AttemptResult{State: bridge.Superseded, Reason: reason}, s.w.now()); err != nil {
		s.w.log.Error("record superseded delivery", "delivery_id", old.d.ID, "err", err)
	}
	s.w.obs.Attempt(old.d.Target, "superseded", 0)
	s.w.log.Info("delivery superseded", "delivery_id", old.d.ID, "event_id", old.d.EventID, "intake_id", old.d.IntakeID,
		"order_id", old.d.OrderID, "target", old.d.Target, "kind", old.d.KindOrStatus(), "by", by.d.ID)
	delete(s.known, old.d.ID)
	l.queue = slices.Delete(l.queue, i, i+1)
	s.held[l.key.target]--
}

// schedule makes a lane's head ready now or puts it in the waiting heap.
func (s *scheduler) schedule(l *lane) {
	head := l.queue[0]
	if head.d.NextAttemptAt.After(s.w.now()) {
		l.due = head.d.NextAttemptAt
		heap.Push(&s.waiting, l)
		return
	}
	t := l.key.target
	if len(s.ready[t]) == 0 {
		s.targets = append(s.targets, t)
	}
	s.ready[t] = append(s.ready[t], l)
}

// promote moves lanes whose retry time has come to the ready queues.
func (s *scheduler) promote() {
	now := s.w.now()
	for s.waiting.Len() > 0 && !s.waiting[0].due.After(now) {
		l := heap.Pop(&s.waiting).(*lane)
		l.queue[0].d.NextAttemptAt = time.Time{}
		s.schedule(l)
	}
}

func (s *scheduler) resetTimer(t *time.Timer) {
	next := s.blockedUntil
	if s.waiting.Len() > 0 && (next.IsZero() || s.waiting[0].due.Before(next)) {
		next = s.waiting[0].due
	}
	if next.IsZero() {
		t.Reset(time.Hour)
		return
	}
	t.Reset(max(time.Until(next), 0))
}

// dispatch starts ready lanes, round-robin over targets, within the limits.
func (s *scheduler) dispatch(jobs chan<- job) {
	now := s.w.now()
	s.blockedUntil = time.Time{}
	for s.running < s.w.pol.Concurrency && len(s.targets) > 0 {
		started := false
		for range len(s.targets) {
			s.rr %= len(s.targets)
			t := s.targets[s.rr]
			if ok, until := s.admit(t, now); !ok {
				if !until.IsZero() {
					s.showDelay(t, until, now)
				}
				s.rr++
				continue
			}
			l := s.ready[t][0]
			s.ready[t] = s.ready[t][1:]
			if len(s.ready[t]) == 0 {
				delete(s.ready, t)
				s.targets = append(s.targets[:s.rr], s.targets[s.rr+1:]...)
			} else {
				s.rr++
			}
			l.running = true
			s.running++
			s.target(t).running++
			jobs <- job{lane: l, it: *l.queue[0]}
			started = true
			break
		}
		if !started {
			return // every target with ready lanes is at its limit
		}
	}
}

func (s *scheduler) finish(r result) {
	l := r.lane
	head := l.queue[0]
	ts := s.target(l.key.target)
	switch {
	case r.sent: // the sender is free; the lane waits for the record
		s.running--
		ts.running--
		l.recorded = true
		s.recording++
		return
	case l.recorded: // the record of a sent attempt is committed (or failed)
		l.recorded = false
		s.recording--
	default: // the job ended without a record (shutdown, or a store read failed)
		s.running--
		ts.running--
	}
	l.running = false
	switch {
	case r.aborted:
		return // shutting down: the delivery stays pending on disk
	case r.refused:
		// Not ours to send now: forget it; it is read again, in lane order,
		// from the store.
		s.refused[head.d.ID] = s.w.now().Add(refusedPause)
		s.dropHead(l)
		s.cursor, s.reload = "", true
	case r.failed || !r.outcome.State.Terminal():
		head.attempts++
		if r.failed {
			head.attempts-- // nothing was recorded; try the same attempt again
		}
		head.d.NextAttemptAt = r.outcome.NextAttemptAt
		if !r.failed {
			head.shown = r.outcome.NextAttemptAt
		}
		if by := nextOfKind(l); by != nil {
			s.supersede(l, 0, by)
		}
	default:
		s.dropHead(l)
	}
	if len(l.queue) == 0 {
		delete(s.lanes, l.key)
		return
	}
	s.upsertFirst(l)
	s.schedule(l)
}

// health tells the target's breaker an attempt's outcome (as soon as it is
// known: the scheduler must not admit the next probe on stale health) and
// returns until when the target is paused (zero: it is not).
func (w *Worker) health(target string, retryable bool, now time.Time) time.Time {
	b := w.breakers[target]
	until, opened, closed := b.observe(retryable, now)
	co, _ := w.obs.(circuitObserver)
	switch {
	case !until.IsZero():
		w.log.Warn("circuit open: target paused", "target", target, "failures", b.failureCount(), "until", until)
		if opened && co != nil {
			co.SetCircuitOpen(target, true)
		}
	case closed:
		w.log.Info("circuit closed", "target", target)
		if co != nil {
			co.SetCircuitOpen(target, false)
		}
	}
	return until
}

// attemptLog writes a delivery attempt's lines with its ids. Unlike
// slog.Logger.With it formats nothing unless a line is written: With
// pre-formats its attributes (masking included) at once, which cost ~6% of
// the server's CPU at delivery saturation with info lines switched off.
type attemptLog struct {
	l   *slog.Logger
	ids []any
}

func (a attemptLog) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	a.l.Log(ctx, level, msg, append(a.ids[:len(a.ids):len(a.ids)], args...)...)
}

func (a attemptLog) Info(msg string, args ...any)  { a.log(slog.LevelInfo, msg, args...) }
func (a attemptLog) Warn(msg string, args ...any)  { a.log(slog.LevelWarn, msg, args...) }
func (a attemptLog) Error(msg string, args ...any) { a.log(slog.LevelError, msg, args...) }

// attempt sends one delivery, records the attempt and logs it; it reports
// to the scheduler through pushRecorded.
func (w *Worker) attempt(ctx context.Context, j job) {
	d, n := j.it.d, j.it.attempts+1
	kind := d.KindOrStatus()
	src, srcID := "event_id", d.EventID
	if d.IntakeID != "" {
		src, srcID = "intake_id", d.IntakeID
	}
	log := attemptLog{l: w.log, ids: []any{"delivery_id", d.ID, src, srcID, "order_id", d.OrderID,
		"target", d.Target, "kind", kind, "attempt", n}}
	sender := w.senders[SenderKey(d.Target, kind)]
	unknownCut := false
	if u, ok := sender.(UnknownWhenCut); ok {
		unknownCut = u.OutcomeUnknownWhenCut()
	}
	// A request that cannot be repeated safely is claimed durably: the
	// claim is on disk before the request goes out (for a late claimer,
	// right before, through Message.Sending).
	_, durable := sender.(UnknownWhenCut)
	_, late := sender.(lateClaimer)
	if err := w.outbox.Claim(ctx, &d, durable && !late); err != nil {
		if !errors.Is(err, bridge.ErrClaimRefused) {
			log.Error("claim delivery; will try again", "err", err)
		}
		w.pushRecorded(result{lane: j.lane, refused: true})
		return
	}
	now := w.now()
	if sender == nil {
		o := bridge.AttemptResult{State: bridge.Skipped, Reason: fmt.Sprintf("target %q is not configured any more", d.Target)}
		log.Warn("delivery skipped", "reason", o.Reason)
		w.record(log, j, o, now)
		return
	}
	msg, err := w.message(&d, sender)
	if err != nil {
		o := bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: " + err.Error(),
			Attempt: &bridge.Attempt{At: now.UTC(), Error: err.Error()}}
		log.Error("delivery attempt", "state", o.State, "err", err)
		w.record(log, j, o, now)
		return
	}
	if msg.Order != nil {
		phone, email := maskedContact(msg.Order)
		log.ids = append(log.ids, "phone", phone, "email", email)
	}
	if late {
		claimed := d
		msg.Sending = func(ctx context.Context) error {
			if err := w.outbox.Claim(ctx, &claimed, true); err != nil {
				return &Error{Msg: "claim before sending: " + err.Error()}
			}
			return nil
		}
	}
	rep, _ := sender.(outcomeReporter)
	if d.Claimed && unknownCut {
		// A claim left by a process that is gone: the request may have
		// gone out. Sending it again could make a second one.
		reason := "a claim of this delivery was left by a process that stopped while sending it: its outcome is unknown; check the target before retrying"
		if rep != nil {
			reason = rep.unknownReason(msg)
		}
		o := bridge.AttemptResult{State: bridge.Dead, Reason: reason, Result: bridge.ResultOutcomeUnknown}
		log.Error("delivery not sent again: it was being sent when the process stopped; outcome unknown", "state", o.State, "reason", reason)
		w.record(log, j, o, now)
		return
	}
	var onceKey string
	if once, ok := sender.(OnceSender); ok && !d.Force {
		onceKey = once.OnceKey(msg)
		done, err := w.outbox.Triggered(ctx, onceKey)
		if err != nil {
			log.Error("read no-repeat key; will try again", "err", err)
			w.pushRecorded(result{lane: j.lane, failed: true, outcome: bridge.AttemptResult{State: bridge.Pending, NextAttemptAt: now.Add(time.Second)}})
			return
		}
		if done {
			o := bridge.AttemptResult{State: bridge.Done, Result: ResultAlreadyTriggered}
			log.Info("delivery not sent: already triggered for this order, status and workflow", "state", o.State)
			w.record(log, j, o, now)
			return
		}
	} else if ok {
		onceKey = once.OnceKey(msg) // forced: send, and still record the key
	}
	start := now
	resp, err := sender.Send(ctx, msg)
	dur := time.Since(start)
	if err != nil && w.cutByShutdown(ctx, err) {
		if unknownCut && (rep == nil || rep.sent(err)) {
			reason, result := "cut off by shutdown after the request was sent: its outcome is unknown; check the target before retrying", ""
			if rep != nil {
				reason, result = rep.unknownReason(msg), bridge.ResultOutcomeUnknown
			}
			o := bridge.AttemptResult{State: bridge.Dead, Reason: reason, Result: result,
				Attempt: &bridge.Attempt{At: start.UTC(), Duration: dur, Error: "cut off by shutdown: " + err.Error(), Request: resp.Request}}
			log.Error("delivery attempt cut off by shutdown; outcome unknown", "state", o.State, "duration", dur)
			w.record(log, j, o, now)
			return
		}
		log.Warn("delivery attempt cut off by shutdown; it stays pending and the attempt does not count", "duration", dur)
		if err := w.outbox.Release(context.Background(), d.ID); err != nil {
			log.Error("release claim", "err", err)
		}
		w.pushRecorded(result{lane: j.lane, aborted: true})
		return
	}
	a := &bridge.Attempt{At: start.UTC(), StatusCode: resp.StatusCode, Duration: dur, Excerpt: resp.Excerpt, Request: resp.Request}
	o := bridge.AttemptResult{Attempt: a}
	var oe *Error
	var ue *UnknownOutcomeError
	if errors.As(err, &ue) && !unknownCut {
		// resend_unknown: the user prefers at-least-once; retry it.
		err = &Error{StatusCode: ue.StatusCode, Msg: ue.Error()}
	}
	switch {
	case err != nil && ue != nil && unknownCut:
		a.Error, a.StatusCode = ue.Error(), max(a.StatusCode, ue.StatusCode)
		o.State, o.Result, o.Reason = bridge.Dead, bridge.ResultOutcomeUnknown, ue.Error()
		if rep != nil {
			o.Reason = rep.unknownReason(msg)
		}
	case err == nil:
		o.State, o.Result, o.OnceKey = bridge.Done, resp.Result, onceKey
	case !errors.As(err, &oe):
		oe = &Error{Msg: err.Error()}
		fallthrough
	default:
		a.Error = oe.Msg
		if a.StatusCode == 0 {
			a.StatusCode = oe.StatusCode
		}
		switch {
		case oe.Permanent:
			o.State, o.Reason = bridge.Dead, "permanent failure: "+oe.Msg
		case n >= w.pol.MaxAttempts:
			o.State, o.Reason = bridge.Dead, fmt.Sprintf("gave up after %d attempts: %s", n, oe.Msg)
		default:
			wait := max(w.pol.Backoff(n, rand.Float64()), oe.RetryAfter)
			o.State, o.NextAttemptAt = bridge.Pending, w.now().Add(wait)
		}
	}
	// The breaker learns the outcome before the sender reports itself free;
	// a retry never goes before the pause it causes or falls into ends.
	if paused := w.health(d.Target, oe != nil && !oe.Permanent, w.now()); o.State == bridge.Pending && paused.After(o.NextAttemptAt) {
		o.NextAttemptAt = paused
	}
	attrs := []any{"status_code", a.StatusCode, "duration", dur, "state", o.State}
	switch {
	case o.State == bridge.Done:
		if o.Result != "" {
			attrs = append(attrs, "result", o.Result)
		}
		log.Info("delivery attempt", attrs...)
	case o.State == bridge.Dead:
		log.Error("delivery attempt", append(attrs, "err", a.Error, "reason", o.Reason)...)
	default:
		log.Warn("delivery attempt", append(attrs, "err", a.Error, "retry_at", o.NextAttemptAt)...)
	}
	if o.State == bridge.Done && resp.Done != nil {
		w.recordWith(log, j, o, *resp.Done, now)
		return
	}
	w.record(log, j, o, now)
}

// recordWith records a done attempt with what it made (a ticket, a fetched
// order) in one transaction, off the sender goroutine. The request went out
// and succeeded: it must not be sent again, so a record that fails is tried
// again (for up to recordWithPatience) rather than the send; if the store
// never takes it the lane stops here, and at the next start a durable claim
// left on disk ends the delivery dead for a person to check.
func (w *Worker) recordWith(log attemptLog, j job, o bridge.AttemptResult, out bridge.Outcome, now time.Time) {
	w.obs.Attempt(j.it.d.Target, "done", o.Attempt.Duration)
	w.pushRecorded(result{lane: j.lane, sent: true})
	go func() {
		wait, deadline := 50*time.Millisecond, time.Now().Add(recordWithPatience)
		for {
			res, err := bridge.RecordWith(context.Background(), w.outbox, j.it.d.ID, o, out, now)
			if err == nil {
				if res != nil {
					log.Info("fetched order taken in", "fetched_intake_id", res.IntakeID, "state", res.State, "duplicate", res.Duplicate,
						"deliveries", len(res.Deliveries))
				}
				w.pushRecorded(result{lane: j.lane, outcome: o})
				return
			}
			if errors.Is(err, bridge.ErrClosed) || time.Now().After(deadline) {
				log.Error("record delivery done failed; it is not sent again by this process", "err", err)
				w.pushRecorded(result{lane: j.lane, aborted: true})
				return
			}
			log.Error("record delivery done; trying the record again", "err", err)
			time.Sleep(wait) // a backoff between retries of a failing commit, not a synchronisation
			wait = min(2*wait, 5*time.Second)
		}
	}()
}

// recordWithPatience bounds how long recordWith retries a failing record.
const recordWithPatience = 30 * time.Second

// cutByShutdown reports whether a failed send was cut off by our own
// shutdown: cancelled when the grace period ran out, or ended without any
// answer from the target (a timeout or network error) once shutdown began.
// Such an attempt is not the target's fault and does not count.
func (w *Worker) cutByShutdown(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	var oe *Error
	return w.stopping.Load() && errors.As(err, &oe) && !oe.Permanent && oe.StatusCode == 0
}

// eventless is implemented by senders that use only the delivery itself: the
// worker then does not read and decode the event's payload for them.
type eventless interface{ eventless() }

// message builds what a sender needs, reading the event's stored payload
// unless the sender does not use it.
func (w *Worker) message(d *bridge.Delivery, sender Sender) (*Message, error) {
	if _, ok := sender.(eventless); ok {
		return &Message{Delivery: d}, nil
	}
	if k := d.KindOrStatus(); k == bridge.KindOrder || k == bridge.KindTicket {
		return w.intakeMessage(d)
	}
	ev, raw, err := w.outbox.GetEvent(context.Background(), d.EventID)
	if err != nil {
		return nil, fmt.Errorf("read event %s: %w", d.EventID, err)
	}
	m := &Message{Delivery: d}
	if n := len(ev.Decisions); n > 0 {
		m.StatusName, m.ChangedAt = ev.Decisions[n-1].StatusName, ev.Decisions[n-1].ChangedAtText
	}
	m.Event, _ = digishare.Decode(raw) // stored events decoded once already; a shape error keeps the partial event
	return m, nil
}

// intakeMessage reads, in one read transaction, the order an order or
// ticket delivery sends (a ticket: the order's latest content, so a ticket
// still to be made shows the newest document), the order's intake record
// and the newest status decided for ExpertSender.
func (w *Worker) intakeMessage(d *bridge.Delivery) (*Message, error) {
	m := &Message{Delivery: d}
	var raw []byte
	err := w.outbox.View(context.Background(), func(tx bridge.Tx) error {
		rec, err := tx.OrderIntake(d.OrderID)
		if err != nil {
			return err
		}
		id := d.IntakeID
		if d.KindOrStatus() == bridge.KindTicket && rec.LatestIntakeID != "" {
			id = rec.LatestIntakeID
		}
		if raw, err = tx.IntakeRaw(id); err != nil {
			return fmt.Errorf("read intake %s: %w", id, err)
		}
		st, err := tx.OrderState(d.OrderID)
		if err != nil {
			return err
		}
		m.OrderIntake, m.ExpertSenderStatus = rec, st.Targets[bridge.TargetExpertSender].Status
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the order's intake: %w", err)
	}
	if m.Order, err = orders.Decode(raw); err != nil {
		return nil, fmt.Errorf("decode the stored order: %w", err)
	}
	orderID := d.OrderID
	m.RecordMedia = func(ctx context.Context, mediaID string) error {
		return bridge.RecordMediaID(ctx, w.outbox, orderID, mediaID)
	}
	return m, nil
}

// record hands the outcome to the store without waiting for the commit: the
// sender goroutine is free at once ("sent", reported first); the scheduler
// moves the lane when the commit is on disk ("recorded").
func (w *Worker) record(log attemptLog, j job, o bridge.AttemptResult, now time.Time) {
	label := map[bridge.DeliveryState]string{bridge.Done: "done", bridge.Pending: "retry", bridge.Dead: "dead", bridge.Skipped: "skipped"}[o.State]
	var dur time.Duration
	if o.Attempt != nil {
		dur = o.Attempt.Duration
	}
	w.obs.Attempt(j.it.d.Target, label, dur)
	_, once := w.senders[SenderKey(j.it.d.Target, j.it.d.KindOrStatus())].(UnknownWhenCut)
	failed := func(err error) result {
		if once && o.Attempt != nil {
			// A request that must not be repeated blindly was sent: do not
			// send it again; its durable claim stays on disk, and the next
			// start ends it dead with an unknown outcome.
			log.Error("record delivery attempt failed; not sent again by this process", "err", err)
			return result{lane: j.lane, aborted: true}
		}
		log.Error("record delivery attempt; will try again", "err", err)
		wait := max(w.pol.Initial, time.Second)
		return result{lane: j.lane, failed: true, outcome: bridge.AttemptResult{State: bridge.Pending, NextAttemptAt: now.Add(wait)}}
	}
	w.pushRecorded(result{lane: j.lane, sent: true})
	err := w.outbox.RecordAsync(context.Background(), j.it.d.ID, o, now, func(err error) {
		if err != nil {
			w.pushRecorded(failed(err))
			return
		}
		w.pushRecorded(result{lane: j.lane, outcome: o})
	})
	if err != nil {
		w.pushRecorded(failed(err))
	}
}

// laneHeap orders waiting lanes by due time.
type laneHeap []*lane

func (h laneHeap) Len() int           { return len(h) }
func (h laneHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h laneHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *laneHeap) Push(x any) {
	l := x.(*lane)
	l.heapIdx = len(*h)
	*h = append(*h, l)
}
func (h *laneHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	l.heapIdx = -1
	*h = old[:len(old)-1]
	return l
}
