package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge/backendtest"
)

// TestPendingAfterMissesNothingUnderConcurrentCommits reads the outbox as
// the delivery worker does — PendingAfter from the last id it was given —
// while 32 goroutines ingest at once (commits land out of seq order), and
// checks that every delivery committed was returned by some read. Before
// the reads counted transactions at or above the snapshot's xmax as in
// progress, 3–6 of 3,000 were missed in every run (and a worker would never
// have sent them until a restart). On a miss it logs the read that skipped
// each one.
func TestPendingAfterMissesNothingUnderConcurrentCommits(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t, Options{})
	tb := backendtest.Table(t, "k")
	const n = 3000
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := map[string]bool{}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				r := backendtest.IngestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint("ORDER-", i), backendtest.Confirmed, "", time.Now())
				mu.Lock()
				committed[r.Deliveries[0].ID] = true
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[string]bool{}
	cursor := ""
	type readLog struct {
		pos   readPos
		known bool
		n     int
	}
	var reads []readLog
	read := func() {
		for {
			pos, known := db.reads.lookup(cursor)
			batch, err := db.PendingAfter(ctx, cursor, 1000)
			reads = append(reads, readLog{pos, known, len(batch)})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range batch {
				seen[d.ID] = true
				cursor = d.ID
			}
			if len(batch) < 1000 {
				return
			}
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		read()
	}
	read() // after the last commit
	missed := 0
	for id := range committed {
		if !seen[id] {
			missed++
		}
	}
	if missed > 0 {
		all, _ := db.PendingAfter(ctx, "", 10000)
		t.Errorf("%d of %d deliveries were never returned reading from the last id (a read from the start returns %d)", missed, n, len(all))
		for id := range committed {
			if seen[id] {
				continue
			}
			var seq, xid int64
			_ = db.pool.QueryRow(ctx, "SELECT seq, queued_xid FROM deliveries WHERE id = $1", id).Scan(&seq, &xid)
			t.Logf("missed %s seq %d xid %d", id, seq, xid)
			for i, r := range reads {
				if r.known && r.pos.seq >= seq && (i == 0 || reads[i-1].pos.seq < seq || !reads[i-1].known) {
					t.Logf("  read %d after seq %d, xip %v, returned %d", i, r.pos.seq, r.pos.inProgress, r.n)
				}
			}
		}
	}
}
