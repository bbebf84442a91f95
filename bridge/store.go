package bridge

import (
	"context"
	"log/slog"
	"time"
)

// Store binds the rules to one backend: it is what the receiver, the admin
// API, the CLI and the background jobs call, whichever backend is in use.
type Store struct {
	Backend
}

// Ingest: see the function Ingest.
func (s Store) Ingest(ctx context.Context, in Incoming, dec Decider) (IngestResult, error) {
	return Ingest(ctx, s.Backend, in, dec)
}

// Replay: see the function Replay.
func (s Store) Replay(ctx context.Context, sel ReplaySelector, dec Decider, opt ReplayOptions, now time.Time) (ReplaySummary, error) {
	return Replay(ctx, s.Backend, sel, dec, opt, now)
}

// RedecideUnmapped: see the function RedecideUnmapped.
func (s Store) RedecideUnmapped(ctx context.Context, statusIDs []string, dec Decider, now time.Time) (ReplaySummary, error) {
	return RedecideUnmapped(ctx, s.Backend, statusIDs, dec, now)
}

// RetryDelivery: see the function RetryDelivery.
func (s Store) RetryDelivery(ctx context.Context, id string, now time.Time) (*Delivery, error) {
	return RetryDelivery(ctx, s.Backend, id, now)
}

// EventSummaries: see the function EventSummaries.
func (s Store) EventSummaries(ctx context.Context, f EventFilter) ([]EventSummary, string, error) {
	return EventSummaries(ctx, s.Backend, f)
}

// Detail: see the function Detail.
func (s Store) Detail(ctx context.Context, id string) (*EventDetail, error) {
	return Detail(ctx, s.Backend, id)
}

// Deliveries: see the function Deliveries.
func (s Store) Deliveries(ctx context.Context, ids []string) ([]Delivery, error) {
	return Deliveries(ctx, s.Backend, ids)
}

// Sweep: see the function Sweep.
func (s Store) Sweep(ctx context.Context, cutoff time.Time) (int, error) {
	return Sweep(ctx, s.Backend, cutoff)
}

// RunRetention: see the function RunRetention.
func (s Store) RunRetention(ctx context.Context, retention, interval time.Duration, log *slog.Logger) {
	RunRetention(ctx, s.Backend, retention, interval, log)
}

// FillShortDeliveryIDs: see the function FillShortDeliveryIDs.
func (s Store) FillShortDeliveryIDs(ctx context.Context, ds []Delivery) error {
	return FillShortDeliveryIDs(ctx, s.Backend, ds)
}

// TakeIntake: see the function TakeIntake.
func (s Store) TakeIntake(ctx context.Context, in IncomingOrder, plan IntakePlan, now time.Time) (IntakeResult, error) {
	return TakeIntake(ctx, s.Backend, in, plan, now)
}

// Orders: see the function Orders.
func (s Store) Orders(ctx context.Context, f IntakeFilter) ([]OrderSummary, string, error) {
	return Orders(ctx, s.Backend, f)
}

// Order: see the function Order.
func (s Store) Order(ctx context.Context, orderID string) (*OrderDetail, error) {
	return Order(ctx, s.Backend, orderID)
}
