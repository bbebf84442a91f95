package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/payload"
)

// Order intakes (migrations/0002_intake.sql): the intakes table holds each
// intake with its raw body (stored as internal/payload writes it), the
// order_intakes table each order's intake record.

const intakeColumns = `id::text, order_id, received_at, state, id_only, source, key, delivery_ids::text[], coalesce(fetched_by::text, '')`

func scanIntake(row pgx.Row, dest ...any) (*bridge.Intake, error) {
	var in bridge.Intake
	var state, source string
	err := row.Scan(append([]any{&in.ID, &in.OrderID, &in.ReceivedAt, &state, &in.IDOnly, &source, &in.Key, &in.DeliveryIDs, &in.FetchedBy}, dest...)...)
	if err != nil {
		return nil, err
	}
	in.ReceivedAt = in.ReceivedAt.UTC()
	in.State, in.Source = bridge.IntakeState(state), bridge.IntakeSource(source)
	if len(in.Key) == 0 {
		in.Key = nil
	}
	if len(in.DeliveryIDs) == 0 {
		in.DeliveryIDs = nil
	}
	return &in, nil
}

const orderIntakeColumns = `order_id, coalesce(latest_intake_id::text, ''), key, last_intake_id::text, intake_ids::text[], ticket, media_id,
	coalesce(ticket_delivery_id::text, ''), coalesce(upsert_delivery_id::text, '')`

func scanOrderIntake(row pgx.Row) (*bridge.OrderIntake, error) {
	var rec bridge.OrderIntake
	var ticket []byte
	err := row.Scan(&rec.OrderID, &rec.LatestIntakeID, &rec.Key, &rec.LastIntakeID, &rec.IntakeIDs, &ticket, &rec.MediaID,
		&rec.TicketDeliveryID, &rec.UpsertDeliveryID)
	if err != nil {
		return nil, err
	}
	if len(rec.Key) == 0 {
		rec.Key = nil
	}
	if len(ticket) > 0 {
		rec.Ticket = &bridge.Ticket{}
		if err := json.Unmarshal(ticket, rec.Ticket); err != nil {
			return nil, fmt.Errorf("decode the ticket of order %s: %w", rec.OrderID, err)
		}
	}
	return &rec, nil
}

// optionalID reads an id that may be absent (SQL NULL).
func optionalID(kind, id string) (pgtype.UUID, error) {
	if id == "" {
		return pgtype.UUID{}, nil
	}
	return parseID(kind, id)
}

func (t *tx) Intake(id string) (*bridge.Intake, error) {
	uid, err := parseID("intake", id)
	if err != nil {
		return nil, err
	}
	var in *bridge.Intake
	err = t.read(`SELECT `+intakeColumns+` FROM intakes WHERE id = $1`, func(br pgx.BatchResults) error {
		var err error
		in, err = scanIntake(br.QueryRow())
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	}, uid)
	if err != nil {
		return nil, fmt.Errorf("postgres: read intake %s: %w", id, err)
	}
	if in == nil {
		return nil, fmt.Errorf("%w: intake %s", bridge.ErrNotFound, id)
	}
	return in, nil
}

func (t *tx) IntakeRaw(id string) ([]byte, error) {
	uid, err := parseID("intake", id)
	if err != nil {
		return nil, err
	}
	var stored []byte
	found := true
	err = t.read(`SELECT raw FROM intakes WHERE id = $1`, func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	}, uid)
	if err != nil {
		return nil, fmt.Errorf("postgres: read the body of intake %s: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: intake %s", bridge.ErrNotFound, id)
	}
	return payload.Decompress(stored)
}

// PutIntake upserts an intake; a nil stored body keeps the one it has.
func (t *tx) PutIntake(in *bridge.Intake, stored []byte) error {
	uid, err := parseID("intake", in.ID)
	if err != nil {
		return err
	}
	fetchedBy, err := optionalID("delivery", in.FetchedBy)
	if err != nil {
		return fmt.Errorf("postgres: put intake %s: fetched_by: %w", in.ID, err)
	}
	return t.write("put intake "+in.ID, []string{"intakes:" + in.ID}, `INSERT INTO intakes (id, order_id, received_at, state, id_only,
			source, key, delivery_ids, fetched_by, raw)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET order_id = excluded.order_id, received_at = excluded.received_at, state = excluded.state,
			id_only = excluded.id_only, source = excluded.source, key = excluded.key, delivery_ids = excluded.delivery_ids,
			fetched_by = excluded.fetched_by, raw = coalesce(excluded.raw, intakes.raw)`,
		uid, text(in.OrderID), in.ReceivedAt, text(string(in.State)), in.IDOnly, text(string(in.Source)), nilIfEmpty(in.Key),
		ids(in.DeliveryIDs), fetchedBy, stored)
}

func (t *tx) OrderIntake(orderID string) (*bridge.OrderIntake, error) {
	var rec *bridge.OrderIntake
	err := t.read(`SELECT `+orderIntakeColumns+` FROM order_intakes WHERE order_id = $1`, func(br pgx.BatchResults) error {
		var err error
		rec, err = scanOrderIntake(br.QueryRow())
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	}, text(orderID))
	if err != nil {
		return nil, fmt.Errorf("postgres: read intakes of order %s: %w", orderID, err)
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: intakes of order %s", bridge.ErrNotFound, orderID)
	}
	return rec, nil
}

