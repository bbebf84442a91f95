package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
)

// logTo returns a logger writing text lines to buf.
func logTo(buf *fake.LogBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func ingest(t *testing.T, b bridge.Backend, u fake.Update) bridge.IngestResult {
	t.Helper()
	res, err := bridge.Ingest(context.Background(), b, backendtest.Incoming(t, u.Payload()), backendtest.Table(t, "k"))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// waitWake waits up to d for a wake.
func waitWake(db *DB, d time.Duration) bool {
	select {
	case <-db.Wake():
		return true
	case <-time.After(d):
		return false
	}
}

func drainWake(db *DB) {
	select {
	case <-db.Wake():
	default:
	}
}

// Three replicas starting at once on an empty database: the schema is
// migrated once, and all three open.
func TestMigrationsAppliedOnceByConcurrentOpens(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var logs [3]fake.LogBuffer
	dbs := make([]*DB, 3)
	errs := make([]error, 3)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			dbs[i], errs[i] = Open(context.Background(), Options{DSN: dsn, Logger: logTo(&logs[i])})
		}()
	}
	close(start)
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	var rows, version int
	if err := dbs[0].pool.QueryRow(context.Background(), "SELECT count(*), max(version) FROM schema_version").Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	if rows != len(ms) || version != len(ms) {
		t.Errorf("schema_version: %d rows up to %d, want %d", rows, version, len(ms))
	}
	migrated := 0
	for i := range 3 {
		migrated += strings.Count(logs[i].String(), "schema migrated")
		if strings.Contains(logs[i].String(), "synchronous_commit") {
			t.Errorf("warned about synchronous_commit with it on: %s", logs[i].String())
		}
	}
	if migrated != len(ms) {
		t.Errorf("%d migrations logged by three replicas, want %d (each applied once)", migrated, len(ms))
	}
	// All three work on the same tables.
	res := ingest(t, dbs[1], fake.Update{TicketID: "t", OrderID: "1", StatusID: backendtest.Confirmed})
	if _, _, err := dbs[2].GetEvent(context.Background(), res.EventID); err != nil {
		t.Errorf("an event stored by one replica is not seen by another: %v", err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := openDSN(t, dsn, Options{})
	if _, err := db.pool.Exec(context.Background(), "INSERT INTO schema_version (version, name) VALUES (99, '0099_future.sql')"); err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	_, err := Open(context.Background(), Options{DSN: dsn})
	want := fmt.Sprintf("the database schema is version 99, this binary knows up to %d: upgrade statusbridge", len(ms))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open on a newer schema = %v, want %q", err, want)
	}
}

// Two schemas of one database are two stores.
func TestSchemasAreSeparate(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openDSN(t, dsn, Options{Schema: "tenant_a", SweepInterval: time.Hour})
	b := openDSN(t, dsn, Options{Schema: `Odd "Schema"`, SweepInterval: time.Hour})
	if !waitWake(b, 10*time.Second) { // the listener connected
		t.Fatal("no first wake: the listener did not connect")
	}
	ingest(t, a, fake.Update{TicketID: "t", OrderID: "1", StatusID: backendtest.Confirmed})
	if st, err := b.Stats(context.Background()); err != nil || st.Events != 0 {
		t.Errorf("the other schema's stats = %+v, %v; want nothing", st, err)
	}
	if st, err := a.Stats(context.Background()); err != nil || st.Events != 1 {
		t.Errorf("stats = %+v, %v; want 1 event", st, err)
	}
	if waitWake(b, 500*time.Millisecond) {
		t.Error("a commit in one schema woke the other schema's worker")
	}
}

// An outage: calls fail fast with ErrUnavailable and Ping says so; once
// the server is back the same DB works again, nothing acknowledged was
// lost (the server crashed: recovery from its WAL), and the listener is
// back.
func TestOutage(t *testing.T) {
	srv := pgtest.Start(t)
	var logs fake.LogBuffer
	db := openDSN(t, srv.DSN(), Options{Logger: logTo(&logs)})
	other := openDSN(t, srv.DSN(), Options{SweepInterval: time.Hour})
	ctx := context.Background()
	tb := backendtest.Table(t, "k")

	// Acknowledged ingests, concurrent, then a crash.
	var acked []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := bridge.Ingest(ctx, db, backendtest.Incoming(t, fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i),
				StatusID: backendtest.Confirmed}.Payload()), tb)
			if err != nil {
				t.Errorf("ingest %d: %v", i, err)
				return
			}
			mu.Lock()
			acked = append(acked, res.EventID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := srv.Crash(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err := bridge.Ingest(ctx, db, backendtest.Incoming(t, fake.Update{TicketID: "down", OrderID: "x", StatusID: backendtest.Confirmed}.Payload()), tb)
	if !errors.Is(err, bridge.ErrUnavailable) {
		t.Errorf("Ingest with the database down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Ingest with the database down took %s", d)
	}
	if err := db.Ping(ctx); !errors.Is(err, bridge.ErrUnavailable) {
		t.Errorf("Ping with the database down = %v, want ErrUnavailable", err)
	}
	if _, _, err := db.ListEvents(ctx, bridge.EventFilter{}); !errors.Is(err, bridge.ErrUnavailable) {
		t.Errorf("ListEvents with the database down = %v, want ErrUnavailable", err)
	}
	if _, err := db.PendingAfter(ctx, "", 10); !errors.Is(err, bridge.ErrUnavailable) {
		t.Errorf("PendingAfter with the database down = %v, want ErrUnavailable", err)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	drainWake(other)
	if err := db.Ping(ctx); err != nil {
		t.Errorf("Ping after the restart: %v", err)
	}
	res, err := bridge.Ingest(ctx, db, backendtest.Incoming(t, fake.Update{TicketID: "up", OrderID: "y", StatusID: backendtest.Confirmed}.Payload()), tb)
	if err != nil || res.State != bridge.EventDispatched {
		t.Fatalf("Ingest after the restart = %+v, %v", res, err)
	}
	for _, id := range acked {
		if _, _, err := db.GetEvent(ctx, id); err != nil {
			t.Errorf("acknowledged event %s lost in the crash: %v", id, err)
		}
	}
	if st, err := db.Stats(ctx); err != nil || st.Events != len(acked)+1 {
		t.Errorf("stats after the restart = %+v, %v; want %d events", st, err, len(acked)+1)
	}
	// The other replica's listener reconnects (and wakes its worker then:
	// notifications may have been missed), then hears this one's commits.
	if !waitWake(other, 20*time.Second) {
		t.Fatal("the other replica's listener did not reconnect")
	}
	drainWake(other)
	ingest(t, db, fake.Update{TicketID: "after", OrderID: "z", StatusID: backendtest.Confirmed})
	if !waitWake(other, 10*time.Second) {
		t.Error("after the restart, a commit did not wake the other replica")
	}
	if strings.Contains(logs.String(), "postgres://") {
		t.Errorf("the DSN was logged: %s", logs.String())
	}
}

// Two replicas receiving the same update at once store it once: both
// answer the same event id, one of them as a duplicate.
func TestTwoReplicasSameUpdate(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})
	tb := backendtest.Table(t, "k")
	const n = 20
	for i := range n {
		raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i % 3), StatusID: backendtest.Confirmed,
			DateStatus: fmt.Sprintf("2026-01-13 10:00:%02d", i)}.Payload()
		var res [2]bridge.IngestResult
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for j, db := range []*DB{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res[j], errs[j] = bridge.Ingest(context.Background(), db, backendtest.Incoming(t, raw), tb)
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("update %d: %v, %v", i, errs[0], errs[1])
		}
		if res[0].EventID != res[1].EventID || res[0].Duplicate == res[1].Duplicate {
			t.Errorf("update %d: %+v and %+v, want the same event, one duplicate", i, res[0], res[1])
		}
	}
	if st, err := a.Stats(context.Background()); err != nil || st.Events != n {
		t.Errorf("stats = %+v, %v; want %d events", st, err, n)
	}
}

