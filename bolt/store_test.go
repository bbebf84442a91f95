package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/internal/fake"
	bbolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	content := bytes.Repeat([]byte("not a database "), 1000)
	if err := os.WriteFile(junk, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, Options{}); !errors.Is(err, ErrForeign) {
		t.Errorf("Open(junk) = %v, want ErrForeign", err)
	}
	if got, _ := os.ReadFile(junk); !bytes.Equal(got, content) {
		t.Error("a foreign file was modified")
	}
	tiny := filepath.Join(dir, "tiny.db")
	if err := os.WriteFile(tiny, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(tiny, Options{}); !errors.Is(err, ErrForeign) {
		t.Errorf("Open(tiny junk) = %v, want ErrForeign", err)
	}
	if got, _ := os.ReadFile(tiny); string(got) != "hello" {
		t.Error("a tiny foreign file was modified")
	}
	other := filepath.Join(dir, "other.db")
	bdb, err := bbolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = bdb.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("someone-else")); return err })
	_ = bdb.Close()
	if _, err := Open(other, Options{}); !errors.Is(err, ErrForeign) {
		t.Errorf("Open(other app's bbolt) = %v, want ErrForeign", err)
	}
}

func TestOpenLockedFails(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("lock timeout not honoured")
	}
}

func TestListEventsScanCapKeepsPaging(t *testing.T) {
	db, _ := openTemp(t)
	tb := backendtest.Table(t, "k")
	want := map[string]bool{}
	for i := range 20 {
		r, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i % 4), StatusID: backendtest.Confirmed,
			DateStatus: fmt.Sprintf("2026-01-13 10:00:%02d", i)}.Payload()), tb)
		if err != nil {
			t.Fatal(err)
		}
		if i%4 == 1 {
			want[r.EventID] = true
		}
	}
	defer func(old int) { maxScan = old }(maxScan)
	maxScan = 3 // each page examines 3 records: most pages come back short
	got := map[string]bool{}
	cursor, pages := "", 0
	for ; pages < 50; pages++ {
		evs, next, err := db.ListEvents(context.Background(), bridge.EventFilter{OrderID: "1", Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if got[ev.ID] {
				t.Errorf("event %s returned twice", ev.ID)
			}
			got[ev.ID] = true
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(want) {
		t.Errorf("paged %d events of order 1 in %d pages, want %d", len(got), pages, len(want))
	}
	for id := range want {
		if !got[id] {
			t.Errorf("missing %s", id)
		}
	}
}

func TestOverloadRefusesFastAndStoresWhatItAcks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{QueueSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	tb := backendtest.Table(t, "k")
	const n = 400
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked, refused := []string{}, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: backendtest.Confirmed}.Payload()), tb)
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
		t.Error("400 simultaneous ingests with a queue of 4: none refused")
	}
	for _, id := range acked {
		if _, _, err := db.GetEvent(context.Background(), id); err != nil {
			t.Errorf("acknowledged %s not stored: %v", id, err)
		}
	}
	if st, _ := db.Stats(context.Background()); st.Events != len(acked) {
		t.Errorf("%d events stored, %d acknowledged", st.Events, len(acked))
	}
	if db.Busy() {
		t.Error("Busy with nothing queued")
	}
	_ = db.Close()
}

// TestCommitStatsSplitTheCommittersTime: a commit's stats say where the
// committer's time went: waiting for a first write, for an ingest to share
// the commit with a delivery record, running the writes, syncing; the parts
// never add up to more than the time between two commits.
func TestCommitStatsSplitTheCommittersTime(t *testing.T) {
	type seen struct {
		st CommitStats
		at time.Time
	}
	commits := make(chan seen, 16)
	wait := make(chan struct{}, 1)
	waiting = func() { wait <- struct{}{} }
	defer func() { waiting = nil }()
	db, err := Open(filepath.Join(t.TempDir(), "sb.db"), Options{AsyncDelay: time.Hour,
		OnCommit: func(c CommitStats) { commits <- seen{c, time.Now()} }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tb := backendtest.Table(t, "k")
	res, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: "t1", OrderID: "1", StatusID: backendtest.Confirmed}.Payload()), tb)
	if err != nil {
		t.Fatal(err)
	}
	first := <-commits
	if s := first.st; s.Apply <= 0 || s.Sync <= 0 || s.Linger != 0 || s.Apply+s.Spill+s.Sync > s.Duration {
		t.Errorf("a lone ingest's commit: %+v; want apply and sync inside its duration, no linger", s)
	}
	recorded := make(chan error, 1)
	if err := db.RecordAsync(context.Background(), res.Deliveries[0].ID, bridge.AttemptResult{Attempt: &bridge.Attempt{StatusCode: 200}, State: bridge.Done}, time.Now(),
		func(err error) { recorded <- err }); err != nil {
		t.Fatal(err)
	}
	// Once the committer waits (AsyncDelay is an hour) with the record for
	// an ingest, the ingest comes.
	<-wait
	if _, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: "t2", OrderID: "2", StatusID: backendtest.Confirmed}.Payload()), tb); err != nil {
		t.Fatal(err)
	}
	second := <-commits
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	s := second.st
	if s.Writes != 2 || s.Idle <= 0 || s.Linger <= 0 || s.Apply <= 0 || s.Sync <= 0 {
		t.Errorf("record waiting for an ingest: %+v; want 2 writes, idle and linger before them, apply and sync", s)
	}
	if sum, between := s.Idle+s.Linger+s.Duration, second.at.Sub(first.at); sum > between {
		t.Errorf("idle %v + linger %v + commit %v = %v, more than the %v between the two commits", s.Idle, s.Linger, s.Duration, sum, between)
	}
}

