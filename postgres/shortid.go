package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/statusbridge/statusbridge/bridge"
)

// Short ids (what listings show and people type: the end of a UUIDv7, see
// bolt/resolve.go), as the bbolt store gives them. Brought here with the
// merge of main's Backend (issue #16) into the order intake's branch, so the
// PostgreSQL store implements it: the queries scan the table's ids (no index
// on their ends yet).

// ShortEventIDs returns each event id's shortest unique end.
func (db *DB) ShortEventIDs(ctx context.Context, ids []string) (map[string]string, error) {
	return db.shortIDs(ctx, "events", ids)
}

// ShortDeliveryIDs returns each delivery id's shortest unique end.
func (db *DB) ShortDeliveryIDs(ctx context.Context, ids []string) (map[string]string, error) {
	return db.shortIDs(ctx, "deliveries", ids)
}

// ResolveEventID returns the event id that ref (a whole id, or the end of
// one of at least bridge.MinShortID hex digits, dashes optional) names:
// ErrNotFound when none does, *bridge.AmbiguousError when several do.
func (db *DB) ResolveEventID(ctx context.Context, ref string) (string, error) {
	return db.resolve(ctx, "events", "event", ref)
}

// ResolveDeliveryID is ResolveEventID for deliveries.
func (db *DB) ResolveDeliveryID(ctx context.Context, ref string) (string, error) {
	return db.resolve(ctx, "deliveries", "delivery", ref)
}

// hexID is an id without dashes, the form the ends are compared in.
const hexID = `replace(id::text, '-', '')`

func (db *DB) resolve(ctx context.Context, table, kind, ref string) (string, error) {
	want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(ref), "-", ""))
	if _, err := hex.DecodeString(want + strings.Repeat("0", len(want)%2)); err != nil || len(want) > 32 {
		return "", fmt.Errorf("%w: %s %q (ids are hex)", bridge.ErrNotFound, kind, ref)
	}
	if len(want) == 32 {
		u, _ := parseID(kind, want)
		return fmt.Sprintf("%x-%x-%x-%x-%x", u.Bytes[0:4], u.Bytes[4:6], u.Bytes[6:8], u.Bytes[8:10], u.Bytes[10:16]), nil
	}
	if len(want) < bridge.MinShortID {
		return "", fmt.Errorf("%w: %s %q: type at least %d characters of its id", bridge.ErrNotFound, kind, ref, bridge.MinShortID)
	}
	release, err := db.enter()
	if err != nil {
		return "", err
	}
	defer release()
	rows, err := db.pool.Query(ctx, `SELECT id::text FROM `+table+` WHERE right(`+hexID+`, $2) = $1 ORDER BY id LIMIT 10`, want, len(want))
	if err != nil {
		return "", db.fail(ctx, "resolve "+kind+" "+ref, err)
	}
	var found []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return "", db.fail(ctx, "resolve "+kind+" "+ref, err)
		}
		found = append(found, id)
	}
	if err := rows.Err(); err != nil {
		return "", db.fail(ctx, "resolve "+kind+" "+ref, err)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no %s id ends with %q", bridge.ErrNotFound, kind, ref)
	case 1:
		return found[0], nil
	}
	return "", &bridge.AmbiguousError{Ref: ref, Candidates: found}
}

// shortIDs finds, among the table's ids ending with the same MinShortID hex
// digits as one of ids, how many trailing digits tell each id apart.
func (db *DB) shortIDs(ctx context.Context, table string, list []string) (map[string]string, error) {
	out := make(map[string]string, len(list))
	byTail := map[string][]string{}
	for _, id := range list {
		h := strings.ReplaceAll(strings.ToLower(id), "-", "")
		if len(h) != 32 {
			continue
		}
		byTail[h[32-bridge.MinShortID:]] = append(byTail[h[32-bridge.MinShortID:]], h)
		out[id] = h[32-bridge.MinShortID:]
	}
	if len(byTail) == 0 {
		return out, nil
	}
	tails := make([]string, 0, len(byTail))
	for t := range byTail {
		tails = append(tails, t)
	}
	release, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	rows, err := db.pool.Query(ctx, `SELECT `+hexID+` FROM `+table+` WHERE right(`+hexID+`, $2) = ANY($1)`, tails, bridge.MinShortID)
	if err != nil {
		return nil, db.fail(ctx, "short ids", err)
	}
	need := map[string]int{}
	for rows.Next() {
		var other string
		if err := rows.Scan(&other); err != nil {
			rows.Close()
			return nil, db.fail(ctx, "short ids", err)
		}
		for _, h := range byTail[other[32-bridge.MinShortID:]] {
			if h != other {
				need[h] = max(need[h], commonTail(h, other)+1)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(ctx, "short ids", err)
	}
	for _, id := range list {
		h := strings.ReplaceAll(strings.ToLower(id), "-", "")
		if n := need[h]; n > bridge.MinShortID && len(h) == 32 {
			out[id] = h[32-min(n, 32):]
		}
	}
	return out, nil
}

// commonTail counts the hex digits two ids end with in common.
func commonTail(a, b string) int {
	n := 0
	for i, j := len(a)-1, len(b)-1; i >= 0 && j >= 0 && a[i] == b[j]; i, j = i-1, j-1 {
		n++
	}
	return n
}
