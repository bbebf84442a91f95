package outbound

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
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

// Outbox is what the worker needs from the store: the backend's outbox
// (claims included) and the events its deliveries came from.
type Outbox interface {
	bridge.Outbox
	GetEvent(ctx context.Context, id string) (*bridge.Event, []byte, error)
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

	// Attempt records committed (or failed) since the scheduler last looked:
	// filled by the committer's callbacks, which must never block.
	recMu     sync.Mutex
	recorded  []result
	recNotify chan struct{}

	peakHeld atomic.Int64 // most deliveries of one target ever held (tests)
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
	return &Worker{outbox: outbox, senders: senders, pol: pol, log: log, now: time.Now,
		obs: noObserver{}, recNotify: make(chan struct{}, 1)}
}

// Observe sets who is told each attempt's result.
func (w *Worker) Observe(o Observer) { w.obs = o }

type laneKey struct{ target, order string }

type item struct {
	d        bridge.Delivery // Attempts cleared: memory stays small
	attempts int
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
	lane      *lane
	it        item
	retryable bool // set by attempt: carried to the recorded result
}

// result is what the scheduler learns about a job. A sender goroutine reports
// "sent" as soon as its attempt is handed to the store (its slot is free);
// the lane stays busy until the attempt's record is on disk ("recorded"), so
// the lane's next delivery never starts before the previous one is durably
// finished, and per-order order survives a crash.
type result struct {
	lane      *lane
	sent      bool // the sender goroutine is free; the record is pending
	outcome   bridge.AttemptResult
	aborted   bool // cancelled by shutdown: nothing recorded, stays pending
	refused   bool // the store refused the claim: another sender has it, or an older one of its lane waits
	failed    bool // the outcome could not be recorded
	retryable bool // the attempt failed in a way that says the target is unwell
}

// targetState is a target's limits and health, owned by the scheduler.
type targetState struct {
	pol       TargetPolicy
	limiter   *rate.Limiter // nil: unlimited
	running   int
	failures  int // consecutive retryable failures
	openUntil time.Time
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
		ts = &targetState{pol: s.w.pol.Targets[name]}
		if ts.pol.Rate > 0 {
			ts.limiter = rate.NewLimiter(rate.Limit(ts.pol.Rate), max(1, int(ts.pol.Rate)))
		}
		s.state[name] = ts
	}
	return ts
}

// admit says whether target t may start a delivery now; when not, it notes
// when it may.
func (s *scheduler) admit(t string, now time.Time) bool {
	ts := s.target(t)
	if limit := ts.pol.Concurrency; limit > 0 && ts.running >= limit {
		return false // woken by a finishing delivery
	}
	if ts.pol.BreakerFailures > 0 && ts.failures >= ts.pol.BreakerFailures {
		if now.Before(ts.openUntil) {
			s.blockAt(ts.openUntil)
			return false
		}
		if ts.running > 0 {
			return false // half-open: one probe at a time
		}
	}
	if ts.limiter != nil {
		r := ts.limiter.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			s.blockAt(now.Add(d))
			return false
		}
	}
	return true
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
	it := &item{d: d, attempts: len(d.Attempts)}
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

func (s *scheduler) add(it *item) {
	k := laneKey{it.d.Target, it.d.OrderID}
	l := s.lanes[k]
	if l == nil {
		l = &lane{key: k, heapIdx: -1}
		s.lanes[k] = l
	}
	l.queue = append(l.queue, it)
	if l.running {
		return
	}
	if len(l.queue) == 1 {
		s.schedule(l)
		return
	}
	if l.heapIdx >= 0 { // the head waits to retry: the newer one goes next
		heap.Remove(&s.waiting, l.heapIdx)
		s.supersedeHead(l)
		s.schedule(l)
	}
}

// supersedeHead drops a head that waits to retry because a newer delivery
// for the same order and target is queued behind it.
func (s *scheduler) supersedeHead(l *lane) {
	head, next := l.queue[0], l.queue[1]
	reason := fmt.Sprintf("superseded by newer delivery %s while waiting to retry", next.d.ID)
	if err := s.w.outbox.Record(context.Background(), head.d.ID, bridge.AttemptResult{State: bridge.Superseded, Reason: reason}, s.w.now()); err != nil {
		s.w.log.Error("record superseded delivery", "delivery_id", head.d.ID, "err", err)
	}
	s.w.obs.Attempt(head.d.Target, "superseded", 0)
	s.w.log.Info("delivery superseded", "delivery_id", head.d.ID, "event_id", head.d.EventID,
		"order_id", head.d.OrderID, "target", head.d.Target, "by", next.d.ID)
	s.dropHead(l)
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
			if !s.admit(t, now) {
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
	s.health(l.key.target, ts, r)
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
		if len(l.queue) > 1 {
			s.supersedeHead(l)
		}
	default:
		s.dropHead(l)
	}
	if len(l.queue) == 0 {
		delete(s.lanes, l.key)
		return
	}
	s.schedule(l)
}

// health updates a target's circuit breaker from an attempt's result.
func (s *scheduler) health(name string, ts *targetState, r result) {
	if r.aborted || r.failed || r.refused || ts.pol.BreakerFailures == 0 {
		return
	}
	if !r.retryable {
		if ts.failures >= ts.pol.BreakerFailures {
			s.w.log.Info("circuit closed", "target", name)
		}
		ts.failures = 0
		return
	}
	ts.failures++
	if ts.failures >= ts.pol.BreakerFailures {
		ts.openUntil = s.w.now().Add(ts.pol.BreakerCooldown)
		s.w.log.Warn("circuit open: target paused", "target", name, "failures", ts.failures,
			"until", ts.openUntil)
	}
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
	log := attemptLog{l: w.log, ids: []any{"delivery_id", d.ID, "event_id", d.EventID, "order_id", d.OrderID,
		"target", d.Target, "attempt", n}}
	sender := w.senders[d.Target]
	if err := w.outbox.Claim(ctx, &d, false); err != nil {
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
	if err != nil && ctx.Err() != nil {
		log.Warn("delivery attempt cancelled by shutdown; it stays pending")
		if err := w.outbox.Release(context.Background(), d.ID); err != nil {
			log.Error("release claim", "err", err)
		}
		w.pushRecorded(result{lane: j.lane, aborted: true})
		return
	}
	a := &bridge.Attempt{At: start.UTC(), StatusCode: resp.StatusCode, Duration: dur, Excerpt: resp.Excerpt}
	o := bridge.AttemptResult{Attempt: a}
	retryable := false
	var oe *Error
	switch {
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
		retryable = !oe.Permanent
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
	j.retryable = retryable
	w.record(log, j, o, now)
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
	failed := func(err error) result {
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
		w.pushRecorded(result{lane: j.lane, outcome: o, retryable: j.retryable})
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
