package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Updater is the part of a Backend that the intake rules write through.
type Updater interface {
	Update(ctx context.Context, opt UpdateOptions, fn func(tx Tx) error) error
	// StoredPayload prepares a raw body for PutEvent and PutIntake.
	StoredPayload(raw []byte) []byte
}

// TakeIntake stores one order intake and the deliveries it causes in one
// transaction, under the order's lock, and returns once it is committed:
//
//   - an orderId-only body is an intake in state fetch with a fetch delivery
//     (target order_system); it is never a duplicate: the fetched document
//     is what is compared;
//   - otherwise, the same content key as the order's latest intake is a
//     duplicate (nothing stored; the answer names that intake), and a
//     different one a new intake (state new, or updated when the order had
//     one) with a ticket delivery unless a ticket is recorded or a ticket
//     delivery of the order is live or dead with an unknown outcome, and an
//     ExpertSender order delivery (each newer one supersedes an older one
//     still waiting), as plan says.
//
// A step whose target cannot send is recorded as skipped with plan's reason.
// Errors are Ingest's (ErrOverloaded when refusable and the queue is full).
func TakeIntake(ctx context.Context, b Updater, in IncomingOrder, plan IntakePlan, now time.Time) (IntakeResult, error) {
	stored := b.StoredPayload(in.Raw) // outside the transaction
	id, err := NewID()
	if err != nil {
		return IntakeResult{}, err
	}
	var res IntakeResult
	err = b.Update(ctx, UpdateOptions{Refusable: in.Source == SourceHTTP, Wake: true}, func(tx Tx) error {
		var err error
		res, err = TakeIntakeTx(tx, id, in, stored, plan, now)
		return err
	})
	if err != nil {
		return IntakeResult{}, err
	}
	return res, nil
}

// TakeIntakeTx is TakeIntake inside a transaction: id is the new intake's id
// and stored its body from StoredPayload.
func TakeIntakeTx(tx Tx, id string, in IncomingOrder, stored []byte, plan IntakePlan, now time.Time) (IntakeResult, error) {
	if in.OrderID == "" {
		return IntakeResult{}, errors.New("store: an intake needs an order id")
	}
	if _, err := lockOrder(tx, in.OrderID); err != nil {
		return IntakeResult{}, err
	}
	rec, err := tx.OrderIntake(in.OrderID)
	if errors.Is(err, ErrNotFound) {
		rec, err = &OrderIntake{OrderID: in.OrderID}, nil
	}
	if err != nil {
		return IntakeResult{}, fmt.Errorf("store: read intakes of order %s: %w", in.OrderID, err)
	}
	res := IntakeResult{OrderID: in.OrderID}
	if !in.IDOnly && rec.LatestIntakeID != "" && bytes.Equal(rec.Key, in.Key[:]) {
		res.IntakeID, res.Duplicate, res.State = rec.LatestIntakeID, true, IntakeUpdated
		if latest, err := tx.Intake(rec.LatestIntakeID); err == nil {
			res.State = latest.State
		} else if !errors.Is(err, ErrNotFound) {
			return IntakeResult{}, err
		}
		return res, nil
	}
	it := &Intake{ID: id, OrderID: in.OrderID, ReceivedAt: in.ReceivedAt.UTC(), IDOnly: in.IDOnly,
		Source: in.Source, FetchedBy: in.FetchedBy}
	newDelivery := func(target string, kind DeliveryKind, step Step) (*Delivery, error) {
		did, err := NewID()
		if err != nil {
			return nil, err
		}
		d := &Delivery{ID: did, IntakeID: id, OrderID: in.OrderID, Target: target, Kind: kind,
			CreatedAt: now.UTC(), UpdatedAt: now.UTC(), State: Pending}
		if step.Skip != "" {
			d.State, d.Reason = Skipped, step.Skip
		}
		if err := tx.PutDelivery(d); err != nil {
			return nil, fmt.Errorf("store: put %s delivery %s: %w", kind, did, err)
		}
		it.DeliveryIDs = append(it.DeliveryIDs, did)
		res.Deliveries = append(res.Deliveries, *d)
		return d, nil
	}
	switch {
	case in.IDOnly:
		it.State = IntakeFetch
		if _, err := newDelivery(TargetOrderSystem, KindFetch, plan.Fetch); err != nil {
			return IntakeResult{}, err
		}
	default:
		it.State, it.Key = IntakeNew, append([]byte(nil), in.Key[:]...)
		if rec.LatestIntakeID != "" {
			it.State = IntakeUpdated
		}
		if plan.Ticket.On && rec.Ticket != nil {
			// The ticket exists: this intake's ticket step does nothing,
			// visibly (done, already_created), and sends nothing.
			d, err := newDelivery(TargetDigishare, KindTicket, Step{})
			if err != nil {
				return IntakeResult{}, err
			}
			d.State, d.Result = Done, ResultAlreadyCreated
			d.Reason = "the order's " + describeTicket(rec.Ticket) + " was created already; no second ticket is made"
			if err := tx.PutDelivery(d); err != nil {
				return IntakeResult{}, err
			}
			res.Deliveries[len(res.Deliveries)-1] = *d
		} else if plan.Ticket.On {
			need, err := needsTicket(tx, rec)
			if err != nil {
				return IntakeResult{}, err
			}
			if need {
				d, err := newDelivery(TargetDigishare, KindTicket, plan.Ticket)
				if err != nil {
					return IntakeResult{}, err
				}
				rec.TicketDeliveryID = d.ID
			}
		}
		if plan.Upsert.On {
			d, err := newDelivery(TargetExpertSender, KindOrder, plan.Upsert)
			if err != nil {
				return IntakeResult{}, err
			}
			rec.UpsertDeliveryID = d.ID
		}
		rec.LatestIntakeID, rec.Key = id, it.Key
	}
	rec.LastIntakeID = id
	rec.IntakeIDs = append(rec.IntakeIDs, id)
	if err := tx.PutIntake(it, stored); err != nil {
		return IntakeResult{}, fmt.Errorf("store: put intake %s: %w", id, err)
	}
	if err := tx.PutOrderIntake(rec); err != nil {
		return IntakeResult{}, fmt.Errorf("store: put intakes of order %s: %w", in.OrderID, err)
	}
	res.IntakeID, res.State = id, it.State
	return res, nil
}

