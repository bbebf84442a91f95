// Package storecopy copies a bbolt store into an empty PostgreSQL store
// (statusbridge store copy): every record the file holds, bucket by bucket,
// in transactions of at most 500 records, then a count check.
//
// Every bucket the file may hold is declared in carriers, with what carries
// it; a bucket that is not declared stops the copy before anything is
// written, so a record kind added to the bbolt store later cannot be left
// behind unnoticed (TestEveryBucketIsCarried walks a new store's buckets).
package storecopy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/postgres"
)

// ErrNotEmpty: the target store already holds records.
var ErrNotEmpty = errors.New("the target store is not empty")

// carrier says how one bucket's records reach the target.
type carrier struct {
	// copy writes a page of the bucket's records into the target; nil when
	// the bucket is carried by another's records or is not carried (note
	// says which, and why).
	copy func(c *copier, page []bolt.Record) error
	// count, when set, is the kind (postgres.Count*) of the target's record
	// that each of the bucket's records becomes: the count check compares
	// the bucket's size with it.
	count string
	// kept, when set, is how many of the bucket's records the target keeps
	// (the newest; the bbolt store keeps as many): the count check expects
	// at most that many.
	kept int
	note string
}

// carriers declares every bucket of a bbolt store.
var carriers = map[string]carrier{
	bolt.BucketMeta: {copy: copyMeta,
		note: "the file's schema version and flags: read, not copied (the database has its own schema version)"},
	bolt.BucketEvents: {copy: copyEvents, count: postgres.CountEvents,
		note: "events with every decision, their payloads (inline) and dedup keys"},
	bolt.BucketPayloads: {copy: checkPayloads,
		note: "payloads of events written before payloads were inline: copied with their events"},
	bolt.BucketDeliveries: {copy: copyDeliveries, count: postgres.CountDeliveries,
		note: "deliveries with every attempt and request and their retry links (RetryOf, ResolvedBy), in commit order (each lane's order)"},
	bolt.BucketPending: {count: postgres.CountPending,
		note: "the outbox index: carried by each delivery's state"},
	bolt.BucketOrders: {copy: copyOrders, count: postgres.CountOrders,
		note: "each order's last applied state"},
	bolt.BucketDedup: {copy: copyDedup, count: postgres.CountDedup,
		note: "dedup keys (16 bytes; a statusbridge/1 key of 32 bytes becomes its first 16), so repeats of old webhooks are recognised"},
	bolt.BucketOnce: {copy: copyOnce, count: postgres.CountOnce,
		note: "no-repeat keys of done deliveries (Everlytic workflows)"},
	bolt.BucketClaims: {copy: copyClaims, count: postgres.CountClaims,
		note: "durable claims (a ticket request sent, its outcome not recorded): kept durable, so it is not sent again blindly"},
	bolt.BucketIntakes: {copy: copyIntakes, count: postgres.CountIntakes,
		note: "order intakes with their raw bodies"},
	bolt.BucketOrderIntakes: {copy: copyOrderIntakes, count: postgres.CountOrderIntakes,
		note: "each order's intake record: latest content, ticket, media id"},
	bucketChanges:         {note: "the live tail's index of recent delivery results (kept 10 minutes): the deliveries carry the results; PostgreSQL has no live tail yet"},
	bucketCounters:        {note: "the console's counters: derived from the records (bbolt builds them again from a store without them)"},
	bucketPendingByTarget: {note: "an index of the outbox by target: carried by each delivery's state and target"},
	bucketOrderEvents:     {note: "an index of events by order id: carried by each event's order id (PostgreSQL indexes it)"},
	bucketActions: {copy: copyActions, count: postgres.CountActions, kept: postgres.KeptActions,
		note: "the console's log of operator actions (the last 200), with their ids and times"},
	bucketJobs: {copy: copyJobs, count: postgres.CountJobs, kept: postgres.KeptFinishedJobs,
		note: "bulk jobs: a copy is refused while one is unfinished; finished ones (the last 100) are copied with their ids, times and progress"},
}

// Buckets of the bbolt store that bolt names only for itself.
const (
	bucketChanges         = "changes"
	bucketCounters        = "counters"
	bucketPendingByTarget = "pending_by_target"
	bucketOrderEvents     = "order_events"
	bucketActions         = "actions"
	bucketJobs            = "jobs"
)