// Two updates of one order at two replicas at once are decided one after
// the other: the newer status ends in force whichever commits first, and
// the older is either superseded or sent before it.
func TestTwoReplicasSameOrder(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})
	tb := backendtest.Table(t, "k")
	ctx := context.Background()
	var superseded, both int
	for i := range 30 {
		order := fmt.Sprint("o", i)
		older := fake.Update{TicketID: "a" + order, OrderID: order, StatusID: backendtest.Confirmed, DateStatus: "2026-01-13 10:00:00"}.Payload()
		newer := fake.Update{TicketID: "b" + order, OrderID: order, StatusID: backendtest.Awaiting, DateStatus: "2026-01-13 11:00:00"}.Payload()
		var ra, rb bridge.IngestResult
		var ea, eb error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); <-start; ra, ea = bridge.Ingest(ctx, a, backendtest.Incoming(t, older), tb) }()
		go func() { defer wg.Done(); <-start; rb, eb = bridge.Ingest(ctx, b, backendtest.Incoming(t, newer), tb) }()
		close(start)
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("order %s: %v, %v", order, ea, eb)
		}
		if rb.State != bridge.EventDispatched {
			t.Errorf("order %s: the newer update %s, want dispatched", order, rb.State)
		}
		switch ra.State {
		case bridge.EventSuperseded:
			superseded++
		case bridge.EventDispatched:
			both++
		default:
			t.Errorf("order %s: the older update %s", order, ra.State)
		}
		var st bridge.OrderState
		if err := a.View(ctx, func(tx bridge.Tx) error {
			var err error
			st, err = tx.OrderState(order)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if ts := st.Targets["expertsender"]; !st.Watermark.Equal(time.Date(2026, 1, 13, 11, 0, 0, 0, time.UTC)) ||
			ts.Status != "placed" || ts.DeliveryID != rb.Deliveries[0].ID {
			t.Errorf("order %s: state %+v, want the newer update's (11:00, placed, %s)", order, st, rb.Deliveries[0].ID)
		}
		if ra.State == bridge.EventDispatched { // decided first: its delivery goes first in the lane
			d := rb.Deliveries[0]
			if err := a.Claim(ctx, &d, false); !errors.Is(err, bridge.ErrClaimRefused) {
				t.Errorf("order %s: the newer delivery was claimable before the older one: %v", order, err)
			}
		}
	}
	t.Logf("older update superseded %d times, sent first %d times", superseded, both)
}

func TestClaimsAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openDSN(t, dsn, Options{Name: "replica-a", ClaimLease: 500 * time.Millisecond})
	b := openDSN(t, dsn, Options{Name: "replica-b"})
	ctx := context.Background()
	first := ingest(t, a, fake.Update{TicketID: "t1", OrderID: "1", StatusID: backendtest.Confirmed, DateStatus: "2026-01-13 10:00:00"})
	second := ingest(t, a, fake.Update{TicketID: "t2", OrderID: "1", StatusID: backendtest.Awaiting, DateStatus: "2026-01-13 11:00:00"})
	d1, d2 := first.Deliveries[0], second.Deliveries[0]

	// Only the oldest unfinished delivery of a lane can be claimed.
	err := b.Claim(ctx, &d2, false)
	if !errors.Is(err, bridge.ErrClaimRefused) || !strings.Contains(err.Error(), "older") {
		t.Errorf("claim of the second delivery of a lane = %v, want refused: an older one waits", err)
	}
	// A delivery claimed by A is refused to B, and shown in flight to both.
	if err := a.Claim(ctx, &d1, false); err != nil {
		t.Fatal(err)
	}
	err = b.Claim(ctx, &d1, false)
	if !errors.Is(err, bridge.ErrClaimRefused) || !strings.Contains(err.Error(), "replica-a") {
		t.Errorf("B's claim of A's delivery = %v, want refused: replica-a sends it", err)
	}
	for _, db := range []*DB{a, b} {
		if d, err := db.GetDelivery(ctx, d1.ID); err != nil || d.State != bridge.InFlight {
			t.Errorf("%s sees the claimed delivery %v, %v; want in_flight", db.Name(), d, err)
		}
	}
	// Another sender's live claim makes the delivery wait for the lease.
	p, err := b.PendingAfter(ctx, "", 10)
	if err != nil || len(p) != 2 || p[0].ID != d1.ID || p[0].NextAttemptAt.IsZero() {
		t.Errorf("B's PendingAfter = %+v, %v; want A's delivery first, due when its lease ends", p, err)
	}
	// A's lease lapses (A died): B takes it over.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = b.Claim(ctx, &d1, false)
		if err == nil {
			break
		}
		if !errors.Is(err, bridge.ErrClaimRefused) || time.Now().After(deadline) {
			t.Fatalf("B's claim after A's lease = %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the lease's end, which the database decides
	}
	if err := a.Claim(ctx, &d1, false); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Errorf("A's claim of a delivery B took over = %v, want refused", err)
	}
	// Recorded, the claim is gone and the lane's next one can be claimed.
	if err := b.Record(ctx, d1.ID, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{StatusCode: 200}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := a.Claim(ctx, &d2, true); err != nil {
		t.Errorf("claim of the lane's next delivery after the first was done: %v", err)
	}
	// Release gives it back at once.
	if err := a.Release(ctx, d2.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(ctx, &d2, false); err != nil {
		t.Errorf("claim of a released delivery: %v", err)
	}
}

// A delivery whose transaction took its seq first and committed last is
// still returned after a cursor that passed it.
func TestPendingAfterLateCommit(t *testing.T) {
	db, _ := openTemp(t, Options{})
	ctx := context.Background()
	id, _ := bridge.NewID()
	ev, _ := bridge.NewID()
	late := bridge.Delivery{ID: id, EventID: ev, OrderID: "late", Target: "expertsender", Status: "paid", State: bridge.Pending,
		CreatedAt: time.Now(), UpdatedAt: time.Now()}
	inserted, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Update(ctx, bridge.UpdateOptions{Wake: true}, func(tx bridge.Tx) error {
			if err := tx.PutDelivery(&late); err != nil {
				return err
			}
			if _, err := tx.Delivery(late.ID); err != nil { // sends the insert: its seq is taken
				return err
			}
			select {
			case <-inserted: // a second run: already told
			default:
				close(inserted)
			}
			<-release
			return nil
		})
	}()
	select {
	case <-inserted:
	case err := <-done:
		t.Fatalf("the slow transaction ended early: %v", err)
	}
	early := ingest(t, db, fake.Update{TicketID: "t", OrderID: "early", StatusID: backendtest.Confirmed})
	p, err := db.PendingAfter(ctx, "", 10)
	if err != nil || len(p) != 1 || p[0].ID != early.Deliveries[0].ID {
		t.Fatalf("PendingAfter with the slow transaction open = %+v, %v; want only %s", p, err, early.Deliveries[0].ID)
	}
	cursor := p[0].ID
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p, err = db.PendingAfter(ctx, cursor, 10)
	if err != nil || len(p) != 1 || p[0].ID != late.ID {
		t.Fatalf("PendingAfter(cursor) after the late commit = %+v, %v; want the late delivery %s", p, err, late.ID)
	}
	if p, err := db.PendingAfter(ctx, p[0].ID, 10); err != nil || len(p) != 0 {
		t.Errorf("PendingAfter past everything = %+v, %v; want nothing", p, err)
	}
	// A cursor this DB never returned reads from the start.
	if p, err := db.PendingAfter(ctx, "01a20000-0000-7000-8000-000000000000", 10); err != nil || len(p) != 2 {
		t.Errorf("PendingAfter(unknown cursor) = %d deliveries, %v; want all 2", len(p), err)
	}
}

