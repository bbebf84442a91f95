package backendtest

// The conformance of the order intake's records and rules (issue #13):
// intakes with their raw bodies, each order's intake record, deliveries of
// the kinds order, ticket and fetch, RecordAttempt inside a transaction,
// the listing of orders, and the lane priority of order upserts. Every
// backend runs these with RunIntake.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

// OpenBackend opens a fresh, empty store for one test (closed when the
// test ends); reopen opens the same store again after the test closed it.
type OpenBackend func(t *testing.T) (b bridge.Backend, reopen func(t *testing.T) bridge.Backend)

// IntakeTest is one conformance test of the order intake.
type IntakeTest struct {
	Name string
	Fn   func(t *testing.T, open OpenBackend)
}

// IntakeTests lists the order intake's conformance tests.
var IntakeTests = []IntakeTest{
	{"IntakeNewDuplicateUpdate", IntakeNewDuplicateUpdate},
	{"IntakeIDOnlyAndFetchDone", IntakeIDOnlyAndFetchDone},
	{"IntakeTicketRules", IntakeTicketRules},
	{"IntakeSkippedSteps", IntakeSkippedSteps},
	{"IntakeRecordsSurviveReopen", IntakeRecordsSurviveReopen},
	{"IntakeListingNewestFirst", IntakeListingNewestFirst},
	{"IntakeConcurrentSameOrder", IntakeConcurrentSameOrder},
	{"IntakeRetryByKind", IntakeRetryByKind},
	{"IntakeUpsertClaimedBeforeStatuses", IntakeUpsertClaimedBeforeStatuses},
	{"IntakeDurableClaimLeftIsClaimed", IntakeDurableClaimLeftIsClaimed},
}

// RunIntake runs every order intake conformance test as a subtest of t.
func RunIntake(t *testing.T, open OpenBackend) {
	for _, tc := range IntakeTests {
		t.Run(tc.Name, func(t *testing.T) { tc.Fn(t, open) })
	}
}

// FullPlan causes a ticket, an upsert and (for an orderId alone) a fetch.
var FullPlan = bridge.IntakePlan{Ticket: bridge.Step{On: true}, Upsert: bridge.Step{On: true}, Fetch: bridge.Step{On: true}}

// Order is an intake of order id with content body (a JSON object's
// members besides orderId; "" = the orderId alone).
func Order(id, body string) bridge.IncomingOrder {
	raw := fmt.Sprintf(`{"orderId": %q}`, id)
	if body != "" {
		raw = fmt.Sprintf(`{"orderId": %q, %s}`, id, body)
	}
	return bridge.IncomingOrder{OrderID: id, IDOnly: body == "", Key: sha256.Sum256([]byte(body)), Raw: []byte(raw),
		Source: bridge.SourceHTTP, ReceivedAt: time.Now()}
}