// copyOrder is the order buckets are copied in: deliveries after events,
// durable claims after deliveries; the rest in any order (the jobs are
// checked before anything is written: an unfinished one refuses the copy).
var copyOrder = []string{bolt.BucketMeta, bolt.BucketEvents, bolt.BucketPayloads, bolt.BucketDeliveries,
	bolt.BucketPending, bolt.BucketOrders, bolt.BucketDedup, bolt.BucketOnce, bolt.BucketClaims,
	bolt.BucketIntakes, bolt.BucketOrderIntakes, bucketChanges, bucketCounters, bucketPendingByTarget, bucketOrderEvents,
	bucketJobs, bucketActions}

// Carried reports whether the copy declares a bucket, and how it carries it.
func Carried(bucket string) (note string, ok bool) {
	c, ok := carriers[bucket]
	return c.note, ok
}

// Progress is told, after each committed batch, how many source records
// are copied of how many in all, and which bucket is being copied.
type Progress func(bucket string, done, total int)

// Check is one line of the count check.
type Check struct {
	Kind           string `json:"kind"`
	Source, Target int
}

// OK reports whether the counts agree.
func (c Check) OK() bool { return c.Source == c.Target }

// Summary is what a copy did.
type Summary struct {
	Records  int     // source records read
	Batches  int     // transactions committed
	Checks   []Check // source vs target counts, by kind
	Orphans  int     // payloads of the payloads bucket whose event does not exist (nothing refers to them)
	Mismatch bool    // some check failed
	// RetryLinks counts the deliveries copied with a retry link
	// (Delivery.RetryOf or ResolvedBy).
	RetryLinks int
}

type copier struct {
	ctx        context.Context
	src        *bolt.Export
	dst        *postgres.DB
	sum        *Summary
	payloads   int // events copied with a payload
	orphanKeys int
}

// ErrUnfinishedJob: the store has a bulk job still to run.
var ErrUnfinishedJob = errors.New("a bulk job is unfinished")

// Copy copies every record of src into dst, which must be empty
// (ErrNotEmpty otherwise). It stops before writing anything when src holds
// a bucket it does not carry or a bulk job that is unfinished. progress may
// be nil. The summary's checks compare each kind's count in src with dst's
// after the copy; a mismatch is reported there (Summary.Mismatch), not as an
// error.
func Copy(ctx context.Context, src *bolt.Export, dst *postgres.DB, progress Progress) (Summary, error) {
	var sum Summary
	buckets, err := src.Buckets()
	if err != nil {
		return sum, err
	}
	var unknown []string
	for _, b := range buckets {
		if _, ok := carriers[b]; !ok {
			unknown = append(unknown, b)
		}
	}
	if len(unknown) > 0 {
		return sum, fmt.Errorf("the store file holds buckets this copy does not carry (%v): use the statusbridge version that wrote it", unknown)
	}
	empty, what, err := dst.Empty(ctx)
	if err != nil {
		return sum, fmt.Errorf("read the target: %w", err)
	}
	if !empty {
		return sum, fmt.Errorf("%w: it holds %s; copy into a new schema or database", ErrNotEmpty, what)
	}
	sizes := map[string]int{}
	total := 0
	present := map[string]bool{}
	for _, b := range buckets {
		if sizes[b], err = src.Count(b); err != nil {
			return sum, err
		}
		total += sizes[b]
		present[b] = true
	}
	if slices.Contains(buckets, bucketJobs) {
		if err := src.Each(bucketJobs, checkJobs); err != nil {
			return sum, err
		}
	}
	c := &copier{ctx: ctx, src: src, dst: dst, sum: &sum}
	for _, b := range copyOrder {
		car := carriers[b]
		if !present[b] {
			continue
		}
		if car.copy != nil {
			err := src.Each(b, func(page []bolt.Record) error {
				if err := car.copy(c, page); err != nil {
					return err
				}
				sum.Records += len(page)
				if progress != nil {
					progress(b, sum.Records, total)
				}
				return nil
			})
			if err != nil {
				return sum, fmt.Errorf("copy bucket %s: %w", b, err)
			}
		} else {
			sum.Records += sizes[b]
		}
		if progress != nil && (car.copy == nil || sizes[b] == 0) {
			progress(b, sum.Records, total)
		}
	}
	sum.Orphans = c.orphanKeys

	got, err := dst.CopyCounts(ctx)
	if err != nil {
		return sum, fmt.Errorf("count the target's records: %w", err)
	}
	for _, b := range copyOrder {
		if car := carriers[b]; car.count != "" {
			n := sizes[b]
			if car.kept > 0 {
				n = min(n, car.kept)
			}
			sum.Checks = append(sum.Checks, Check{Kind: car.count, Source: n, Target: got[car.count]})
		}
		if b == bolt.BucketEvents {
			sum.Checks = append(sum.Checks, Check{Kind: postgres.CountPayloads, Source: c.payloads, Target: got[postgres.CountPayloads]})
		}
	}
	for _, ch := range sum.Checks {
		sum.Mismatch = sum.Mismatch || !ch.OK()
	}
	return sum, nil
}

