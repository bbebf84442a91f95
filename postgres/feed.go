package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statusbridge/statusbridge/bridge"
)

// The changes feed (receiver.Feed): recordSQL appends a row to changes for
// each delivery result, in the recording transaction, whichever replica
// records it; readers poll after a position.
//
// seq is taken before the transaction commits, so a reader can see seq 7
// committed while seq 5, of a transaction still running, is not yet: a
// position is therefore the highest seq returned and the transactions the
// reader's snapshot saw running ("7:x1,x2"). The next read returns the rows
// after the seq and the rows of those transactions (committed since). A row
// of a transaction that started after the snapshot has a higher seq than
// anything the snapshot saw, so nothing is missed.

const (
	feedKeep = 10 * time.Minute
	// feedPruneEvery bounds how often a read prunes the feed.
	feedPruneEvery = time.Minute
	// maxFeedXIDs bounds the running transactions a position carries.
	maxFeedXIDs = 256
)

var _ interface {
	ChangesPosition() (string, error)
	ChangesAfter(pos string, limit int) ([]bridge.Delivery, string, error)
} = (*DB)(nil)

// ChangesPosition returns the feed's current position: ChangesAfter from it
// returns only what is recorded later.
func (db *DB) ChangesPosition() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	release, err := db.enter()
	if err != nil {
		return "", err
	}
	defer release()
	var seq int64
	var xip []int64
	err = db.readTx(ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT coalesce((SELECT max(seq) FROM changes), 0),
			ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(pg_current_snapshot()) x)`).QueryRow(func(row pgx.Row) error {
			return row.Scan(&seq, &xip)
		})
	})
	if err != nil {
		return "", db.fail(ctx, "changes feed", err)
	}
	return feedPos(seq, xip), nil
}

func feedPos(seq int64, xip []int64) string {
	var s strings.Builder
	s.WriteString(strconv.FormatInt(seq, 10))
	for i, x := range xip[:min(len(xip), maxFeedXIDs)] {
		if i == 0 {
			s.WriteByte(':')
		} else {
			s.WriteByte(',')
		}
		s.WriteString(strconv.FormatInt(x, 10))
	}
	return s.String()
}

func parseFeedPos(pos string) (int64, []int64, error) {
	head, tail, _ := strings.Cut(pos, ":")
	seq, err := strconv.ParseInt(head, 10, 64)
	if err != nil || seq < 0 {
		return 0, nil, fmt.Errorf("%w: changes position %q", bridge.ErrNotFound, pos)
	}
	var xip []int64
	if tail != "" {
		for _, f := range strings.Split(tail, ",") {
			x, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return 0, nil, fmt.Errorf("%w: changes position %q", bridge.ErrNotFound, pos)
			}
			xip = append(xip, x)
		}
	}
	return seq, xip, nil
}

// ChangesAfter returns the deliveries changed after position pos (oldest
// change first, each delivery once, as it is now), at most limit changes,
// and the position to ask from next. A position older than the feed keeps
// gets what is left.
func (db *DB) ChangesAfter(pos string, limit int) ([]bridge.Delivery, string, error) {
	after, prev, err := parseFeedPos(pos)
	if err != nil {
		return nil, pos, err
	}
	if limit <= 0 {
		limit = 100
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	release, err := db.enter()
	if err != nil {
		return nil, pos, err
	}
	defer release()
	if prev == nil {
		prev = []int64{}
	}
	const changed = `SELECT seq, delivery_id FROM changes WHERE seq > $1 OR (xid = ANY($2) AND seq <= $1) ORDER BY seq LIMIT $3`
	var order []string // the changed deliveries' ids, in seq order
	var xip []int64
	byID := map[string]*bridge.Delivery{}
	next := after
	err = db.readTx(ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(pg_current_snapshot()) x)`).QueryRow(func(row pgx.Row) error {
			return row.Scan(&xip)
		})
		b.Queue(`SELECT c.seq, c.delivery_id::text FROM (`+changed+`) c`, after, prev, limit).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var seq int64
				var id string
				if err := rows.Scan(&seq, &id); err != nil {
					return err
				}
				next = max(next, seq)
				order = append(order, id)
			}
			return rows.Err()
		})
		b.Queue(`SELECT `+deliveryColumns+`, `+inFlightColumn+` FROM deliveries
			WHERE id IN (SELECT delivery_id FROM (`+changed+`) c)`, after, prev, limit).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var inFlight bool
				d, err := scanDelivery(rows, &inFlight)
				if err != nil {
					return err
				}
				if inFlight {
					d.State = bridge.InFlight
				}
				byID[d.ID] = d
			}
			return rows.Err()
		})
	})
	if err != nil {
		return nil, pos, db.fail(ctx, "changes feed", err)
	}
	// Each delivery once, at its latest change; one deleted since
	// (retention) is left out.
	last := map[string]int{}
	for i, id := range order {
		last[id] = i
	}
	var out []bridge.Delivery
	for i, id := range order {
		if d := byID[id]; d != nil && last[id] == i {
			out = append(out, *d)
		}
	}
	// Every change up to next that this snapshot could see was read; the
	// ones it could not are of the transactions it saw running.
	return out, feedPos(next, xip), nil
}

// pruneFeed deletes the changes older than the feed keeps, and the event
// counts' time buckets past their horizon (best effort, without waiting
// for the disk): the sweeper calls it every feedPruneEvery.
func (db *DB) pruneFeed() {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	release, err := db.enter()
	if err != nil {
		return
	}
	defer release()
	if _, err := db.async.Exec(ctx, `DELETE FROM changes WHERE at < now() - make_interval(secs => $1)`, feedKeep.Seconds()); err != nil {
		db.log.Debug("postgres: prune the changes feed", "err", err)
	}
	if _, err := db.async.Exec(ctx, `DELETE FROM event_counts WHERE bucket < now() - make_interval(secs => $1)`, (counterHorizon + counterWidth).Seconds()); err != nil {
		db.log.Debug("postgres: prune event counts", "err", err)
	}
}