// Take stores an intake.
func Take(t testing.TB, b bridge.Backend, in bridge.IncomingOrder, plan bridge.IntakePlan) bridge.IntakeResult {
	t.Helper()
	res, err := bridge.TakeIntake(context.Background(), b, in, plan, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func kindOf(t testing.TB, res bridge.IntakeResult, k bridge.DeliveryKind) bridge.Delivery {
	t.Helper()
	for _, d := range res.Deliveries {
		if d.Kind == k {
			return d
		}
	}
	t.Fatalf("intake %s has no %s delivery (%d deliveries)", res.IntakeID, k, len(res.Deliveries))
	return bridge.Delivery{}
}

func orderIntake(t testing.TB, b bridge.Backend, orderID string) *bridge.OrderIntake {
	t.Helper()
	var rec *bridge.OrderIntake
	if err := b.View(context.Background(), func(tx bridge.Tx) error {
		var err error
		rec, err = tx.OrderIntake(orderID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return rec
}

func getDel(t testing.TB, b bridge.Backend, id string) *bridge.Delivery {
	t.Helper()
	d, err := b.GetDelivery(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func recordDone(t testing.TB, b bridge.Backend, id string, r bridge.AttemptResult) {
	t.Helper()
	if err := b.Record(context.Background(), id, r, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// IntakeNewDuplicateUpdate: a new order stores its intake (raw body byte
// for byte) with a ticket and an upsert; the same content is a duplicate of
// it; other content an update with a new upsert and no second ticket
// delivery while the first is live.
func IntakeNewDuplicateUpdate(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	ctx := context.Background()
	first := Take(t, b, Order("A", `"total": 10.50`), FullPlan)
	if first.State != bridge.IntakeNew || first.Duplicate || len(first.Deliveries) != 2 {
		t.Fatalf("new = %+v", first)
	}
	tk, up := kindOf(t, first, bridge.KindTicket), kindOf(t, first, bridge.KindOrder)
	if tk.Target != bridge.TargetDigishare || up.Target != bridge.TargetExpertSender || tk.IntakeID != first.IntakeID || tk.EventID != "" ||
		tk.State != bridge.Pending {
		t.Errorf("deliveries %+v %+v", tk, up)
	}
	it, raw, err := b.GetIntake(ctx, first.IntakeID)
	if err != nil || string(raw) != `{"orderId": "A", "total": 10.50}` || it.State != bridge.IntakeNew || it.Source != bridge.SourceHTTP ||
		len(it.DeliveryIDs) != 2 || it.OrderID != "A" || len(it.Key) != 32 {
		t.Errorf("GetIntake = %+v %q %v", it, raw, err)
	}
	if d := getDel(t, b, tk.ID); d.Kind != bridge.KindTicket || d.IntakeID != first.IntakeID || d.OrderID != "A" {
		t.Errorf("stored ticket delivery %+v", d)
	}
	dup := Take(t, b, Order("A", `"total": 10.50`), FullPlan)
	if !dup.Duplicate || dup.IntakeID != first.IntakeID || dup.State != bridge.IntakeNew || len(dup.Deliveries) != 0 {
		t.Errorf("duplicate = %+v", dup)
	}
	upd := Take(t, b, Order("A", `"total": 11`), FullPlan)
	if upd.Duplicate || upd.State != bridge.IntakeUpdated || len(upd.Deliveries) != 1 || upd.Deliveries[0].Kind != bridge.KindOrder {
		t.Errorf("update = %+v, want one upsert (the ticket delivery is live)", upd)
	}
	rec := orderIntake(t, b, "A")
	if rec.LatestIntakeID != upd.IntakeID || rec.LastIntakeID != upd.IntakeID || len(rec.IntakeIDs) != 2 ||
		rec.TicketDeliveryID != tk.ID || rec.UpsertDeliveryID != upd.Deliveries[0].ID {
		t.Errorf("record %+v", rec)
	}
	st, err := b.Stats(ctx)
	if err != nil || st.Intakes != 2 {
		t.Errorf("stats %+v %v, want 2 intakes", st, err)
	}
	// Changed back: compared with the latest intake, an update.
	if back := Take(t, b, Order("A", `"total": 10.50`), FullPlan); back.Duplicate || back.State != bridge.IntakeUpdated {
		t.Errorf("changed back = %+v", back)
	}
}

// IntakeIDOnlyAndFetchDone: an orderId alone is a fetch intake (never a
// duplicate); recording the fetch done with the fetched document takes it
// in, in the same transaction, as an intake of source fetch.
func IntakeIDOnlyAndFetchDone(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	ctx := context.Background()
	res := Take(t, b, Order("F", ""), FullPlan)
	if res.State != bridge.IntakeFetch || res.Duplicate || len(res.Deliveries) != 1 {
		t.Fatalf("id only = %+v", res)
	}
	f := kindOf(t, res, bridge.KindFetch)
	if f.Target != bridge.TargetOrderSystem {
		t.Errorf("fetch target %s", f.Target)
	}
	doc := Order("F", `"a": 1`)
	doc.Source = bridge.SourceFetch
	taken, err := bridge.RecordWith(ctx, b, f.ID, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200}},
		bridge.Outcome{Fetched: &doc, Plan: FullPlan}, time.Now())
	if err != nil || taken == nil || taken.State != bridge.IntakeNew || len(taken.Deliveries) != 2 {
		t.Fatalf("RecordWith fetched = %+v, %v", taken, err)
	}
	d := getDel(t, b, f.ID)
	if d.State != bridge.Done || len(d.Attempts) != 1 || d.Result == "" {
		t.Errorf("fetch after record: %+v", d)
	}
	it, raw, err := b.GetIntake(ctx, taken.IntakeID)
	if err != nil || it.Source != bridge.SourceFetch || it.FetchedBy != f.ID || string(raw) != string(doc.Raw) {
		t.Errorf("fetched intake %+v %q %v", it, raw, err)
	}
	again := Take(t, b, Order("F", ""), FullPlan)
	if again.Duplicate || again.State != bridge.IntakeFetch {
		t.Errorf("id only again = %+v", again)
	}
	f2 := kindOf(t, again, bridge.KindFetch)
	dupRes, err := bridge.RecordWith(ctx, b, f2.ID, bridge.AttemptResult{State: bridge.Done}, bridge.Outcome{Fetched: &doc, Plan: FullPlan}, time.Now())
	if err != nil || dupRes == nil || !dupRes.Duplicate || dupRes.IntakeID != taken.IntakeID {
		t.Errorf("the same document fetched again = %+v, %v; want a duplicate of %s", dupRes, err, taken.IntakeID)
	}
	if rec := orderIntake(t, b, "F"); len(rec.IntakeIDs) != 3 || rec.LatestIntakeID != taken.IntakeID || rec.LastIntakeID != again.IntakeID {
		t.Errorf("record %+v", rec)
	}
}

// IntakeTicketRules: no second ticket delivery while one is live or dead
// with an unknown outcome; a new one after a dead one (422); none once the
// ticket is recorded (a done already_created step instead). The media id
// and the ticket go on the order's record; a recorded ticket delivery
// releases its claim.
func IntakeTicketRules(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	ctx := context.Background()
	first := Take(t, b, Order("T", `"v": 1`), FullPlan)
	tk := kindOf(t, first, bridge.KindTicket)
	recordDone(t, b, tk.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "outcome unknown: look for it", Result: bridge.ResultOutcomeUnknown,
		Attempt: &bridge.Attempt{At: time.Now(), Error: "timeout"}})
	if res := Take(t, b, Order("T", `"v": 2`), FullPlan); len(res.Deliveries) != 1 {
		t.Errorf("after an unknown outcome: %d deliveries, want only the upsert", len(res.Deliveries))
	}
	retried, err := bridge.RetryDelivery(ctx, b, tk.ID, time.Now())
	if err != nil || retried.Kind != bridge.KindTicket || retried.IntakeID != first.IntakeID {
		t.Fatalf("operator retry: %+v %v", retried, err)
	}
	recordDone(t, b, retried.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "permanent failure: HTTP 422"})
	res := Take(t, b, Order("T", `"v": 3`), FullPlan)
	tk3 := kindOf(t, res, bridge.KindTicket)
	if tk3.State != bridge.Pending {
		t.Errorf("after a 422, an update's ticket delivery is %s, want pending", tk3.State)
	}
	if err := bridge.RecordMediaID(ctx, b, "T", "media-9"); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(ctx, &tk3, true); err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.RecordWith(ctx, b, tk3.ID, bridge.AttemptResult{State: bridge.Done, Result: "ticket tk-9 created",
		Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 201}}, bridge.Outcome{Ticket: &bridge.Ticket{ID: "tk-9", Number: "99", MediaID: "media-9", ExternalID: "ORDER-T"}},
		time.Now()); err != nil {
		t.Fatal(err)
	}
	d := getDel(t, b, tk3.ID)
	if d.State != bridge.Done || d.Result != "ticket tk-9 created" || len(d.Attempts) != 1 {
		t.Errorf("ticket delivery after RecordWith: %+v", d)
	}
	if p, _ := b.PendingAfter(ctx, "", 100); containsID(p, tk3.ID) {
		t.Error("the done ticket delivery is still pending")
	}
	rec := orderIntake(t, b, "T")
	if rec.Ticket == nil || rec.Ticket.ID != "tk-9" || rec.Ticket.Number != "99" || rec.Ticket.DeliveryID != tk3.ID || rec.MediaID != "media-9" ||
		rec.Ticket.CreatedAt.IsZero() {
		t.Errorf("record %+v, ticket %+v", rec, rec.Ticket)
	}
	later := Take(t, b, Order("T", `"v": 4`), FullPlan)
	ac := kindOf(t, later, bridge.KindTicket)
	if ac.State != bridge.Done || ac.Result != bridge.ResultAlreadyCreated || getDel(t, b, ac.ID).Result != bridge.ResultAlreadyCreated {
		t.Errorf("a later intake's ticket step: %+v", ac)
	}
	if rec := orderIntake(t, b, "T"); rec.TicketDeliveryID != tk3.ID {
		t.Errorf("the already_created step replaced the ticket delivery of record: %s", rec.TicketDeliveryID)
	}
	if _, err := bridge.RetryDelivery(ctx, b, retried.ID, time.Now()); !errors.Is(err, bridge.ErrConflict) {
		t.Errorf("retrying a ticket of an order that has its ticket: %v, want ErrConflict", err)
	}
}

func containsID(ds []bridge.Delivery, id string) bool {
	for _, d := range ds {
		if d.ID == id {
			return true
		}
	}
	return false
}

// IntakeSkippedSteps: a step whose target cannot send is recorded skipped
// with why; a step that is off is not recorded at all.
func IntakeSkippedSteps(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	plan := bridge.IntakePlan{Ticket: bridge.Step{On: true, Skip: "no token"}, Fetch: bridge.Step{On: true, Skip: "no base_url"}}
	res := Take(t, b, Order("S", `"x": 1`), plan)
	if len(res.Deliveries) != 1 {
		t.Fatalf("deliveries %+v, want the ticket only (no upsert step)", res.Deliveries)
	}
	if d := getDel(t, b, res.Deliveries[0].ID); d.State != bridge.Skipped || d.Reason != "no token" {
		t.Errorf("ticket of a disabled target: %+v", d)
	}
	f := Take(t, b, Order("S", ""), plan)
	if d := getDel(t, b, f.Deliveries[0].ID); d.State != bridge.Skipped || d.Kind != bridge.KindFetch {
		t.Errorf("fetch of a disabled target: %+v", d)
	}
	// A skipped ticket is not live: an update may make one once it can send.
	if again := Take(t, b, Order("S", `"x": 2`), FullPlan); kindOf(t, again, bridge.KindTicket).State != bridge.Pending {
		t.Error("no ticket delivery after a skipped one")
	}
	if p, _ := b.PendingAfter(context.Background(), "", 100); len(p) != 2 {
		t.Errorf("%d pending, want the update's ticket and upsert", len(p))
	}
}

// IntakeRecordsSurviveReopen: intakes, the order's record and the new
// delivery fields are durable.
func IntakeRecordsSurviveReopen(t *testing.T, open OpenBackend) {
	b, reopen := open(t)
	res := Take(t, b, Order("R", `"k": "v"`), FullPlan)
	if err := bridge.RecordMediaID(context.Background(), b, "R", "m-1"); err != nil {
		t.Fatal(err)
	}
	want := orderIntake(t, b, "R")
	wantDel := getDel(t, b, res.Deliveries[0].ID)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = reopen(t)
	if got := orderIntake(t, b, "R"); !reflect.DeepEqual(got, want) {
		t.Errorf("record after reopen\n got %+v\nwant %+v", got, want)
	}
	got := getDel(t, b, res.Deliveries[0].ID)
	if got.Kind != wantDel.Kind || got.IntakeID != wantDel.IntakeID || got.EventID != "" || got.Target != wantDel.Target {
		t.Errorf("delivery after reopen %+v, want %+v", got, wantDel)
	}
	if _, raw, err := b.GetIntake(context.Background(), res.IntakeID); err != nil || !bytes.Equal(raw, []byte(`{"orderId": "R", "k": "v"}`)) {
		t.Errorf("raw after reopen %q %v", raw, err)
	}
}

// IntakeListingNewestFirst: ListIntakes pages newest first with a cursor,
// filters by order and time, and with Latest lists each order once (by its
// newest intake); the orders view and the order detail read them.
func IntakeListingNewestFirst(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var ids []string
	for i, o := range []string{"L1", "L2", "L1", "L3", "L2"} {
		in := Order(o, fmt.Sprintf(`"n": %d`, i))
		in.ReceivedAt = t0.Add(time.Duration(i) * time.Minute)
		ids = append(ids, Take(t, b, in, bridge.IntakePlan{}).IntakeID)
	}
	all, next, err := b.ListIntakes(ctx, bridge.IntakeFilter{Limit: 2})
	if err != nil || len(all) != 2 || all[0].ID != ids[4] || all[1].ID != ids[3] || next == "" {
		t.Fatalf("first page %v next %q %v", idsOf(all), next, err)
	}
	rest, next2, err := b.ListIntakes(ctx, bridge.IntakeFilter{Limit: 10, Cursor: next})
	if err != nil || len(rest) != 3 || rest[0].ID != ids[2] || rest[2].ID != ids[0] || next2 != "" {
		t.Errorf("second page %v next %q %v", idsOf(rest), next2, err)
	}
	latest, _, err := b.ListIntakes(ctx, bridge.IntakeFilter{Latest: true})
	if err != nil || len(latest) != 3 || latest[0].ID != ids[4] || latest[1].ID != ids[3] || latest[2].ID != ids[2] {
		t.Errorf("latest %v %v", idsOf(latest), err)
	}
	one, _, err := b.ListIntakes(ctx, bridge.IntakeFilter{OrderID: "L1"})
	if err != nil || len(one) != 2 || one[0].ID != ids[2] || one[1].ID != ids[0] {
		t.Errorf("order L1 %v %v", idsOf(one), err)
	}
	page, next, err := b.ListIntakes(ctx, bridge.IntakeFilter{OrderID: "L1", Limit: 1})
	if err != nil || len(page) != 1 || page[0].ID != ids[2] || next == "" {
		t.Errorf("order L1 page %v %q %v", idsOf(page), next, err)
	}
	if page, _, err = b.ListIntakes(ctx, bridge.IntakeFilter{OrderID: "L1", Limit: 1, Cursor: next}); err != nil || len(page) != 1 || page[0].ID != ids[0] {
		t.Errorf("order L1 second page %v %v", idsOf(page), err)
	}
	window, _, err := b.ListIntakes(ctx, bridge.IntakeFilter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)})
	if err != nil || len(window) != 2 || window[0].ID != ids[2] || window[1].ID != ids[1] {
		t.Errorf("since/until %v %v", idsOf(window), err)
	}
	rows, _, err := bridge.Orders(ctx, b, bridge.IntakeFilter{})
	if err != nil || len(rows) != 3 || rows[0].OrderID != "L2" || rows[0].Intakes != 2 {
		t.Errorf("orders %+v %v", rows, err)
	}
	detail, err := bridge.Order(ctx, b, "L1")
	if err != nil || len(detail.Intakes) != 2 || len(detail.Timeline) != 2 || detail.Timeline[0].Type != "intake" {
		t.Errorf("order detail %+v %v", detail, err)
	}
	if _, err := bridge.Order(ctx, b, "nope"); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("unknown order: %v", err)
	}
	if _, _, err := b.ListIntakes(ctx, bridge.IntakeFilter{Cursor: "not-a-cursor"}); err == nil {
		t.Error("a bad cursor was accepted")
	}
}

func idsOf(its []bridge.Intake) []string {
	out := make([]string, len(its))
	for i := range its {
		out[i] = its[i].ID[len(its[i].ID)-4:]
	}
	return out
}

// IntakeConcurrentSameOrder: the same new order taken many times at once
// (replicas, retries) is stored once; the rest are duplicates of it, and
// one ticket delivery exists.
func IntakeConcurrentSameOrder(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	const n = 12
	var wg sync.WaitGroup
	results := make([]bridge.IntakeResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = bridge.TakeIntake(context.Background(), b, Order("C", `"same": true`), FullPlan, time.Now())
		}()
	}
	wg.Wait()
	news, tickets := 0, 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !results[i].Duplicate {
			news++
		}
		for _, d := range results[i].Deliveries {
			if d.Kind == bridge.KindTicket {
				tickets++
			}
		}
	}
	if news != 1 || tickets != 1 {
		t.Errorf("%d stored, %d ticket deliveries of %d concurrent intakes; want 1 and 1", news, tickets, n)
	}
}