// write commits a batch of records.
func (c *copier) write(b *postgres.CopyBatch) error {
	if b.Len() == 0 {
		return nil
	}
	if err := c.dst.CopyIn(c.ctx, b); err != nil {
		return err
	}
	c.sum.Batches++
	return nil
}

// writeIntakes commits intake records and durable claims.
func (c *copier) writeIntakes(intakes []postgres.CopiedIntake, recs []bridge.OrderIntake, claims []string) error {
	if len(intakes)+len(recs)+len(claims) == 0 {
		return nil
	}
	if err := c.dst.CopyIntakes(c.ctx, intakes, recs, claims); err != nil {
		return err
	}
	c.sum.Batches++
	return nil
}

// checkJobs refuses a store with an unfinished bulk job (it would not go on
// on the copy) or a job that does not decode. Copy runs it on the whole
// bucket before it writes anything.
func checkJobs(page []bolt.Record) error {
	_, err := decodeJobs(page)
	return err
}

// decodeJobs decodes a page of finished jobs (ErrUnfinishedJob on one that
// is not).
func decodeJobs(page []bolt.Record) ([]bridge.Job, error) {
	jobs := make([]bridge.Job, 0, len(page))
	for _, r := range page {
		var j bridge.Job
		if err := json.Unmarshal(r.Value, &j); err != nil {
			return nil, fmt.Errorf("job %x: %w", r.Key, err)
		}
		if !j.State.Finished() {
			return nil, fmt.Errorf("%w (job %s, %s, %s): let it finish, or cancel it, before copying", ErrUnfinishedJob, j.ID, j.Kind, j.State)
		}
		if err := sameID(r.Key, j.ID); err != nil {
			return nil, fmt.Errorf("job %x: %w", r.Key, err)
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// copyJobs copies finished jobs, in their ids' order.
func copyJobs(c *copier, page []bolt.Record) error {
	jobs, err := decodeJobs(page)
	if err != nil {
		return err
	}
	return c.writeConsole(jobs, nil)
}

// copyActions copies the operator-action log.
func copyActions(c *copier, page []bolt.Record) error {
	actions := make([]bridge.Action, 0, len(page))
	for _, r := range page {
		var a bridge.Action
		if err := json.Unmarshal(r.Value, &a); err != nil {
			return fmt.Errorf("action %x: %w", r.Key, err)
		}
		if err := sameID(r.Key, a.ID); err != nil {
			return fmt.Errorf("action %x: %w", r.Key, err)
		}
		actions = append(actions, a)
	}
	return c.writeConsole(nil, actions)
}

// sameID checks that a record's key is the id its JSON holds (the target
// keys it by that id).
func sameID(key []byte, id string) error {
	k, err := bolt.ID(key)
	if err != nil {
		return err
	}
	if k != id {
		return fmt.Errorf("the record holds id %q", id)
	}
	return nil
}

// writeConsole commits jobs and actions.
func (c *copier) writeConsole(jobs []bridge.Job, actions []bridge.Action) error {
	if len(jobs)+len(actions) == 0 {
		return nil
	}
	if err := c.dst.CopyConsole(c.ctx, jobs, actions); err != nil {
		return err
	}
	c.sum.Batches++
	return nil
}

// copyMeta checks the meta keys: each must be one the copy knows.
func copyMeta(c *copier, page []bolt.Record) error {
	for _, r := range page {
		if !slices.Contains(bolt.MetaKeys, string(r.Key)) {
			return fmt.Errorf("meta key %q is not one this copy knows: use the statusbridge version that wrote the file", r.Key)
		}
	}
	return nil
}

func copyEvents(c *copier, page []bolt.Record) error {
	b := &postgres.CopyBatch{}
	for _, r := range page {
		ev, stored, err := c.src.Event(r)
		if err != nil {
			return err
		}
		if stored != nil {
			c.payloads++
		}
		b.Events = append(b.Events, postgres.CopiedEvent{Event: *ev, Stored: stored})
	}
	return c.write(b)
}

// checkPayloads counts payloads whose event does not exist (the events
// were copied with theirs).
func checkPayloads(c *copier, page []bolt.Record) error {
	for _, r := range page {
		id, err := bolt.ID(r.Key)
		if err != nil {
			return fmt.Errorf("payload key %x: %w", r.Key, err)
		}
		if _, _, err := c.dst.GetEvent(c.ctx, id); err != nil {
			c.orphanKeys++
		}
	}
	return nil
}

func copyDeliveries(c *copier, page []bolt.Record) error {
	b := &postgres.CopyBatch{}
	for _, r := range page {
		d, err := c.src.Delivery(r)
		if err != nil {
			return err
		}
		if d.RetryOf != "" || d.ResolvedBy != "" {
			c.sum.RetryLinks++ // carried: PutDelivery writes retry_of and resolved_by
		}
		b.Deliveries = append(b.Deliveries, *d)
	}
	return c.write(b)
}

func copyOrders(c *copier, page []bolt.Record) error {
	b := &postgres.CopyBatch{}
	for _, r := range page {
		id, st, err := c.src.Order(r)
		if err != nil {
			return err
		}
		b.Orders = append(b.Orders, postgres.CopiedOrder{ID: id, State: st})
	}
	return c.write(b)
}

func copyDedup(c *copier, page []bolt.Record) error {
	b := &postgres.CopyBatch{}
	for _, r := range page {
		if len(r.Key) != 16 && len(r.Key) != 32 {
			return fmt.Errorf("dedup key %x: %d bytes, want 16 or 32", r.Key, len(r.Key))
		}
		key, id, err := c.src.DedupKey(r) // the hash-only form PostgreSQL looks up
		if err != nil {
			return err
		}
		b.Dedup = append(b.Dedup, postgres.CopiedDedup{Key: key, EventID: id})
	}
	return c.write(b)
}

func copyOnce(c *copier, page []bolt.Record) error {
	b := &postgres.CopyBatch{}
	for _, r := range page {
		id, err := bolt.ID(r.Value)
		if err != nil {
			return fmt.Errorf("no-repeat key %q: delivery id: %w", r.Key, err)
		}
		b.Once = append(b.Once, postgres.CopiedOnce{Key: string(r.Key), DeliveryID: id})
	}
	return c.write(b)
}

func copyClaims(c *copier, page []bolt.Record) error {
	var claims []string
	for _, r := range page {
		id, err := bolt.ID(r.Key)
		if err != nil {
			return fmt.Errorf("claim %x: %w", r.Key, err)
		}
		claims = append(claims, id)
	}
	return c.writeIntakes(nil, nil, claims)
}

func copyIntakes(c *copier, page []bolt.Record) error {
	var intakes []postgres.CopiedIntake
	for _, r := range page {
		in, stored, err := bolt.DecodeIntakeRecord(r.Key, r.Value)
		if err != nil {
			return err
		}
		intakes = append(intakes, postgres.CopiedIntake{Intake: *in, Stored: stored})
	}
	return c.writeIntakes(intakes, nil, nil)
}

func copyOrderIntakes(c *copier, page []bolt.Record) error {
	var recs []bridge.OrderIntake
	for _, r := range page {
		rec, err := bolt.DecodeOrderIntakeRecord(r.Value)
		if err != nil {
			return fmt.Errorf("order intake %q: %w", r.Key, err)
		}
		recs = append(recs, *rec)
	}
	return c.writeIntakes(nil, recs, nil)
}