// A commit at one replica wakes the others' workers through NOTIFY.
func TestWakeFromOtherReplica(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openDSN(t, dsn, Options{SweepInterval: time.Hour})
	b := openDSN(t, dsn, Options{SweepInterval: time.Hour})
	// b's listener is connected once it has signalled its first wake.
	if !waitWake(b, 10*time.Second) {
		t.Fatal("no first wake: the listener did not connect")
	}
	drainWake(b)
	ingest(t, a, fake.Update{TicketID: "t", OrderID: "1", StatusID: backendtest.Confirmed})
	if !waitWake(b, 10*time.Second) {
		t.Error("a commit at another replica did not wake this one")
	}
	// A read-only commit wakes nobody.
	drainWake(b)
	if err := a.View(context.Background(), func(bridge.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if waitWake(b, 300*time.Millisecond) {
		t.Error("a read woke the other replica")
	}
}

// The sweep wakes the worker every SweepInterval.
func TestSweepWakes(t *testing.T) {
	db, _ := openTemp(t, Options{SweepInterval: 100 * time.Millisecond})
	for range 3 {
		drainWake(db)
		if !waitWake(db, 5*time.Second) {
			t.Fatal("no wake from the sweep")
		}
	}
}

func TestPasswordNeverShown(t *testing.T) {
	const pw = "s3cr3t-Pw-4711"
	srv := pgtest.Shared(t)
	var logs fake.LogBuffer
	cases := map[string]string{
		"nothing listens":  fmt.Sprintf("postgres://postgres:%s@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", pw),
		"no such database": fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/nosuchdb?sslmode=disable", pw, srv.Port()),
		"malformed":        fmt.Sprintf("postgres://postgres:%s@127.0.0.1:notaport/db", pw),
		"key=value":        fmt.Sprintf("host=127.0.0.1 port=1 user=postgres password='%s' connect_timeout=2", pw),
	}
	for name, dsn := range cases {
		_, err := Open(context.Background(), Options{DSN: dsn, Logger: logTo(&logs)})
		if err == nil {
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("%s: the password is in the error: %v", name, err)
		}
		if name == "nothing listens" && !errors.Is(err, bridge.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
	// A working DSN with a password (the test server trusts any) and an outage.
	db := openDSN(t, strings.Replace(pgtest.NewDatabase(t), "postgres@", "postgres:"+pw+"@", 1), Options{Logger: logTo(&logs)})
	if _, err := db.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), pw) {
		t.Errorf("the password is in the log: %s", logs.String())
	}
}

func TestWarnsWhenCommitsAreNotDurable(t *testing.T) {
	srv := pgtest.Start(t, pgtest.NoSync())
	var logs fake.LogBuffer
	openDSN(t, srv.DSN(), Options{Logger: logTo(&logs)})
	if !strings.Contains(logs.String(), "synchronous_commit is off: an acknowledged webhook could be lost") {
		t.Errorf("no warning about synchronous_commit off: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "fsync is off") {
		t.Errorf("no warning about fsync off: %s", logs.String())
	}
}

// Strings PostgreSQL's text cannot hold (a NUL, invalid UTF-8) are stored
// with U+FFFD instead of failing the webhook; the payload is kept byte for
// byte.
func TestUnstorableTextIsReplaced(t *testing.T) {
	db, _ := openTemp(t, Options{})
	raw := fake.Update{TicketID: "t\u0000x", OrderID: "A\u0000B", StatusID: backendtest.Confirmed}.Payload()
	res, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, raw), backendtest.Table(t, "k"))
	if err != nil {
		t.Fatal(err)
	}
	ev, payload, err := db.GetEvent(context.Background(), res.EventID)
	if err != nil || ev.OrderID != "A\uFFFDB" || ev.TicketID != "t\uFFFDx" || !bytes.Equal(payload, raw) {
		t.Errorf("event = %+v, %v; payload kept: %v", ev, err, bytes.Equal(payload, raw))
	}
	d := res.Deliveries[0]
	err = db.Record(context.Background(), d.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "bad \xff\x00 answer",
		Attempt: &bridge.Attempt{StatusCode: 400, Excerpt: "{\"e\":\"\u0000\"}", Error: "x\x00y"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.GetDelivery(context.Background(), d.ID)
	if err != nil || got.Reason != "bad \uFFFD\uFFFD answer" || got.Attempts[0].Excerpt != "{\"e\":\"\uFFFD\"}" || got.Attempts[0].Error != "x\uFFFDy" {
		t.Errorf("delivery = %+v, %v", got, err)
	}
}

// Past QueueSize ingests in flight, more are refused at once (503), and
// every acknowledged one is stored.
func TestOverloadRefusesAndStoresWhatItAcks(t *testing.T) {
	db, _ := openTemp(t, Options{QueueSize: 2, MaxConns: 2})
	tb := backendtest.Table(t, "k")
	var mu sync.Mutex
	var acked []string
	refused := 0
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i),
				StatusID: backendtest.Confirmed}.Payload()), tb)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				acked = append(acked, r.EventID)
			case errors.Is(err, bridge.ErrOverloaded):
				refused++
			default:
				t.Errorf("ingest: %v", err)
			}
		}()
	}
	wg.Wait()
	if refused == 0 {
		t.Error("60 simultaneous ingests with a queue of 2: none refused")
	}
	if st, err := db.Stats(context.Background()); err != nil || st.Events != len(acked) {
		t.Errorf("%d events stored (%v), %d acknowledged", st.Events, err, len(acked))
	}
	if db.Busy() {
		t.Error("Busy with nothing in flight")
	}
}