// IntakeRetryByKind: the 409 rule compares deliveries of the same kind.
func IntakeRetryByKind(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	ctx := context.Background()
	first := Take(t, b, Order("K", `"v": 1`), FullPlan)
	up1 := kindOf(t, first, bridge.KindOrder)
	recordDone(t, b, up1.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "HTTP 400"})
	second := Take(t, b, Order("K", `"v": 2`), FullPlan)
	up2 := kindOf(t, second, bridge.KindOrder)
	recordDone(t, b, up2.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "HTTP 400"})
	var ce *bridge.ConflictError
	if _, err := bridge.RetryDelivery(ctx, b, up1.ID, time.Now()); !errors.As(err, &ce) {
		t.Errorf("retry of an upsert a newer one replaced: %v, want a conflict", err)
	}
	r, err := bridge.RetryDelivery(ctx, b, up2.ID, time.Now())
	if err != nil || r.Kind != bridge.KindOrder || r.RetryOf != up2.ID || r.IntakeID != second.IntakeID {
		t.Fatalf("retry of the newest upsert: %+v %v", r, err)
	}
	if rec := orderIntake(t, b, "K"); rec.UpsertDeliveryID != r.ID {
		t.Errorf("the retry is not the order's upsert of record: %s", rec.UpsertDeliveryID)
	}
	if it, _, _ := b.GetIntake(ctx, second.IntakeID); !containsString(it.DeliveryIDs, r.ID) {
		t.Errorf("the intake does not list its retried delivery: %v", it.DeliveryIDs)
	}
	if _, err := bridge.RetryDelivery(ctx, b, r.ID, time.Now()); !errors.As(err, &ce) {
		t.Errorf("retry of a pending delivery: %v", err)
	}
	f := kindOf(t, Take(t, b, Order("K", ""), FullPlan), bridge.KindFetch)
	recordDone(t, b, f.ID, bridge.AttemptResult{State: bridge.Dead, Reason: "HTTP 500 ×12"})
	if rf, err := bridge.RetryDelivery(ctx, b, f.ID, time.Now()); err != nil || rf.Kind != bridge.KindFetch {
		t.Errorf("retry of a dead fetch: %+v %v", rf, err)
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// IntakeUpsertClaimedBeforeStatuses: in an (expertsender, order) lane the
// order upsert is claimed before the status deliveries queued before it,
// and a status is refused while an upsert of its lane is unfinished. Only a
// backend whose claims check lane order runs it (ClaimsCheckLaneOrder):
// bbolt has one process, whose worker keeps the lanes in memory, so its
// claims check only that a delivery is pending and not held.
func IntakeUpsertClaimedBeforeStatuses(t *testing.T, open OpenBackend) {
	b, _ := open(t)
	if c, ok := b.(interface{ ClaimsCheckLaneOrder() bool }); !ok || !c.ClaimsCheckLaneOrder() {
		t.Skip("this backend's worker keeps lane order in memory")
	}
	ctx := context.Background()
	tb := Table(t, "key-123456")
	s1 := IngestAt(t, b, tb, "t1", "ORDER-U", Awaiting, "2026-01-13 10:00:00", time.Now())
	s2 := IngestAt(t, b, tb, "t1", "ORDER-U", Confirmed, "2026-01-13 11:00:00", time.Now())
	up := kindOf(t, Take(t, b, Order("U", `"v": 1`), bridge.IntakePlan{Upsert: bridge.Step{On: true}}), bridge.KindOrder)
	st1, st2 := s1.Deliveries[0], s2.Deliveries[0]
	if err := b.Claim(ctx, &st2, false); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Errorf("claim of the second status before the first: %v, want refused", err)
	}
	if err := b.Claim(ctx, &up, false); err != nil {
		t.Fatalf("claim of the upsert ahead of statuses not started: %v", err)
	}
	if err := b.Claim(ctx, &st1, false); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Errorf("claim of a status while the lane's upsert is unfinished: %v, want refused", err)
	}
	recordDone(t, b, up.ID, bridge.AttemptResult{State: bridge.Done})
	if err := b.Claim(ctx, &st1, false); err != nil {
		t.Errorf("claim of the first status after the upsert: %v", err)
	}
	up2 := kindOf(t, Take(t, b, Order("U", `"v": 2`), bridge.IntakePlan{Upsert: bridge.Step{On: true}}), bridge.KindOrder)
	if err := b.Claim(ctx, &up2, false); !errors.Is(err, bridge.ErrClaimRefused) {
		t.Errorf("claim of an upsert while a status of its lane is claimed: %v, want refused (the one in flight finishes first)", err)
	}
	recordDone(t, b, st1.ID, bridge.AttemptResult{State: bridge.Done})
	if err := b.Claim(ctx, &up2, false); err != nil {
		t.Errorf("claim of the newer upsert: %v", err)
	}
	recordDone(t, b, up2.ID, bridge.AttemptResult{State: bridge.Done})
	if err := b.Claim(ctx, &st2, false); err != nil {
		t.Errorf("claim of the second status: %v", err)
	}
}

