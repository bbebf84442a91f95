package postgres

import (
	"context"

	"github.com/statusbridge/statusbridge/bridge"
)

// For statusbridge store copy (bbolt → PostgreSQL): the order intake's
// records, written with the service's own statements (PutIntake,
// PutOrderIntake), and the source's durable claims, kept as durable claims
// of a sender that is gone: the next sender finds them Claimed, as the bbolt
// store would at its next start (a ticket that may have gone out ends dead
// with an unknown outcome rather than being sent again).

// copiedClaimer is the sender name of durable claims copied in.
const copiedClaimer = "copied durable claim"

// CopiedIntake is an intake with its stored body (internal/payload's form,
// the same in both stores).
type CopiedIntake struct {
	Intake bridge.Intake
	Stored []byte
}

// CopyIntakes writes intakes, order intake records and durable claims in one
// transaction. Copy the deliveries first: a durable claim names one.
func (db *DB) CopyIntakes(ctx context.Context, intakes []CopiedIntake, recs []bridge.OrderIntake, durableClaims []string) error {
	return db.Update(ctx, bridge.UpdateOptions{}, func(btx bridge.Tx) error {
		t := btx.(*tx)
		for i := range intakes {
			if err := t.PutIntake(&intakes[i].Intake, intakes[i].Stored); err != nil {
				return err
			}
		}
		for i := range recs {
			if err := t.PutOrderIntake(&recs[i]); err != nil {
				return err
			}
		}
		if len(durableClaims) > 0 {
			keys := make([]string, len(durableClaims))
			for i, id := range durableClaims {
				keys[i] = "durable_claims:" + id
			}
			if err := t.write("copy durable claims", keys, `INSERT INTO durable_claims (delivery_id, claimed_by)
				SELECT d.id, $2 FROM deliveries d WHERE d.id = ANY($1::uuid[]) AND d.state = 'pending'
				ON CONFLICT (delivery_id) DO NOTHING`, ids(durableClaims), copiedClaimer); err != nil {
				return err
			}
		}
		return nil
	})
}

// IntakeCounts counts the order intake's records (a copy's check).
func (db *DB) IntakeCounts(ctx context.Context) (intakes, orders, durableClaims int, err error) {
	release, err := db.enter()
	if err != nil {
		return 0, 0, 0, err
	}
	defer release()
	err = db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM intakes), (SELECT count(*) FROM order_intakes),
		(SELECT count(*) FROM durable_claims)`).Scan(&intakes, &orders, &durableClaims)
	if err != nil {
		return 0, 0, 0, db.fail(ctx, "count intake records", err)
	}
	return intakes, orders, durableClaims, nil
}