func (t *tx) PutOrderIntake(rec *bridge.OrderIntake) error {
	if rec.OrderID == "" {
		return errors.New("postgres: put order intake: no order id")
	}
	last, err := parseID("intake", rec.LastIntakeID)
	if err != nil {
		return fmt.Errorf("postgres: put intakes of order %s: last intake: %w", rec.OrderID, err)
	}
	latest, err := optionalID("intake", rec.LatestIntakeID)
	if err != nil {
		return err
	}
	tkd, err := optionalID("delivery", rec.TicketDeliveryID)
	if err != nil {
		return err
	}
	upd, err := optionalID("delivery", rec.UpsertDeliveryID)
	if err != nil {
		return err
	}
	var ticket []byte
	if rec.Ticket != nil {
		if ticket, err = jsonb(rec.Ticket); err != nil {
			return fmt.Errorf("postgres: put intakes of order %s: %w", rec.OrderID, err)
		}
	}
	return t.write("put intakes of order "+rec.OrderID, []string{"order_intakes:" + rec.OrderID}, `INSERT INTO order_intakes (order_id,
			latest_intake_id, key, last_intake_id, intake_ids, ticket, media_id, ticket_delivery_id, upsert_delivery_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (order_id) DO UPDATE SET latest_intake_id = excluded.latest_intake_id, key = excluded.key,
			last_intake_id = excluded.last_intake_id, intake_ids = excluded.intake_ids, ticket = excluded.ticket,
			media_id = excluded.media_id, ticket_delivery_id = excluded.ticket_delivery_id, upsert_delivery_id = excluded.upsert_delivery_id`,
		text(rec.OrderID), latest, nilIfEmpty(rec.Key), last, ids(rec.IntakeIDs), ticket, text(rec.MediaID), tkd, upd)
}

// RecordAttempt records an attempt result in the transaction (the record's
// statement, as Record does: the claim and a durable claim go with it).
func (t *tx) RecordAttempt(id string, o bridge.AttemptResult, now time.Time) error {
	req, err := newRecord(id, o, now)
	if err != nil {
		return fmt.Errorf("postgres: record delivery %s: %w", id, err)
	}
	var n int64
	if err := t.read(req.sql, func(br pgx.BatchResults) error { return br.QueryRow().Scan(&n) }, req.args...); err != nil {
		return fmt.Errorf("postgres: record delivery %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: delivery %s", bridge.ErrNotFound, id)
	}
	return nil
}

// GetIntake returns a stored intake and its raw body (ErrNotFound).
func (db *DB) GetIntake(ctx context.Context, id string) (*bridge.Intake, []byte, error) {
	uid, err := parseID("intake", id)
	if err != nil {
		return nil, nil, err
	}
	release, err := db.enter()
	if err != nil {
		return nil, nil, err
	}
	defer release()
	var stored []byte
	in, err := scanIntake(db.pool.QueryRow(ctx, `SELECT `+intakeColumns+`, raw FROM intakes WHERE id = $1`, uid), &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w: intake %s", bridge.ErrNotFound, id)
	}
	if err != nil {
		return nil, nil, db.fail(ctx, "read intake "+id, err)
	}
	raw, err := payload.Decompress(stored)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: intake %s: %w", id, err)
	}
	return in, raw, nil
}

// ListIntakes returns matching intakes newest first (id order), and the
// cursor of the next page; with Latest, each order's newest intake.
func (db *DB) ListIntakes(ctx context.Context, f bridge.IntakeFilter) ([]bridge.Intake, string, error) {
	limit, after, err := pageArgs(f.Limit, f.Cursor)
	if err != nil {
		return nil, "", err
	}
	release, err := db.enter()
	if err != nil {
		return nil, "", err
	}
	defer release()
	var w where
	if after.Valid {
		w.add("i.id < ?", after)
	}
	if f.OrderID != "" {
		w.add("i.order_id = ?", text(f.OrderID))
	}
	if !f.Since.IsZero() {
		w.add("i.received_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		w.add("i.received_at < ?", f.Until)
	}
	from := ` FROM intakes i`
	if f.Latest {
		from += ` JOIN order_intakes o ON o.last_intake_id = i.id`
	}
	sql := `SELECT i.` + intakeColumnsOf("i") + from + w.sql() + ` ORDER BY i.id DESC LIMIT ` + strconv.Itoa(limit+1)
	rows, err := db.pool.Query(ctx, sql, w.args...)
	if err != nil {
		return nil, "", db.fail(ctx, "list intakes", err)
	}
	out := []bridge.Intake{}
	for rows.Next() {
		in, err := scanIntake(rows)
		if err != nil {
			rows.Close()
			return nil, "", db.fail(ctx, "list intakes", err)
		}
		out = append(out, *in)
	}
	if err := rows.Err(); err != nil {
		return nil, "", db.fail(ctx, "list intakes", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// intakeColumnsOf is intakeColumns qualified by a table alias (after the
// first column, which the caller qualifies).
func intakeColumnsOf(a string) string {
	return `id::text, ` + a + `.order_id, ` + a + `.received_at, ` + a + `.state, ` + a + `.id_only, ` + a + `.source, ` + a + `.key, ` +
		a + `.delivery_ids::text[], coalesce(` + a + `.fetched_by::text, '')`
}