// TestIdleIsReportedWhileItLasts: an idle committer reports its idle time as
// it goes (OnIdle), so counters built on it are current; the next commit's
// Idle holds only what was not reported, and nothing is counted twice.
func TestIdleIsReportedWhileItLasts(t *testing.T) {
	start := time.Now()
	idles := make(chan time.Duration, 64)
	commits := make(chan CommitStats, 4)
	db, err := Open(filepath.Join(t.TempDir(), "sb.db"), Options{
		OnIdle:   func(d time.Duration) { idles <- d },
		OnCommit: func(c CommitStats) { commits <- c }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var reported time.Duration
	for range 3 {
		select {
		case d := <-idles:
			if d <= 0 {
				t.Errorf("idle report of %v", d)
			}
			reported += d
		case <-time.After(10 * time.Second):
			t.Fatal("an idle committer reported nothing for 10 s")
		}
	}
	tb := backendtest.Table(t, "k")
	if _, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: "t1", OrderID: "1", StatusID: backendtest.Confirmed}.Payload()), tb); err != nil {
		t.Fatal(err)
	}
	c := <-commits
	for len(idles) > 0 {
		reported += <-idles
	}
	if total, wall := reported+c.Idle+c.Duration, time.Since(start); total > wall {
		t.Errorf("idle reported %v + the commit's idle %v + commit %v = %v, more than the %v since Open: counted twice", reported, c.Idle, c.Duration, total, wall)
	}
	if c.Idle >= reported {
		t.Errorf("the commit's idle %v holds what was reported already (%v)", c.Idle, reported)
	}
}

// A delivery record nobody waits on rides along with the next ingest's
// commit instead of taking a commit (two fsyncs) of its own; alone, it is
// committed after AsyncDelay; at Close it is committed at once.
func TestAsyncRecordsShareTheNextCommit(t *testing.T) {
	commits := make(chan int, 16)
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{AsyncDelay: time.Hour, OnCommit: func(c CommitStats) { commits <- c.Writes }})
	if err != nil {
		t.Fatal(err)
	}
	tb := backendtest.Table(t, "k")
	res, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: "t1", OrderID: "1", StatusID: backendtest.Confirmed}.Payload()), tb)
	if err != nil {
		t.Fatal(err)
	}
	if n := <-commits; n != 1 {
		t.Fatalf("first ingest: commit of %d writes", n)
	}
	recorded := make(chan error, 1)
	if err := db.RecordAsync(context.Background(), res.Deliveries[0].ID, bridge.AttemptResult{Attempt: &bridge.Attempt{StatusCode: 200}, State: bridge.Done}, time.Now(),
		func(err error) { recorded <- err }); err != nil {
		t.Fatal(err)
	}
	// The record waits (AsyncDelay is an hour) until an ingest comes.
	if _, err := bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: "t2", OrderID: "2", StatusID: backendtest.Confirmed}.Payload()), tb); err != nil {
		t.Fatal(err)
	}
	if n := <-commits; n != 2 {
		t.Errorf("record and ingest: commit of %d writes, want both in one", n)
	}
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	if d, _ := db.GetDelivery(context.Background(), res.Deliveries[0].ID); d.State != bridge.Done {
		t.Errorf("recorded delivery is %s", d.State)
	}
	// Close does not wait out the delay.
	pending, _ := db.PendingAfter(context.Background(), "", 10)
	if err := db.RecordAsync(context.Background(), pending[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "x"}, time.Now(), func(err error) { recorded <- err }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-recorded; err != nil {
		t.Fatalf("record queued at close: %v", err)
	}
	db, err = Open(path, Options{AsyncDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if p, _ := db.PendingAfter(context.Background(), "", 10); len(p) != 0 {
		t.Errorf("record queued at close was lost: %+v", p)
	}
	// Alone, a record is committed once the (short) delay has passed.
	res, err = bridge.Ingest(context.Background(), db, backendtest.Incoming(t, fake.Update{TicketID: "t3", OrderID: "3", StatusID: backendtest.Confirmed}.Payload()), tb)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RecordAsync(context.Background(), res.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done}, time.Now(), func(err error) { recorded <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recorded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lone record was never committed")
	}
}

// TestEachWalksEveryPage: the replay helpers visit every matching record
// once, across pages cut short by the scan cap.
func TestEachWalksEveryPage(t *testing.T) {
	db, _ := openTemp(t)
	tb := backendtest.Table(t, "k")
	for i := range 10 {
		backendtest.IngestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), backendtest.Confirmed, "2026-01-13 10:00:00", time.Now())
	}
	defer func(old int) { maxScan = old }(maxScan)
	maxScan = 3
	events, deliveries := map[string]int{}, map[string]int{}
	if err := bridge.EachEvent(context.Background(), db, bridge.EventFilter{}, func(ev *bridge.Event) { events[ev.ID]++ }); err != nil {
		t.Fatal(err)
	}
	if err := bridge.EachDelivery(context.Background(), db, bridge.DeliveryFilter{}, func(d *bridge.Delivery) { deliveries[d.ID]++ }); err != nil {
		t.Fatal(err)
	}
	if len(events) != 10 || len(deliveries) != 10 {
		t.Errorf("visited %d events and %d deliveries, want 10 each", len(events), len(deliveries))
	}
	for id, n := range events {
		if n != 1 {
			t.Errorf("event %s visited %d times", id, n)
		}
	}
}

