package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/statusbridge/statusbridge/bridge"
	bbolt "go.etcd.io/bbolt"
)

// Records (events, deliveries, order states) are stored in a compact binary
// form: a format byte, then the fields in a fixed order as varints and
// length-prefixed strings, ids as 16 raw bytes, and common strings (outcomes,
// states, target names) as a small index. An event shrinks from ~580 bytes of
// JSON to ~150, a delivery from ~380 to ~90, an order from ~130 to ~35 —
// most of what the store holds per event besides the payload.
//
// Records written as JSON (stores from before this format) start with '{' and
// are still read; any record rewritten is written in the binary form. The
// format byte leaves room for a later layout: add a version, never change one.
//
// An event written by ingest carries its stored payload inline (eventV2:
// format byte, the length of the v1 fields, the fields, then the payload), so
// an ingest writes one B-tree path fewer per commit. Events from before keep
// their payload in the payloads bucket (format v1 or JSON).
//
// A delivery written by statusbridge/3 is deliveryV2: the v1 fields, each
// attempt followed by the request it sent (codec_request.go), then RetryOf
// and ResolvedBy. Stores holding such records are marked statusbridge/3, so
// a build that cannot read them refuses the file at open.
//
// A delivery of another kind than status (statusbridge/4) is deliveryV3:
// the deliveryV2 fields, then its kind and its intake id. Status deliveries
// are still written as deliveryV2 (they read back with kind status).
const (
	recordV1   = 0x01
	eventV2    = 0x02
	deliveryV2 = 0x02 // the same byte, for deliveries
	deliveryV3 = 0x03
)

// errCorrupt is returned for a record that cannot be decoded.
var errCorrupt = errors.New("corrupt record")

// interned are strings stored as an index. Append only: a stored index must
// keep its meaning forever.
var interned = []string{
	"ticket.updated",
	// outcomes
	"invalid", "no_status_change", "ignored", "unmapped", "no_order_id", "no_action", "superseded", "unchanged", "dispatched",
	// delivery states
	"pending", "in_flight", "done", "dead", "skipped",
	// targets
	"expertsender", "order_system", "whatsapp_opt_in", "everlytic",
	// frequent values
	"ACTIVE", "already_active", "already_triggered", "paid", "placed", "cancelled", "completed",
	// sent requests (statusbridge/3)
	"GET", "POST", "PUT", "PATCH", "DELETE", "Accept", "Content-Type", "User-Agent", "Authorization",
	"X-Api-Key", "X-Ev-Store-Hash", "X-Ev-Customer-Hash", "application/json", "statusbridge", redacted,
	// order intake (statusbridge/4)
	"digishare", "status", "order", "ticket", "fetch", "outcome_unknown",
}

var internIndex = func() map[string]uint64 {
	m := make(map[string]uint64, len(interned))
	for i, s := range interned {
		m[s] = uint64(i)
	}
	return m
}()

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }

// str writes an interned string as index<<1|1, any other as len<<1 + bytes.
func (e *encoder) str(s string) {
	if i, ok := internIndex[s]; ok {
		e.uint(i<<1 | 1)
		return
	}
	e.uint(uint64(len(s)) << 1)
	e.b = append(e.b, s...)
}

func (e *encoder) bytes(p []byte) {
	e.uint(uint64(len(p)))
	e.b = append(e.b, p...)
}

// time writes 0 for the zero time, else nanoseconds<<1|1 then Unix seconds.
// Stored times are UTC (as they were in JSON).
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.uint(0)
		return
	}
	e.uint(uint64(t.Nanosecond())<<1 | 1)
	e.int(t.Unix())
}

// id writes a UUID as 0 + 16 bytes; anything else as its length+1 and text.
func (e *encoder) id(s string) {
	if u, err := uuid.Parse(s); err == nil && len(s) == 36 {
		e.uint(0)
		e.b = append(e.b, u[:]...)
		return
	}
	e.uint(uint64(len(s)) + 1)
	e.b = append(e.b, s...)
}

