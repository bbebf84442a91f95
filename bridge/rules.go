package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/statusbridge/statusbridge/digishare"
)

// Ingest deduplicates, decides and stores one webhook call — the event, its
// payload, its dedup key, the order's new state and the deliveries it causes —
// in one transaction, and returns only after that transaction is committed.
// In every error case nothing was stored: ErrOverloaded when the store's
// queue is full, ErrClosed during shutdown, ErrUnavailable when the
// database cannot be reached, else a wrapped storage error.
func Ingest(ctx context.Context, b Backend, in Incoming, dec Decider) (IngestResult, error) {
	var res IngestResult
	stored := b.StoredPayload(in.Raw) // outside the transaction
	key := DedupKeyOf(in.Update)
	id, err := NewID()
	if err != nil {
		return res, err
	}
	err = b.Update(ctx, UpdateOptions{Refusable: true, Wake: true}, func(tx Tx) error {
		res = IngestResult{}
		return ingestTx(tx, id, key, in, stored, dec, &res)
	})
	if err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

func ingestTx(tx Tx, id string, key DedupKey, in Incoming, stored []byte, dec Decider, res *IngestResult) error {
	dkey, first, err := tx.ClaimDedup(key, id)
	if err != nil {
		return fmt.Errorf("store: claim dedup key for %s: %w", id, err)
	}
	if first != "" {
		res.EventID, res.Duplicate = first, true
		ev, err := tx.Event(first)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if ev != nil {
			res.State = ev.State
		}
		return nil
	}
	ev := &Event{
		ID:         id,
		ReceivedAt: in.ReceivedAt.UTC(),
		Name:       in.Update.Name,
		TicketID:   in.Update.TicketID,
		DedupKey:   dkey,
	}
	if in.Invalid != "" {
		ev.State, ev.Error = EventInvalid, in.Invalid
	} else {
		d, created, err := decide(tx, ev, in.Update, dec, DecideOptions{}, in.ReceivedAt)
		if err != nil {
			return err
		}
		res.Decision, res.Deliveries = &d, created
	}
	if err := tx.PutEvent(ev, stored); err != nil {
		return fmt.Errorf("store: put event %s: %w", ev.ID, err)
	}
	res.EventID, res.State = ev.ID, ev.State
	return nil
}

// decide decides u under dec with the order's current state (locked until
// the transaction ends), records the decision on ev, creates its deliveries
// and advances the order's state.
func decide(tx Tx, ev *Event, u *digishare.Update, dec Decider, opt DecideOptions, now time.Time) (Decision, []Delivery, error) {
	orderID, _ := dec.OrderID(u)
	st, err := lockOrder(tx, orderID)
	if err != nil {
		return Decision{}, nil, err
	}
	d := dec.Decide(u, st, opt)
	created, err := apply(tx, ev, st, d, opt.Force, now)
	return d, created, err
}

func lockOrder(tx Tx, orderID string) (OrderState, error) {
	if orderID == "" {
		return OrderState{}, nil
	}
	st, err := tx.LockOrder(orderID)
	if err != nil {
		return st, fmt.Errorf("store: read order %s: %w", orderID, err)
	}
	return st, nil
}

// apply records decision d on ev, creates its deliveries and advances the
// order's state.
func apply(tx Tx, ev *Event, st OrderState, d Decision, force bool, now time.Time) ([]Delivery, error) {
	ev.State, ev.OrderID = d.Outcome, d.OrderID
	ev.Decisions = append(ev.Decisions, d)
	if d.Outcome != EventDispatched && d.Outcome != EventUnchanged {
		return nil, nil
	}
	var created []Delivery
	if d.Outcome == EventDispatched {
		if st.Targets == nil {
			st.Targets = map[string]TargetState{}
		}
		for _, p := range d.Deliveries {
			id, err := NewID()
			if err != nil {
				return nil, err
			}
			del := Delivery{
				ID: id, EventID: ev.ID, OrderID: d.OrderID, Target: p.Target, Kind: KindStatus,
				Status: p.Status, StatusID: d.StatusID, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
				State: Pending, Force: force,
			}
			if del.RetryOf, err = deadDeliveryOf(tx, ev, p.Target); err != nil { // a replay of a dead delivery
				return nil, err
			}
			if p.Skip != "" {
				del.State, del.Reason = Skipped, p.Skip
			}
			if err := tx.PutDelivery(&del); err != nil {
				return nil, fmt.Errorf("store: put delivery %s: %w", del.ID, err)
			}
			st.Targets[p.Target] = TargetState{Status: p.Status, DeliveryID: del.ID}
			ev.DeliveryIDs = append(ev.DeliveryIDs, del.ID)
			created = append(created, del)
		}
	}
	st = Advance(st, d)
	if err := tx.PutOrder(d.OrderID, st); err != nil {
		return nil, fmt.Errorf("store: put order %s: %w", d.OrderID, err)
	}
	return created, nil
}

const replayChunk = 200

// Replay re-decides the selected events, oldest first, under dec (the
// mapping in force). Each replay appends a decision to its event; the
// original is kept. Superseded and unchanged still hold unless forced.
func Replay(ctx context.Context, b Backend, sel ReplaySelector, dec Decider, opt ReplayOptions, now time.Time) (ReplaySummary, error) {
	if sel.Empty() {
		return ReplaySummary{}, ErrNoSelector
	}
	ids, missing, err := selectEvents(ctx, b, sel, opt.Targets)
	if err != nil {
		return ReplaySummary{}, err
	}
	sum := ReplaySummary{Matched: len(ids) + len(missing), Failed: len(missing), DryRun: opt.DryRun, Requests: []ReplayedDelivery{}}
	for _, id := range missing {
		sum.Errors = append(sum.Errors, fmt.Sprintf("event %s: not found", id))
	}
	if err := redecide(ctx, b, ids, dec, DecideOptions{Force: opt.Force, Targets: opt.Targets}, opt, now, &sum); err != nil {
		return sum, err
	}
	if sel.Dead {
		return sum, retryDeadIntakeDeliveries(ctx, b, opt, now, &sum)
	}
	return sum, nil
}

// retryDeadIntakeDeliveries queues again the dead deliveries that came from
// intakes (order, ticket, fetch: they have no event to re-decide), of
// opt.Targets when set, oldest first. A ticket whose outcome is unknown is
// left out and counted unless opt.IncludeUnknown; one the 409 rule refuses
// (a newer delivery of its kind, a ticket already made) is counted skipped.
func retryDeadIntakeDeliveries(ctx context.Context, b Backend, opt ReplayOptions, now time.Time, sum *ReplaySummary) error {
	var dead []Delivery
	err := EachDelivery(ctx, b, DeliveryFilter{State: string(Dead)}, func(d *Delivery) {
		if d.KindOrStatus() != KindStatus && (len(opt.Targets) == 0 || slices.Contains(opt.Targets, d.Target)) {
			dead = append(dead, *d)
		}
	})
	if err != nil {
		return fmt.Errorf("store: replay: %w", err)
	}
	slices.Reverse(dead) // listed newest first
	for i := range dead {
		d := &dead[i]
		if d.UnknownOutcome() && !opt.IncludeUnknown {
			sum.LeftOutUnknown++
			continue
		}
		if opt.DryRun {
			sum.Retried++
			sum.Requests = append(sum.Requests, ReplayedDelivery{OrderID: d.OrderID, Target: d.Target, Kind: d.Kind})
			continue
		}
		nd, err := RetryDelivery(ctx, b, d.ID, now)
		var ce *ConflictError
		switch {
		case errors.As(err, &ce):
			sum.Skipped++
			sum.Errors = append(sum.Errors, fmt.Sprintf("delivery %s not retried: %s", d.ID, ce.Msg))
		case err != nil:
			sum.Failed++
			sum.Errors = append(sum.Errors, fmt.Sprintf("delivery %s: %v", d.ID, err))
		default:
			sum.Retried++
			sum.Requests = append(sum.Requests, ReplayedDelivery{OrderID: nd.OrderID, Target: nd.Target, Kind: nd.Kind})
		}
	}
	return nil
}

// RedecideUnmapped decides again, under dec, the events held as unmapped
// whose status id is in statusIDs (after a mapping reload gave them an
// entry), oldest first. An event is re-decided under its own lock: one that
// another process decided meanwhile is left as it is, so a deployment
// re-decides each event once however many replicas reload.
func RedecideUnmapped(ctx context.Context, b Backend, statusIDs []string, dec Decider, now time.Time) (ReplaySummary, error) {
	var ids []string
	err := EachEvent(ctx, b, EventFilter{State: string(EventUnmapped)}, func(ev *Event) {
		if len(ev.Decisions) > 0 && slices.Contains(statusIDs, ev.Decisions[len(ev.Decisions)-1].StatusID) {
			ids = append(ids, ev.ID)
		}
	})
	if err != nil {
		return ReplaySummary{}, err
	}
	slices.Reverse(ids)
	sum := ReplaySummary{Matched: len(ids), Requests: []ReplayedDelivery{}}
	return sum, redecide(ctx, b, ids, dec, DecideOptions{}, ReplayOptions{onlyUnmapped: true}, now, &sum)
}

// EachEvent calls fn for every event matching f, newest first, one page at
// a time.
func EachEvent(ctx context.Context, b Backend, f EventFilter, fn func(ev *Event)) error {
	f.Limit = 1000
	return eachPage(func(cursor string) ([]Event, string, error) {
		f.Cursor = cursor
		return b.ListEvents(ctx, f)
	}, fn)
}

// EachDelivery is EachEvent for deliveries.
func EachDelivery(ctx context.Context, b Backend, f DeliveryFilter, fn func(d *Delivery)) error {
	f.Limit = 1000
	return eachPage(func(cursor string) ([]Delivery, string, error) {
		f.Cursor = cursor
		return b.ListDeliveries(ctx, f)
	}, fn)
}

// eachPage calls fn for every item of a listing, page after page from its
// start.
func eachPage[T any](list func(cursor string) ([]T, string, error), fn func(*T)) error {
	cursor := ""
	for {
		items, next, err := list(cursor)
		if err != nil {
			return err
		}
		for i := range items {
			fn(&items[i])
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// selectEvents returns the ids to replay, oldest first, and the requested
// ids that do not exist.
func selectEvents(ctx context.Context, b Backend, sel ReplaySelector, targets []string) (ids, missing []string, err error) {
	switch {
	case len(sel.EventIDs) > 0:
		for _, id := range sel.EventIDs {
			if _, _, err := b.GetEvent(ctx, id); errors.Is(err, ErrNotFound) {
				missing = append(missing, id)
			} else if err != nil {
				return nil, nil, err
			} else if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids) // time-ordered ids: oldest first
		return ids, missing, nil
	case sel.Dead:
		seen := map[string]bool{}
		err := EachDelivery(ctx, b, DeliveryFilter{State: string(Dead)}, func(d *Delivery) {
			if d.KindOrStatus() == KindStatus && d.EventID != "" &&
				(len(targets) == 0 || slices.Contains(targets, d.Target)) && !seen[d.EventID] {
				seen[d.EventID] = true
				ids = append(ids, d.EventID)
			}
		})
		slices.Sort(ids) // time-ordered ids: oldest first
		return ids, nil, err
	}
	err = EachEvent(ctx, b, EventFilter{OrderID: sel.OrderID, Since: sel.Since, Until: sel.Until, State: sel.State},
		func(ev *Event) { ids = append(ids, ev.ID) })
	slices.Reverse(ids) // listed newest first
	return ids, nil, err
}

// redecide decides the events in chunks: each chunk is one transaction (or,
// dry, one read transaction with the order states simulated in memory).
func redecide(ctx context.Context, b Backend, ids []string, dec Decider, mopt DecideOptions, opt ReplayOptions, now time.Time, sum *ReplaySummary) error {
	sim := map[string]OrderState{} // dry run: order states as the replay would leave them
	for start := 0; start < len(ids); start += replayChunk {
		chunk := ids[start:min(start+replayChunk, len(ids))]
		var part ReplaySummary
		fn := func(tx Tx) error {
			part = ReplaySummary{}
			for _, id := range chunk {
				if err := replayOne(tx, id, dec, mopt, opt, sim, now, &part); err != nil {
					return err
				}
			}
			return nil
		}
		var err error
		if opt.DryRun {
			err = b.View(ctx, fn)
		} else {
			err = b.Update(ctx, UpdateOptions{Wake: true}, fn)
		}
		if err != nil {
			sum.Failed += len(chunk)
			sum.Errors = append(sum.Errors, err.Error())
			return fmt.Errorf("store: replay: %w", err)
		}
		sum.Matched += part.Matched // minus the events another replica decided meanwhile
		sum.Dispatched += part.Dispatched
		sum.Superseded += part.Superseded
		sum.Unchanged += part.Unchanged
		sum.Skipped += part.Skipped
		sum.Failed += part.Failed
		sum.Errors = append(sum.Errors, part.Errors...)
		sum.Requests = append(sum.Requests, part.Requests...)
		if opt.Progress != nil {
			opt.Progress(start+len(chunk), len(ids))
		}
	}
	return nil
}

func replayOne(tx Tx, id string, dec Decider, mopt DecideOptions, opt ReplayOptions, sim map[string]OrderState, now time.Time, sum *ReplaySummary) error {
	ev, err := tx.Event(id)
	if errors.Is(err, ErrNotFound) {
		sum.Failed++
		sum.Errors = append(sum.Errors, fmt.Sprintf("event %s: not found", id))
		return nil
	}
	if err != nil {
		return err
	}
	if ev.State == EventInvalid {
		sum.Skipped++
		return nil
	}
	raw, err := tx.Payload(id)
	if err != nil {
		return err
	}
	u, err := digishare.Decode(raw)
	if err != nil {
		sum.Skipped++
		return nil
	}
	orderID, _ := dec.OrderID(u)
	st, ok := sim[orderID]
	if !ok {
		if opt.DryRun {
			st, err = tx.OrderState(orderID)
		} else {
			st, err = lockOrder(tx, orderID)
		}
		if err != nil {
			return err
		}
	}
	if opt.onlyUnmapped && !opt.DryRun {
		// Under the order's lock, read the event again: another replica may
		// have decided it since it was listed.
		if ev, err = tx.Event(id); err != nil {
			return err
		}
		if ev.State != EventUnmapped || (len(ev.Decisions) > 0 && ev.Decisions[len(ev.Decisions)-1].MappingVersion == dec.Version()) {
			sum.Matched--
			return nil
		}
	}
	d := dec.Decide(u, st, mopt)
	switch d.Outcome {
	case EventDispatched:
		sum.Dispatched++
	case EventSuperseded:
		sum.Superseded++
	case EventUnchanged:
		sum.Unchanged++
	default:
		sum.Skipped++
	}
	if opt.DryRun {
		for _, p := range d.Deliveries {
			sum.Requests = append(sum.Requests, ReplayedDelivery{EventID: id, OrderID: d.OrderID, Target: p.Target, Status: p.Status, Skip: p.Skip})
		}
		if d.Outcome == EventDispatched || d.Outcome == EventUnchanged {
			next := Advance(st, d)
			next.Targets = make(map[string]TargetState, len(st.Targets))
			for k, v := range st.Targets {
				next.Targets[k] = v
			}
			for _, p := range d.Deliveries {
				next.Targets[p.Target] = TargetState{Status: p.Status, Live: p.Skip == ""}
			}
			sim[orderID] = next
		}
		return nil
	}
	created, err := apply(tx, ev, st, d, mopt.Force, now)
	if err != nil {
		return err
	}
	for _, c := range created {
		sum.Requests = append(sum.Requests, ReplayedDelivery{EventID: id, OrderID: c.OrderID, Target: c.Target, Status: c.Status, Skip: c.Reason})
	}
	return tx.PutEvent(ev, nil)
}

// RetryDelivery queues a dead delivery again, as a new delivery with the same
// order, target, kind and status. It refuses (ErrConflict) a delivery that is
// not dead, or one a newer delivery of the same kind replaced: a status
// delivery whose order and target have a newer one (sending it would put an
// older status over a newer one), an order upsert whose order has a newer
// upsert, a ticket delivery of an order whose ticket is recorded (or that
// has a newer ticket delivery).
func RetryDelivery(ctx context.Context, b Backend, id string, now time.Time) (*Delivery, error) {
	nid, err := NewID()
	if err != nil {
		return nil, err
	}
	var out Delivery
	err = b.Update(ctx, UpdateOptions{Wake: true}, func(tx Tx) error {
		old, err := tx.Delivery(id)
		if err != nil {
			return err
		}
		st, err := lockOrder(tx, old.OrderID)
		if err != nil {
			return err
		}
		if old.State != Dead {
			return &ConflictError{Msg: fmt.Sprintf("delivery %s is %s; only dead deliveries can be retried", id, old.State)}
		}
		out = Delivery{ID: nid, EventID: old.EventID, IntakeID: old.IntakeID, OrderID: old.OrderID, Target: old.Target,
			Kind: old.KindOrStatus(), Status: old.Status, StatusID: old.StatusID, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
			State: Pending, Force: old.Force, Reason: "retry of " + id, RetryOf: id}
		if old.KindOrStatus() != KindStatus {
			return retryIntakeDelivery(tx, old, &out)
		}
		if cur := st.Targets[old.Target].DeliveryID; cur != id {
			return &ConflictError{Msg: fmt.Sprintf("a newer delivery (%s) for order %s and target %s exists; retrying this one would send an older status",
				cur, old.OrderID, old.Target)}
		}
		if err := tx.PutDelivery(&out); err != nil {
			return err
		}
		ts := st.Targets[old.Target]
		ts.DeliveryID = out.ID
		st.Targets[old.Target] = ts
		if err := tx.PutOrder(old.OrderID, st); err != nil {
			return err
		}
		ev, err := tx.Event(old.EventID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ev.DeliveryIDs = append(ev.DeliveryIDs, out.ID)
		return tx.PutEvent(ev, nil)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// retryIntakeDelivery checks the 409 rule of an order, ticket or fetch
// delivery against the order's intake record, queues its retry out and
// makes it the order's delivery of that kind.
func retryIntakeDelivery(tx Tx, old, out *Delivery) error {
	rec, err := tx.OrderIntake(old.OrderID)
	if errors.Is(err, ErrNotFound) {
		rec, err = &OrderIntake{OrderID: old.OrderID}, nil
	}
	if err != nil {
		return err
	}
	switch old.Kind {
	case KindTicket:
		if t := rec.Ticket; t != nil {
			return &ConflictError{Msg: fmt.Sprintf("order %s has its ticket already (%s); retrying would create a second one",
				old.OrderID, describeTicket(t))}
		}
		if rec.TicketDeliveryID != "" && rec.TicketDeliveryID != old.ID {
			return &ConflictError{Msg: fmt.Sprintf("a newer ticket delivery (%s) for order %s exists; retry that one if it is dead",
				rec.TicketDeliveryID, old.OrderID)}
		}
		rec.TicketDeliveryID = out.ID
	case KindOrder:
		if rec.UpsertDeliveryID != "" && rec.UpsertDeliveryID != old.ID {
			return &ConflictError{Msg: fmt.Sprintf("a newer ExpertSender order delivery (%s) for order %s exists; retrying this one would send an older document",
				rec.UpsertDeliveryID, old.OrderID)}
		}
		rec.UpsertDeliveryID = out.ID
	}
	if err := tx.PutDelivery(out); err != nil {
		return err
	}
	if old.Kind != KindFetch && rec.LastIntakeID != "" {
		if err := tx.PutOrderIntake(rec); err != nil {
			return err
		}
	}
	it, err := tx.Intake(old.IntakeID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	it.DeliveryIDs = append(it.DeliveryIDs, out.ID)
	return tx.PutIntake(it, nil)
}

func describeTicket(t *Ticket) string {
	s := "ticket"
	if t.ID != "" {
		s += " " + t.ID
	}
	if t.Number != "" {
		s += " #" + t.Number
	}
	return s
}