// TestLingerGathersUnderLoadOnly: a commit that already holds LingerFrom
// ingests waits (at most Linger) for more, up to LingerTo; one with fewer
// commits at once.
func TestLingerGathersUnderLoadOnly(t *testing.T) {
	commits := make(chan int, 64)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	beforeCommit = func(*bbolt.Tx) { once.Do(func() { close(entered); <-release }) } // holds the first commit
	defer func() { beforeCommit = nil }()
	db, err := Open(filepath.Join(t.TempDir(), "sb.db"), Options{Linger: time.Hour, LingerFrom: 3, LingerTo: 8,
		OnCommit: func(c CommitStats) { commits <- c.Writes }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tb := testTable(t, "k")
	var wg sync.WaitGroup
	ingest := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: confirmed}.Payload()
			if _, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb); err != nil {
				t.Error(err)
			}
		}()
	}
	// A lone ingest commits at once, without lingering.
	ingest(0)
	<-entered
	waitQueued := func(n int) {
		for deadline := time.Now().Add(10 * time.Second); len(db.ingest) < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d ingests queued, want %d", len(db.ingest), n)
			}
		}
	}
	// While that commit is held, three more queue: the next commit holds
	// LingerFrom and waits for more, up to LingerTo.
	for i := 1; i <= 3; i++ {
		ingest(i)
	}
	waitQueued(3)
	close(release)
	if n := <-commits; n != 1 {
		t.Fatalf("first commit: %d writes, want the lone ingest", n)
	}
	for i := 4; i <= 8; i++ {
		ingest(i)
	}
	select {
	case n := <-commits:
		if n != 8 {
			t.Errorf("lingering commit: %d writes, want LingerTo (8)", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the lingering commit never came")
	}
	wg.Wait()
	// Below LingerFrom nothing waits (Linger is an hour here).
	done := make(chan struct{})
	go func() { ingest(9); wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a lone ingest waited for company")
	}
}

func TestCompact(t *testing.T) {
	db, path := openTemp(t)
	tb := backendtest.Table(t, "k")
	for i := range 300 {
		backendtest.IngestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), backendtest.Confirmed, "", time.Now().Add(-200*24*time.Hour))
	}
	if _, _, err := Compact(path, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("compact while open: %v, want ErrLocked", err)
	}
	pending, _ := db.PendingAfter(context.Background(), "", 1000)
	for _, d := range pending {
		_ = db.Record(context.Background(), d.ID, bridge.AttemptResult{State: bridge.Done}, time.Now())
	}
	if _, err := bridge.Sweep(context.Background(), db, time.Now()); err != nil {
		t.Fatal(err)
	}
	backendtest.IngestAt(t, db, tb, "keep", "k", backendtest.Confirmed, "", time.Now())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, after, err := Compact(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Errorf("compact: %d → %d bytes, want smaller", before, after)
	}
	db2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if st, _ := db2.Stats(context.Background()); st.Events != 1 || st.Pending != 1 {
		t.Errorf("after compact: %+v", st)
	}
}