// IntakeDurableClaimLeftIsClaimed: a durable claim left by a process that is
// gone shows as Claimed in PendingAfter after a reopen, and a record clears
// it.
func IntakeDurableClaimLeftIsClaimed(t *testing.T, open OpenBackend) {
	b, reopen := open(t)
	ctx := context.Background()
	tk := kindOf(t, Take(t, b, Order("D", `"v": 1`), FullPlan), bridge.KindTicket)
	if err := b.Claim(ctx, &tk, true); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = reopen(t)
	p, err := b.PendingAfter(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range p {
		if d.ID == tk.ID {
			found = true
			if !d.Claimed {
				t.Error("a durable claim left by a stopped process is not Claimed")
			}
		} else if d.Claimed {
			t.Errorf("delivery %s (%s) is Claimed without a claim", d.ID, d.Kind)
		}
	}
	if !found {
		t.Fatal("the claimed ticket delivery is not pending")
	}
	// The new sender records it (its lease may still hold the claim: a
	// takeover or its lapse frees it; the record needs neither).
	recordDone(t, b, tk.ID, bridge.AttemptResult{State: bridge.Dead, Result: bridge.ResultOutcomeUnknown, Reason: "outcome unknown"})
	if d := getDel(t, b, tk.ID); d.State != bridge.Dead || d.Result != bridge.ResultOutcomeUnknown {
		t.Errorf("after the record: %+v", d)
	}
	// A retry of it is a new delivery, not claimed by anyone.
	r, err := bridge.RetryDelivery(ctx, b, tk.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err = b.PendingAfter(ctx, "", 100)
	if err != nil || !containsID(p, r.ID) {
		t.Fatalf("the retry is not pending: %v", err)
	}
	for _, d := range p {
		if d.Claimed {
			t.Errorf("delivery %s is Claimed after the record", d.ID)
		}
	}
}