// needsTicket reports whether an intake of the order should create a ticket
// delivery: no ticket is recorded, and the order's newest ticket delivery is
// neither live (pending, in flight, done) nor dead with an unknown outcome
// (the ticket may exist: only an operator's retry sends it).
func needsTicket(tx Tx, rec *OrderIntake) (bool, error) {
	if rec.Ticket != nil {
		return false, nil
	}
	if rec.TicketDeliveryID == "" {
		return true, nil
	}
	d, err := tx.Delivery(rec.TicketDeliveryID)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: read ticket delivery %s: %w", rec.TicketDeliveryID, err)
	}
	return !d.Live() && !d.UnknownOutcome(), nil
}

// RecordMediaID records the order's uploaded invoice the moment the upload
// returns, so a retry of the ticket step never uploads it again.
func RecordMediaID(ctx context.Context, b Updater, orderID, mediaID string) error {
	return b.Update(ctx, UpdateOptions{}, func(tx Tx) error {
		if _, err := lockOrder(tx, orderID); err != nil {
			return err
		}
		rec, err := tx.OrderIntake(orderID)
		if err != nil {
			return fmt.Errorf("store: read intakes of order %s: %w", orderID, err)
		}
		rec.MediaID = mediaID
		return tx.PutOrderIntake(rec)
	})
}

// Outcome is what a done delivery made, recorded in the transaction that
// records it done (RecordWith).
type Outcome struct {
	// Ticket: the ticket delivery created it; it goes on the order's
	// intake record (a later intake finds it and makes no other).
	Ticket *Ticket
	// Fetched: the fetch delivery read the order; it is taken in as an
	// intake (Source fetch) under Plan.
	Fetched *IncomingOrder
	Plan    IntakePlan
}

// RecordWith records delivery id's attempt r and, when r is done, out, in
// one transaction: the ticket on the order's intake record, or the fetched
// document taken in as an intake (its result, e.g. "taken in as intake …
// (updated)", becomes the delivery's result). The delivery's claim is
// released, durable claims included. It returns the fetched intake's result.
func RecordWith(ctx context.Context, b Updater, id string, r AttemptResult, out Outcome, now time.Time) (*IntakeResult, error) {
	var stored []byte
	var intakeID string
	if out.Fetched != nil {
		stored = b.StoredPayload(out.Fetched.Raw)
		var err error
		if intakeID, err = NewID(); err != nil {
			return nil, err
		}
	}
	var res *IntakeResult
	err := b.Update(ctx, UpdateOptions{Wake: out.Fetched != nil}, func(tx Tx) error {
		res = nil
		rr := r
		d, err := tx.Delivery(id)
		if err != nil {
			return err
		}
		if r.State == Done && out.Fetched != nil {
			f := *out.Fetched
			f.FetchedBy = id
			taken, err := TakeIntakeTx(tx, intakeID, f, stored, out.Plan, now)
			if err != nil {
				return err
			}
			res = &taken
			if taken.Duplicate {
				rr.Result = fmt.Sprintf("fetched: the same as intake %s (duplicate)", taken.IntakeID)
			} else {
				rr.Result = fmt.Sprintf("fetched: taken in as intake %s (%s)", taken.IntakeID, taken.State)
			}
		}
		if r.State == Done && out.Ticket != nil {
			if _, err := lockOrder(tx, d.OrderID); err != nil {
				return err
			}
			rec, err := tx.OrderIntake(d.OrderID)
			if errors.Is(err, ErrNotFound) {
				rec, err = &OrderIntake{OrderID: d.OrderID}, nil
			}
			if err != nil {
				return err
			}
			t := *out.Ticket
			t.DeliveryID, t.CreatedAt = id, now.UTC()
			rec.Ticket = &t
			if err := tx.PutOrderIntake(rec); err != nil {
				return err
			}
		}
		return tx.RecordAttempt(id, rr, now)
	})
	if err != nil {
		return nil, fmt.Errorf("store: record delivery %s: %w", id, err)
	}
	return res, nil
}
