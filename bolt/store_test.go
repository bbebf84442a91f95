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
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/mapping"
	bbolt "go.etcd.io/bbolt"
)

const confirmed = "yqdwrbka7kz69v8e"

func testTable(t *testing.T, apiKey string) *mapping.Table {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { api_key: %q } }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid }, x9q3wrlv0m7vzea8: { name: Awaiting, expertsender: placed } } }
`, apiKey)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return mapping.New(cfg)
}

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

func incoming(t *testing.T, raw []byte) bridge.Incoming {
	t.Helper()
	ev, err := digishare.Decode(raw)
	in := bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}
	var se *digishare.ShapeError
	if errors.As(err, &se) {
		in.Invalid = se.Reason
	} else if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestIngestDispatchesAndKeepsPayload(t *testing.T) {
	db, _ := openTemp(t)
	raw := fake.Update{TicketID: "t1", OrderID: "ORDER-1", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}.Payload()
	res, err := bridge.Ingest(context.Background(), db, incoming(t, raw), testTable(t, "k"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicate || res.State != bridge.EventDispatched || len(res.Deliveries) != 1 {
		t.Fatalf("result = %+v", res)
	}
	ev, payload, err := db.GetEvent(context.Background(), res.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(payload, raw) {
		t.Error("payload not kept byte for byte")
	}
	if ev.OrderID != "1" || ev.State != bridge.EventDispatched || len(ev.Decisions) != 1 || len(ev.DeliveryIDs) != 1 {
		t.Errorf("event = %+v", ev)
	}
	pending, err := db.PendingAfter(context.Background(), "", 10)
	if err != nil || len(pending) != 1 || pending[0].Status != "paid" || pending[0].OrderID != "1" || pending[0].State != bridge.Pending {
		t.Fatalf("pending = %+v, %v", pending, err)
	}
	if more, _ := db.PendingAfter(context.Background(), pending[0].ID, 10); len(more) != 0 {
		t.Errorf("PendingAfter(last) = %v, want nothing", more)
	}
	select {
	case <-db.Wake():
	default:
		t.Error("a commit that created a delivery must wake the worker")
	}
}

func TestIngestDuplicateStoresNothing(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	raw := fake.Update{TicketID: "t1", OrderID: "1", StatusID: confirmed, DateStatus: "2026-01-13 16:29:51"}.Payload()
	first, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb)
	if err != nil {
		t.Fatal(err)
	}
	again, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.EventID != first.EventID || again.State != bridge.EventDispatched || len(again.Deliveries) != 0 {
		t.Errorf("repeat = %+v, want duplicate of %s", again, first.EventID)
	}
	st, _ := db.Stats(context.Background())
	if st.Events != 1 || st.Deliveries != 1 {
		t.Errorf("stats = %+v, want 1 event, 1 delivery", st)
	}
}

func TestIngestInvalidAndSkipped(t *testing.T) {
	db, _ := openTemp(t)
	res, err := bridge.Ingest(context.Background(), db, incoming(t, []byte(`{"event":"ticket.updated","data":{"id":5}}`)), testTable(t, "k"))
	if err != nil || res.State != bridge.EventInvalid {
		t.Fatalf("invalid: %+v, %v", res, err)
	}
	ev, _, _ := db.GetEvent(context.Background(), res.EventID)
	if ev.Error == "" || ev.State != bridge.EventInvalid {
		t.Errorf("stored invalid event = %+v", ev)
	}
	// A disabled target: the delivery is recorded as skipped, not queued.
	res, err = bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: "t", OrderID: "9", StatusID: confirmed}.Payload()), testTable(t, ""))
	if err != nil || len(res.Deliveries) != 1 || res.Deliveries[0].State != bridge.Skipped || res.Deliveries[0].Reason == "" {
		t.Fatalf("skipped: %+v, %v", res, err)
	}
	if p, _ := db.PendingAfter(context.Background(), "", 10); len(p) != 0 {
		t.Errorf("skipped delivery queued: %v", p)
	}
}

func TestIngestOrderStateAcrossEvents(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	ingest := func(ticket, status, at string) bridge.IngestResult {
		t.Helper()
		res, err := bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: ticket, OrderID: "7", StatusID: status, DateStatus: at}.Payload()), tb)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if r := ingest("a", confirmed, "2026-01-13 10:00:00"); r.State != bridge.EventDispatched {
		t.Fatalf("first = %v", r.State)
	}
	if r := ingest("b", confirmed, "2026-01-13 11:00:00"); r.State != bridge.EventUnchanged {
		t.Errorf("same status again = %v, want unchanged", r.State)
	}
	if r := ingest("c", "x9q3wrlv0m7vzea8", "2026-01-13 09:00:00"); r.State != bridge.EventSuperseded {
		t.Errorf("older update = %v, want superseded", r.State)
	}
	// The last delivery dies: the same status is sent again by a fresh update.
	pending, _ := db.PendingAfter(context.Background(), "", 10)
	if err := db.Record(context.Background(), pending[0].ID, bridge.AttemptResult{State: bridge.Dead, Reason: "test"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if r := ingest("d", confirmed, "2026-01-13 12:00:00"); r.State != bridge.EventDispatched {
		t.Errorf("after dead delivery = %v, want dispatched", r.State)
	}
}

func TestGroupCommitUnderConcurrency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.db")
	db, err := Open(path, Options{QueueSize: 1024}) // room for all 200 at once
	if err != nil {
		t.Fatal(err)
	}
	tb := testTable(t, "k")
	const n = 200
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i % 20), StatusID: confirmed,
				DateStatus: "2026-01-13 16:29:51"}.Payload()
			r, err := bridge.Ingest(context.Background(), db, incoming(t, raw), tb)
			ids[i], errs[i] = r.EventID, err
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ingest %d: %v", i, errs[i])
		}
		seen[ids[i]] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct event ids, want %d", len(seen), n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	st, _ := db2.Stats(context.Background())
	// 20 orders, each: first event dispatched, the 9 others unchanged.
	if st.Events != n || st.Deliveries != 20 || st.Pending != 20 || st.Orders != 20 {
		t.Errorf("after reopen: %+v", st)
	}
}

func TestRecordAttempts(t *testing.T) {
	db, _ := openTemp(t)
	res, err := bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: "t", OrderID: "1", StatusID: confirmed}.Payload()), testTable(t, "k"))
	if err != nil {
		t.Fatal(err)
	}
	id := res.Deliveries[0].ID
	next := time.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)
	if err := db.Record(context.Background(), id, bridge.AttemptResult{Attempt: &bridge.Attempt{StatusCode: 500, Error: "HTTP 500"}, State: bridge.Pending, NextAttemptAt: next}, time.Now()); err != nil {
		t.Fatal(err)
	}
	d, _ := db.GetDelivery(context.Background(), id)
	if len(d.Attempts) != 1 || d.State != bridge.Pending || !d.NextAttemptAt.Equal(next) {
		t.Errorf("after retry: %+v", d)
	}
	if err := db.Record(context.Background(), id, bridge.AttemptResult{Attempt: &bridge.Attempt{StatusCode: 200}, State: bridge.Done}, time.Now()); err != nil {
		t.Fatal(err)
	}
	d, _ = db.GetDelivery(context.Background(), id)
	if len(d.Attempts) != 2 || d.State != bridge.Done || !d.NextAttemptAt.IsZero() {
		t.Errorf("after done: %+v", d)
	}
	if p, _ := db.PendingAfter(context.Background(), "", 10); len(p) != 0 {
		t.Errorf("done delivery still pending: %v", p)
	}
	if err := db.Record(context.Background(), "00000000-0000-0000-0000-000000000000", bridge.AttemptResult{State: bridge.Done}, time.Now()); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("Record(unknown) = %v, want bridge.ErrNotFound", err)
	}
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

func TestClosedStoreRefusesWrites(t *testing.T) {
	db, _ := openTemp(t)
	_ = db.Close()
	_, err := bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: "t", OrderID: "1", StatusID: confirmed}.Payload()), testTable(t, "k"))
	if !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("Ingest after Close = %v, want bridge.ErrClosed", err)
	}
}

func TestListEventsScanCapKeepsPaging(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	want := map[string]bool{}
	for i := range 20 {
		r, err := bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i % 4), StatusID: confirmed,
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
	tb := testTable(t, "k")
	const n = 400
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked, refused := []string{}, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: confirmed}.Payload()), tb)
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
	tb := testTable(t, "k")
	res, err := bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: "t1", OrderID: "1", StatusID: confirmed}.Payload()), tb)
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
	if _, err := bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: "t2", OrderID: "2", StatusID: confirmed}.Payload()), tb); err != nil {
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
	res, err = bridge.Ingest(context.Background(), db, incoming(t, fake.Update{TicketID: "t3", OrderID: "3", StatusID: confirmed}.Payload()), tb)
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

// TestListingsPageSizeAndCursor: both listings take 50 by default, refuse a
// cursor that is not an id, and page on from a good one.
func TestListingsPageSizeAndCursor(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	for i := range 60 {
		ingestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), confirmed, "2026-01-13 10:00:00", time.Now())
	}
	evs, next, err := db.ListEvents(context.Background(), bridge.EventFilter{})
	if err != nil || len(evs) != 50 || next == "" {
		t.Fatalf("events: %d, next %q, %v; want 50 and a cursor", len(evs), next, err)
	}
	if rest, _, err := db.ListEvents(context.Background(), bridge.EventFilter{Cursor: next}); err != nil || len(rest) != 10 {
		t.Errorf("events after the cursor: %d, %v; want 10", len(rest), err)
	}
	ds, next, err := db.ListDeliveries(context.Background(), bridge.DeliveryFilter{})
	if err != nil || len(ds) != 50 || next == "" {
		t.Fatalf("deliveries: %d, next %q, %v; want 50 and a cursor", len(ds), next, err)
	}
	if _, _, err := db.ListEvents(context.Background(), bridge.EventFilter{Cursor: "zzz"}); err == nil {
		t.Error("events: a bad cursor was accepted")
	}
	if _, _, err := db.ListDeliveries(context.Background(), bridge.DeliveryFilter{Cursor: "zzz"}); err == nil {
		t.Error("deliveries: a bad cursor was accepted")
	}
}

// TestEachWalksEveryPage: the replay helpers visit every matching record
// once, across pages cut short by the scan cap.
func TestEachWalksEveryPage(t *testing.T) {
	db, _ := openTemp(t)
	tb := testTable(t, "k")
	for i := range 10 {
		ingestAt(t, db, tb, fmt.Sprint("t", i), fmt.Sprint(i), confirmed, "2026-01-13 10:00:00", time.Now())
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
