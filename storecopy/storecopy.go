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
	"errors"
	"fmt"
	"sort"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/postgres"
)

// ErrNotEmpty: the target store already holds records.
var ErrNotEmpty = errors.New("the target store is not empty")

// carrier says how one bucket's records reach the target.
type carrier struct {
	// copy adds a page of the bucket's records to batch; nil when the
	// bucket is carried by another's records (note says how).
	copy func(c *copier, page []bolt.Record, batch *postgres.CopyBatch) error
	// count, when set, is the kind (postgres.Count*) of the target's record
	// that each of the bucket's records becomes: the count check compares
	// the bucket's size with it.
	count string
	note  string
}

// carriers declares every bucket of a bbolt store.
var carriers = map[string]carrier{
	bolt.BucketMeta: {copy: copyMeta,
		note: "the file's schema version and whether its dedup keys may be 32 bytes: read, not copied (the database has its own schema version)"},
	bolt.BucketEvents: {copy: copyEvents, count: postgres.CountEvents,
		note: "events with every decision, their payloads (inline) and dedup keys"},
	bolt.BucketPayloads: {copy: checkPayloads,
		note: "payloads of events written before payloads were inline: copied with their events"},
	bolt.BucketDeliveries: {copy: copyDeliveries, count: postgres.CountDeliveries,
		note: "deliveries with every attempt, in commit order (each lane's order)"},
	bolt.BucketPending: {count: postgres.CountPending,
		note: "the outbox index: carried by each delivery's state"},
	bolt.BucketOrders: {copy: copyOrders, count: postgres.CountOrders,
		note: "each order's last applied state"},
	bolt.BucketDedup: {copy: copyDedup, count: postgres.CountDedup,
		note: "dedup keys (16 bytes; a statusbridge/1 key of 32 bytes becomes its first 16), so repeats of old webhooks are recognised"},
	bolt.BucketOnce: {copy: copyOnce, count: postgres.CountOnce,
		note: "no-repeat keys of done deliveries (Everlytic workflows)"},
	bolt.BucketClaims: {copy: copyClaims, count: postgres.CountClaims,
		note: "durable claims: kept as lapsed claims (the delivery is sent again, as bbolt does at its next start)"},
}

// copyOrder is the order buckets are copied in: deliveries after events,
// claims after deliveries; the rest in any order.
var copyOrder = []string{bolt.BucketMeta, bolt.BucketEvents, bolt.BucketPayloads, bolt.BucketDeliveries,
	bolt.BucketPending, bolt.BucketOrders, bolt.BucketDedup, bolt.BucketOnce, bolt.BucketClaims}

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
}

type copier struct {
	src        *bolt.Export
	dst        *postgres.DB
	payloads   int // events copied with a payload
	orphanKeys int
}

// Copy copies every record of src into dst, which must be empty
// (ErrNotEmpty otherwise). It stops before writing anything when src holds
// a bucket it does not carry. progress may be nil. The summary's checks
// compare each kind's count in src with dst's after the copy; a mismatch is
// reported there (Summary.Mismatch), not as an error.
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
	for _, b := range buckets {
		if sizes[b], err = src.Count(b); err != nil {
			return sum, err
		}
		total += sizes[b]
	}
	c := &copier{src: src, dst: dst}
	present := map[string]bool{}
	for _, b := range buckets {
		present[b] = true
	}
	for _, b := range copyOrder {
		car := carriers[b]
		if !present[b] {
			continue
		}
		if car.copy == nil {
			sum.Records += sizes[b]
			if progress != nil {
				progress(b, sum.Records, total)
			}
			continue
		}
		err := src.Each(b, func(page []bolt.Record) error {
			batch := &postgres.CopyBatch{}
			if err := car.copy(c, page, batch); err != nil {
				return err
			}
			if batch.Len() > 0 {
				if err := dst.CopyIn(ctx, batch); err != nil {
					return fmt.Errorf("write %s: %w", b, err)
				}
				sum.Batches++
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
		if sizes[b] == 0 && progress != nil {
			progress(b, sum.Records, total)
		}
	}
	sum.Orphans = c.orphanKeys

	got, err := dst.CopyCounts(ctx)
	if err != nil {
		return sum, fmt.Errorf("count the target's records: %w", err)
	}
	var names []string
	for b := range carriers {
		names = append(names, b)
	}
	sort.Slice(names, func(i, j int) bool { return indexOf(copyOrder, names[i]) < indexOf(copyOrder, names[j]) })
	for _, b := range names {
		if k := carriers[b].count; k != "" {
			sum.Checks = append(sum.Checks, Check{Kind: k, Source: sizes[b], Target: got[k]})
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

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return len(s)
}

// copyMeta checks the meta keys: each must be one the copy knows.
func copyMeta(c *copier, page []bolt.Record, _ *postgres.CopyBatch) error {
	for _, r := range page {
		switch string(r.Key) {
		case bolt.MetaSchema, bolt.MetaLegacyDedup:
		default:
			return fmt.Errorf("meta key %q is not one this copy knows: use the statusbridge version that wrote the file", r.Key)
		}
	}
	return nil
}

func copyEvents(c *copier, page []bolt.Record, b *postgres.CopyBatch) error {
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
	return nil
}

// checkPayloads counts payloads whose event does not exist (the events
// were copied with theirs).
func checkPayloads(c *copier, page []bolt.Record, _ *postgres.CopyBatch) error {
	for _, r := range page {
		id, err := bolt.ID(r.Key)
		if err != nil {
			return fmt.Errorf("payload key %x: %w", r.Key, err)
		}
		if _, _, err := c.dst.GetEvent(context.Background(), id); err != nil {
			c.orphanKeys++
		}
	}
	return nil
}

func copyDeliveries(c *copier, page []bolt.Record, b *postgres.CopyBatch) error {
	for _, r := range page {
		d, err := c.src.Delivery(r)
		if err != nil {
			return err
		}
		b.Deliveries = append(b.Deliveries, *d)
	}
	return nil
}

func copyOrders(c *copier, page []bolt.Record, b *postgres.CopyBatch) error {
	for _, r := range page {
		id, st, err := c.src.Order(r)
		if err != nil {
			return err
		}
		b.Orders = append(b.Orders, postgres.CopiedOrder{ID: id, State: st})
	}
	return nil
}

func copyDedup(c *copier, page []bolt.Record, b *postgres.CopyBatch) error {
	for _, r := range page {
		if len(r.Key) != 16 && len(r.Key) != 32 {
			return fmt.Errorf("dedup key %x: %d bytes, want 16 or 32", r.Key, len(r.Key))
		}
		id, err := bolt.ID(r.Value)
		if err != nil {
			return fmt.Errorf("dedup key %x: event id: %w", r.Key, err)
		}
		b.Dedup = append(b.Dedup, postgres.CopiedDedup{Key: r.Key, EventID: id})
	}
	return nil
}

func copyOnce(c *copier, page []bolt.Record, b *postgres.CopyBatch) error {
	for _, r := range page {
		id, err := bolt.ID(r.Value)
		if err != nil {
			return fmt.Errorf("no-repeat key %q: delivery id: %w", r.Key, err)
		}
		b.Once = append(b.Once, postgres.CopiedOnce{Key: string(r.Key), DeliveryID: id})
	}
	return nil
}

func copyClaims(c *copier, page []bolt.Record, b *postgres.CopyBatch) error {
	for _, r := range page {
		id, err := bolt.ID(r.Key)
		if err != nil {
			return fmt.Errorf("claim %x: %w", r.Key, err)
		}
		b.Claims = append(b.Claims, id)
	}
	return nil
}