// Records committed together fail alone: an unknown delivery fails its own
// record only.
func TestRecordsFailAlone(t *testing.T) {
	db, _ := openTemp(t, Options{})
	a := ingest(t, db, fake.Update{TicketID: "a", OrderID: "1", StatusID: backendtest.Confirmed})
	b := ingest(t, db, fake.Update{TicketID: "b", OrderID: "2", StatusID: backendtest.Confirmed})
	results := make(chan error, 3)
	for _, id := range []string{a.Deliveries[0].ID, "01a20000-0000-7000-8000-000000000000", b.Deliveries[0].ID} {
		if err := db.RecordAsync(context.Background(), id, bridge.AttemptResult{State: bridge.Done}, time.Now(), func(err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	notFound, ok := 0, 0
	for range 3 {
		select {
		case err := <-results:
			switch {
			case err == nil:
				ok++
			case errors.Is(err, bridge.ErrNotFound):
				notFound++
			default:
				t.Errorf("record: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a record's done was never called")
		}
	}
	if ok != 2 || notFound != 1 {
		t.Errorf("%d recorded, %d not found; want 2 and 1", ok, notFound)
	}
	for _, id := range []string{a.Deliveries[0].ID, b.Deliveries[0].ID} {
		if d, err := db.GetDelivery(context.Background(), id); err != nil || d.State != bridge.Done {
			t.Errorf("delivery %s: %+v, %v", id, d, err)
		}
	}
}

// An ingest the database holds (here: its order locked by another session)
// fails within IngestTimeout with ErrUnavailable.
func TestIngestTimeout(t *testing.T) {
	db, _ := openTemp(t, Options{IngestTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	conn, err := db.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", db.lockKey, "7"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = bridge.Ingest(ctx, db, backendtest.Incoming(t, fake.Update{TicketID: "t", OrderID: "7", StatusID: backendtest.Confirmed}.Payload()),
		backendtest.Table(t, "k"))
	if !errors.Is(err, bridge.ErrUnavailable) {
		t.Errorf("Ingest of a locked order = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Ingest took %s", d)
	}
	// Another order is not held up, and the same one goes once unlocked.
	ingest(t, db, fake.Update{TicketID: "u", OrderID: "8", StatusID: backendtest.Confirmed})
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", db.lockKey, "7"); err != nil {
		t.Fatal(err)
	}
	if r := ingest(t, db, fake.Update{TicketID: "t", OrderID: "7", StatusID: backendtest.Confirmed}); r.Duplicate || r.State != bridge.EventDispatched {
		t.Errorf("after the unlock: %+v", r)
	}
}

// Claims made at once (one statement for several) are each answered: the
// first of each lane claimed, the second refused.
func TestConcurrentClaims(t *testing.T) {
	db, _ := openTemp(t, Options{})
	var first, second []bridge.Delivery
	for i := range 6 {
		order := fmt.Sprint(i)
		first = append(first, ingest(t, db, fake.Update{TicketID: "a" + order, OrderID: order, StatusID: backendtest.Confirmed, DateStatus: "2026-01-13 10:00:00"}).Deliveries[0])
		second = append(second, ingest(t, db, fake.Update{TicketID: "b" + order, OrderID: order, StatusID: backendtest.Awaiting, DateStatus: "2026-01-13 11:00:00"}).Deliveries[0])
	}
	all := append(append([]bridge.Delivery{}, first...), second...)
	errs := make([]error, len(all))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = db.Claim(context.Background(), &all[i], false)
		}()
	}
	close(start)
	wg.Wait()
	for i := range first {
		if errs[i] != nil {
			t.Errorf("claim of the first delivery of order %d: %v", i, errs[i])
		}
		if err := errs[len(first)+i]; !errors.Is(err, bridge.ErrClaimRefused) || !strings.Contains(err.Error(), second[i].ID) {
			t.Errorf("claim of the second delivery of order %d = %v, want refused, naming it", i, err)
		}
	}
}

func TestAdvisoryKeyAndChannel(t *testing.T) {
	db, _ := openTemp(t, Options{})
	other, _ := openTemp(t, Options{Schema: "other"})
	c1, o1 := db.AdvisoryKey("sender")
	if c2, o2 := other.AdvisoryKey("sender"); c1 == c2 && o1 == o2 {
		t.Error("two schemas got the same sender key")
	}
	if c2, _ := db.AdvisoryKey("other"); c1 == c2 {
		t.Error("two names got the same key")
	}
	if c1 == db.lockKey || c1 == lockMigrate {
		t.Error("the key is one the store takes itself")
	}
	for _, schema := range []string{"statusbridge", strings.Repeat("s", 63), strings.Repeat("é", 31)} {
		if ch := channelName(schema); len(ch) > 63 || !utf8.ValidString(ch) {
			t.Errorf("channelName(%q) = %q: not a PostgreSQL identifier", schema, ch)
		}
	}
	if channelName(strings.Repeat("a", 62)+"b") == channelName(strings.Repeat("a", 62)+"c") {
		t.Error("two long schemas share a channel")
	}
}
