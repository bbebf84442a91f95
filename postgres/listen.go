package postgres

import (
	"context"
	"time"
)

// A commit that may queue deliveries wakes this process's worker at once
// (Update signals Wake) and the other replicas' through NOTIFY on the
// schema's channel, sent by one goroutine after the commit, coalesced: one
// NOTIFY covers every commit made while the previous one was being sent.
//
// Not NOTIFY inside the transaction: PostgreSQL serialises the commits of
// notifying transactions (a lock held until the commit is flushed), which
// undoes its group commit: BenchmarkIngest ran at a third to a half of the
// rate with NOTIFY in each ingest's transaction. A replica that dies between its commit and its
// NOTIFY leaves the others to find the delivery at their next sweep.

// requestNotify asks the notifier to send one NOTIFY (without blocking).
func (db *DB) requestNotify() {
	select {
	case db.notifyCh <- struct{}{}:
	default:
	}
}

// notifyGap is the least time between two NOTIFYs of this process: the
// commits of a busy replica share one, and a listener is woken at most a few
// hundred times a second however fast they come.
const notifyGap = 5 * time.Millisecond

// notifier sends the requested NOTIFYs until Close (and the last one
// requested before it).
func (db *DB) notifier() {
	defer db.bg.Done()
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-db.notifyCh:
			db.sendNotify()
			gap.Reset(notifyGap)
			select {
			case <-gap.C:
			case <-db.stop:
			}
		case <-db.stop:
			select {
			case <-db.notifyCh:
				db.sendNotify()
			default:
			}
			return
		}
	}
}

func (db *DB) sendNotify() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The payload names the sender, whose own listener ignores it. A NOTIFY
	// commits a transaction: it need not wait for the disk.
	if _, err := db.async.Exec(ctx, "SELECT pg_notify($1, $2)", db.channel, db.opts.Name); err != nil {
		db.log.Debug("postgres: notify other replicas (they will find the deliveries at their next sweep)",
			"err", db.fail(ctx, "notify", err))
	}
}

// sweeper signals Wake every SweepInterval.
func (db *DB) sweeper() {
	defer db.bg.Done()
	t := time.NewTicker(db.opts.SweepInterval)
	defer t.Stop()
	pruned := time.Now()
	for {
		select {
		case <-t.C:
			db.signal()
			if time.Since(pruned) >= feedPruneEvery {
				pruned = time.Now()
				db.pruneFeed()
			}
		case <-db.stop:
			return
		}
	}
}

// listen holds a dedicated connection LISTENing on the schema's channel and
// signals Wake for each other replica's notification. When the connection
// is lost it reconnects (after 1 s, doubling up to SweepInterval), and
// signals Wake once connected again: notifications sent meanwhile are lost.
func (db *DB) listen() {
	defer db.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-db.stop
		cancel()
	}()
	backoff := time.Second
	lost := false
	for {
		err := db.listenOnce(ctx, func() {
			if lost {
				db.log.Info("postgres: listening for other replicas' deliveries again", "channel", db.channel)
				lost = false
			}
			backoff = time.Second
			db.signal()
		})
		if ctx.Err() != nil {
			return
		}
		if !lost {
			db.log.Warn("postgres: not listening for other replicas' deliveries; reconnecting (they are still found at each sweep)",
				"channel", db.channel, "err", err)
			lost = true
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, max(db.opts.SweepInterval, time.Second))
	}
}

// listenOnce connects, listens and waits for notifications until the
// connection fails or ctx ends; connected is called once listening.
func (db *DB) listenOnce(ctx context.Context, connected func()) error {
	cctx, cancel := context.WithTimeout(ctx, db.connCfg.ConnectTimeout+5*time.Second)
	conn, err := db.Connect(cctx)
	if err != nil {
		cancel()
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(cctx, "LISTEN "+quoteIdent(db.channel))
	cancel()
	if err != nil {
		return db.fail(ctx, "listen", err)
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return db.fail(ctx, "wait for notifications", err)
		}
		if n.Payload != db.opts.Name {
			db.signal()
		}
	}
}
