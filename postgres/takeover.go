package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TakeOver is run by a replica that has just become the deployment's
// sender, before it sends anything: the previous sender is gone (dead, or
// cut off from the database, which stops its sends at once), so the claims
// it left are released now instead of when their leases lapse, and the new
// sender can send those deliveries at once. It returns once that is
// committed; an error wraps bridge.ErrUnavailable when the database cannot
// be reached.
//
// Each step runs in one transaction, in order.
func (db *DB) TakeOver(ctx context.Context) error {
	release, err := db.enter()
	if err != nil {
		return err
	}
	defer release()
	total := 0
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		total = 0
		for _, step := range takeOverSteps {
			n, err := step.run(ctx, tx, db.opts.Name)
			if err != nil {
				return fmt.Errorf("%s: %w", step.name, err)
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return db.fail(ctx, "take over sending", err)
	}
	if total > 0 {
		db.log.Info("postgres: took over the previous sender's deliveries", "deliveries", total, "sender", db.opts.Name)
	}
	db.signal() // read the outbox now: what was released is due
	return nil
}

// takeOverStep is one thing a new sender settles of what the previous
// senders left.
type takeOverStep struct {
	name string
	run  func(ctx context.Context, tx pgx.Tx, self string) (int, error)
}

// Durable claims (durable_claims: a request that must not be repeated
// blindly, sent with its outcome not recorded) are not released here: they
// stay, PendingAfter reports their deliveries Claimed, and the worker
// settles them (a ticket ends dead with its outcome unknown).
var takeOverSteps = []takeOverStep{
	{"release other senders' claims", releaseOtherClaims},
}

// releaseOtherClaims clears every claim held by another sender name.
func releaseOtherClaims(ctx context.Context, tx pgx.Tx, self string) (int, error) {
	tag, err := tx.Exec(ctx, `UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL
		WHERE state = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> $1`, self)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