func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// Stored times lie in years 1 to 9999 (what RFC 3339 can write).
const minUnix, maxUnix = -62135596800, 253402300799

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string {
	x := d.uint()
	if x&1 == 1 {
		if i := x >> 1; i < uint64(len(interned)) {
			return interned[i]
		}
		d.fail("string index")
		return ""
	}
	return string(d.take(x>>1, "string"))
}

func (d *decoder) bytes() []byte {
	p := d.take(d.uint(), "bytes")
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) time() time.Time {
	x := d.uint()
	if x == 0 {
		return time.Time{}
	}
	ns, sec := x>>1, d.int()
	if ns >= 1e9 || sec < minUnix || sec > maxUnix {
		d.fail("time")
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

func (d *decoder) id() string {
	x := d.uint()
	if x == 0 {
		p := d.take(16, "id")
		if p == nil {
			return ""
		}
		return idString(p)
	}
	return string(d.take(x-1, "id"))
}

func (d *decoder) bool() bool {
	p := d.take(1, "flag")
	return len(p) == 1 && p[0] != 0
}

// count reads a list length, bounded by what is left (each item takes at
// least one byte), so a corrupt length never allocates much.
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// eventPayload is an event record to write with its stored (compressed)
// payload inline.
type eventPayload struct {
	ev      *bridge.Event
	payload []byte
}

func encodeEvent(ev *bridge.Event, payload []byte) []byte {
	e := encoder{b: make([]byte, 0, 192+len(payload))}
	e.b = append(e.b, recordV1)
	encodeEventFields(&e, ev)
	if payload == nil {
		return e.b
	}
	fields := e.b[1:]
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(fields)+len(payload))
	out = append(out, eventV2)
	out = binary.AppendUvarint(out, uint64(len(fields)))
	out = append(out, fields...)
	return append(out, payload...)
}

func encodeEventFields(e *encoder, ev *bridge.Event) {
	e.time(ev.ReceivedAt)
	e.str(ev.Name)
	e.str(ev.TicketID)
	e.str(ev.OrderID)
	e.str(string(ev.State))
	e.str(ev.Error)
	e.uint(uint64(len(ev.Decisions)))
	for i := range ev.Decisions {
		d := &ev.Decisions[i]
		e.str(string(d.Outcome))
		e.str(d.Reason)
		e.str(d.OrderID)
		e.str(d.StatusID)
		e.str(d.StatusName)
		e.time(d.ChangedAt)
		e.str(d.ChangedAtText)
		e.uint(uint64(len(d.Deliveries)))
		for _, p := range d.Deliveries {
			e.str(p.Target)
			e.str(p.Status)
			e.str(p.Skip)
		}
		e.str(d.MappingVersion)
	}
	e.uint(uint64(len(ev.DeliveryIDs)))
	for _, id := range ev.DeliveryIDs {
		e.id(id)
	}
	e.bytes(ev.DedupKey)
}

// splitEvent returns an event record's fields (after the format byte) and
// its inline payload (nil when the payload is not inline).
func splitEvent(raw []byte) (fields, payload []byte, err error) {
	if len(raw) == 0 || raw[0] != eventV2 {
		return raw[min(1, len(raw)):], nil, nil
	}
	n, k := binary.Uvarint(raw[1:])
	if k <= 0 || n > uint64(len(raw)-1-k) {
		return nil, nil, fmt.Errorf("%w: bad event length", errCorrupt)
	}
	rest := raw[1+k:]
	return rest[:n], rest[n:], nil
}

// inlinePayload returns the stored payload inside an event record, or nil
// when the record has none (its payload is in the payloads bucket).
func inlinePayload(raw []byte) []byte {
	if _, p, err := splitEvent(raw); err == nil && p != nil {
		return p
	}
	return nil
}

func decodeEvent(key, raw []byte, ev *bridge.Event) error {
	fields, _, err := splitEvent(raw)
	if err != nil {
		return err
	}
	d := decoder{b: fields}
	*ev = bridge.Event{ID: idString(key)}
	ev.ReceivedAt = d.time()
	ev.Name = d.str()
	ev.TicketID = d.str()
	ev.OrderID = d.str()
	ev.State = bridge.EventState(d.str())
	ev.Error = d.str()
	if n := d.count(); n > 0 {
		ev.Decisions = make([]bridge.Decision, n)
		for i := range ev.Decisions {
			x := &ev.Decisions[i]
			x.Outcome = bridge.EventState(d.str())
			x.Reason = d.str()
			x.OrderID = d.str()
			x.StatusID = d.str()
			x.StatusName = d.str()
			x.ChangedAt = d.time()
			x.ChangedAtText = d.str()
			if m := d.count(); m > 0 {
				x.Deliveries = make([]bridge.Planned, m)
				for j := range x.Deliveries {
					x.Deliveries[j] = bridge.Planned{Target: d.str(), Status: d.str(), Skip: d.str()}
				}
			}
			x.MappingVersion = d.str()
		}
	}
	if n := d.count(); n > 0 {
		ev.DeliveryIDs = make([]string, n)
		for i := range ev.DeliveryIDs {
			ev.DeliveryIDs[i] = d.id()
		}
	}
	ev.DedupKey = d.bytes()
	return d.end()
}

func encodeDelivery(x *bridge.Delivery) []byte {
	e := encoder{b: make([]byte, 0, 128)}
	e.b = append(e.b, deliveryV2)
	e.id(x.EventID)
	e.str(x.OrderID)
	e.str(x.Target)
	e.str(x.Status)
	e.str(x.StatusID)
	e.time(x.CreatedAt)
	e.str(string(x.State))
	e.str(x.Reason)
	e.str(x.Result)
	e.bool(x.Force)
	e.time(x.NextAttemptAt)
	e.time(x.UpdatedAt)
	e.uint(uint64(len(x.Attempts)))
	for _, a := range x.Attempts {
		e.time(a.At)
		e.uint(uint64(max(a.StatusCode, 0)))
		e.int(int64(a.Duration))
		e.str(a.Error)
		e.str(a.Excerpt)
		encodeSentRequest(&e, a.Request)
	}
	e.id(x.RetryOf)
	e.id(x.ResolvedBy)
	if !isStatusDelivery(x) {
		e.b[0] = deliveryV3
		e.str(string(x.Kind))
		e.id(x.IntakeID)
	}
	return e.b
}

// isStatusDelivery reports whether x is written as deliveryV2: a status
// delivery without an intake.
func isStatusDelivery(x *bridge.Delivery) bool {
	return (x.Kind == "" || x.Kind == bridge.KindStatus) && x.IntakeID == ""
}

func decodeDelivery(key, raw []byte, x *bridge.Delivery) error {
	d := decoder{b: raw[1:]}
	*x = bridge.Delivery{ID: idString(key)}
	x.EventID = d.id()
	x.OrderID = d.str()
	x.Target = d.str()
	x.Status = d.str()
	x.StatusID = d.str()
	x.CreatedAt = d.time()
	x.State = bridge.DeliveryState(d.str())
	x.Reason = d.str()
	x.Result = d.str()
	x.Force = d.bool()
	x.NextAttemptAt = d.time()
	x.UpdatedAt = d.time()
	if n := d.count(); n > 0 {
		x.Attempts = make([]bridge.Attempt, n)
		for i := range x.Attempts {
			a := &x.Attempts[i]
			a.At = d.time()
			a.StatusCode = int(min(d.uint(), 999))
			a.Duration = time.Duration(d.int())
			a.Error = d.str()
			a.Excerpt = d.str()
			if raw[0] >= deliveryV2 {
				a.Request = decodeSentRequest(&d)
			}
		}
	}
	if raw[0] >= deliveryV2 {
		x.RetryOf = d.id()
		x.ResolvedBy = d.id()
	}
	x.Kind = bridge.KindStatus
	if raw[0] == deliveryV3 {
		if k := d.str(); k != "" {
			x.Kind = bridge.DeliveryKind(k)
		}
		x.IntakeID = d.id()
	}
	return d.end()
}

// deliveryState reads only a stored delivery's state: what deciding an
// order's next status needs of its last deliveries, without decoding their
// attempts and requests.
func deliveryState(key, raw []byte) (bridge.DeliveryState, error) {
	if len(raw) == 0 || (raw[0] != recordV1 && raw[0] != deliveryV2) {
		var d bridge.Delivery // JSON, from an old store
		if err := decodeRecord(key, raw, &d); err != nil {
			return "", err
		}
		return d.State, nil
	}
	d := decoder{b: raw[1:]}
	d.id()   // EventID
	d.str()  // OrderID
	d.str()  // Target
	d.str()  // Status
	d.str()  // StatusID
	d.time() // CreatedAt
	st := bridge.DeliveryState(d.str())
	return st, d.err
}

func encodeOrder(st *bridge.OrderState) []byte {
	e := encoder{b: make([]byte, 0, 48)}
	e.b = append(e.b, recordV1)
	e.time(st.Watermark)
	targets := make([]string, 0, len(st.Targets))
	for t := range st.Targets {
		targets = append(targets, t)
	}
	slices.Sort(targets)
	e.uint(uint64(len(targets)))
	for _, t := range targets {
		ts := st.Targets[t]
		e.str(t)
		e.str(ts.Status)
		e.id(ts.DeliveryID)
	}
	return e.b
}

func decodeOrder(raw []byte, st *bridge.OrderState) error {
	d := decoder{b: raw[1:]}
	*st = bridge.OrderState{Watermark: d.time()}
	if n := d.count(); n > 0 {
		st.Targets = make(map[string]bridge.TargetState, n)
		for range n {
			t := d.str()
			st.Targets[t] = bridge.TargetState{Status: d.str(), DeliveryID: d.id()}
		}
	}
	return d.end()
}

// encodeRecord encodes an *Event, *Delivery or *mapping.OrderState.
func encodeRecord(v any) ([]byte, error) {
	switch x := v.(type) {
	case *bridge.Event:
		return encodeEvent(x, nil), nil
	case eventPayload:
		return encodeEvent(x.ev, x.payload), nil
	case *bridge.Delivery:
		return encodeDelivery(x), nil
	case *bridge.OrderState:
		return encodeOrder(x), nil
	}
	return nil, fmt.Errorf("store: no record encoding for %T", v)
}

// decodeRecord decodes a stored record (binary, or JSON from older stores)
// into v; key is the record's key (the id of events and deliveries).
func decodeRecord(key, raw []byte, v any) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: empty", errCorrupt)
	}
	if raw[0] == '{' {
		if err := json.Unmarshal(raw, v); err != nil {
			return err
		}
		if x, ok := v.(*bridge.Delivery); ok && x.Kind == "" {
			x.Kind = bridge.KindStatus // written before kinds existed
		}
		return nil
	}
	if x, ok := v.(*bridge.Event); ok && (raw[0] == recordV1 || raw[0] == eventV2) {
		return decodeEvent(key, raw, x)
	}
	if x, ok := v.(*bridge.Delivery); ok && (raw[0] == recordV1 || raw[0] == deliveryV2 || raw[0] == deliveryV3) {
		return decodeDelivery(key, raw, x)
	}
	if raw[0] != recordV1 {
		return fmt.Errorf("%w: unknown format %#x", errCorrupt, raw[0])
	}
	switch x := v.(type) {
	case *bridge.Delivery:
		return decodeDelivery(key, raw, x)
	case *bridge.OrderState:
		return decodeOrder(raw, x)
	}
	return fmt.Errorf("store: no record decoding for %T", v)
}

// getRecord reads and decodes the record at key; found is false when there
// is none.
func getRecord(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := decodeRecord(key, raw, v); err != nil {
		return true, fmt.Errorf("store: decode %s record %x: %w", b.Tx().DB().Path(), key, err)
	}
	return true, nil
}

// putRecord encodes v and stores it at key. An event rewritten without its
// payload keeps the inline payload of the record it replaces: decoding never
// loads a payload, so every read-modify-write of an event passes this way.
func putRecord(b *bbolt.Bucket, key []byte, v any) error {
	if ev, ok := v.(*bridge.Event); ok {
		if p := inlinePayload(b.Get(key)); p != nil {
			v = eventPayload{ev, p} // copied into the new record by encodeEvent, before Put
		}
	}
	raw, err := encodeRecord(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}
