// Package digishare owns the format of Digishare's webhook calls: it decodes a
// raw body into an Event, tells unusable bodies (not JSON) from JSON of the
// wrong shape, computes the dedup key and parses Digishare's zone-less
// timestamps. It does no I/O.
package digishare

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// EventTicketUpdated is the only event name statusbridge acts on.
const EventTicketUpdated = "ticket.updated"

// TimeLayout is the layout of the timestamps inside `changes` (no zone; read as UTC).
const TimeLayout = "2006-01-02 15:04:05"

// ErrNotJSON is returned (wrapped) by Decode when the body is empty, is not
// valid UTF-8 or is not JSON at all. Such a body cannot be stored usefully:
// the receiver answers 400.
var ErrNotJSON = errors.New("body is not JSON")

// ShapeError is returned by Decode for JSON whose shape is wrong (a missing
// event name, a non-string data.id, ...). Retrying cannot fix it, so the
// receiver stores the event as invalid and acknowledges it with 202.
type ShapeError struct{ Reason string }

func (e *ShapeError) Error() string { return "invalid shape: " + e.Reason }

// Event is a decoded webhook call. Only the fields the bridge needs are
// decoded; the raw body is kept by the caller byte for byte.
type Update struct {
	Name     string // "ticket.updated", "ticket.created", ...
	TicketID string // data.id
	Ticket   Ticket // data.data (zero when absent on events other than ticket.updated)
	// Changes is data.changes: only the fields this update changed. Values are
	// kept as raw JSON; use ChangeString to read one as a string.
	Changes map[string]json.RawMessage
	// DedupKey identifies repeats: sha256 of the event name, data.id and the
	// canonical form of changes (a missing changes counts as {}).
	DedupKey [32]byte
}

// Ticket holds the ticket fields the bridge reads from data.data. Numbers sent
// where strings belong are accepted as their decimal text.
type Ticket struct {
	ID           string
	ExternalID   string
	Subject      string
	TicketNumber string
	TypeTicketID string
	StatusID     string
	Third        map[string]string // information.third (string and number values only)
	CampaignData map[string]json.RawMessage
}

// StatusID returns changes.ticket_status_id and whether the update changed the status.
func (e *Update) StatusID() (string, bool) {
	return e.ChangeString("ticket_status_id")
}

// ChangeString returns a field of changes as a string (a JSON string, or a
// number's text) and whether it was present and non-null.
func (e *Update) ChangeString(key string) (string, bool) {
	raw, ok := e.Changes[key]
	if !ok {
		return "", false
	}
	return scalar(raw)
}

// ChangedAt returns the Digishare timestamp of the update: changes.date_status,
// else changes.updated_at, with the text as received. ok is false when neither
// is present.
func (e *Update) ChangedAt() (t time.Time, text string, ok bool) {
	for _, k := range []string{"date_status", "updated_at"} {
		if s, present := e.ChangeString(k); present && s != "" {
			if t, err := ParseTime(s); err == nil {
				return t, s, true
			}
		}
	}
	return time.Time{}, "", false
}

// UpdatedAt returns the Digishare time of the change itself:
// changes.updated_at, else changes.date_status (zero and false when neither
// is present and readable). Repeats of an update carry the same changes, so
// the same time: a store may lead its dedup keys with it, so that the keys
// of new updates sort last (see bridge.DedupKey).
func (e *Update) UpdatedAt() (time.Time, bool) {
	for _, k := range []string{"updated_at", "date_status"} {
		if s, present := e.ChangeString(k); present && s != "" {
			if t, err := ParseTime(s); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// ParseTime reads a Digishare timestamp: "YYYY-MM-DD HH:MM:SS" (optionally with
// fractional seconds) as UTC, or RFC 3339.
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{TimeLayout, "2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("digishare: timestamp %q is not YYYY-MM-DD HH:MM:SS", s)
}

// CampaignString returns campaign_data[key] as a string (string or number) and
// whether it is present, non-null and non-empty.
func (t *Ticket) CampaignString(key string) (string, bool) {
	raw, ok := t.CampaignData[key]
	if !ok {
		return "", false
	}
	s, ok := scalar(raw)
	return s, ok && s != ""
}

type wireEnvelope struct {
	Event *json.RawMessage `json:"event"`
	Data  *json.RawMessage `json:"data"`
}

type wireData struct {
	ID      *json.RawMessage `json:"id"`
	Data    *json.RawMessage `json:"data"`
	Changes *json.RawMessage `json:"changes"`
}

type wireTicket struct {
	ID           json.RawMessage `json:"id"`
	ExternalID   json.RawMessage `json:"external_id"`
	Subject      json.RawMessage `json:"subject"`
	TicketNumber json.RawMessage `json:"ticket_number"`
	TypeTicketID json.RawMessage `json:"type_ticket_id"`
	StatusID     json.RawMessage `json:"ticket_status_id"`
	Information  json.RawMessage `json:"information"`
}

type wireInformation struct {
	Third        json.RawMessage `json:"third"`
	CampaignData json.RawMessage `json:"campaign_data"`
}

// Decode parses a webhook body. It returns an error wrapping ErrNotJSON when
// the body is not usable JSON, a *ShapeError when it is JSON of the wrong
// shape (the returned Event then still carries the name and dedup key), and
// never panics.
//
// Shape rules: the body is an object; `event` is a non-empty string; `data` is
// an object whose `id` is a non-empty string; `data.changes`, when present and
// not null, is an object; `data.data` is an object (it may be absent, except on
// ticket.updated). Unknown fields are accepted everywhere.
func Decode(raw []byte) (*Update, error) {
	if ev, ok := fastDecode(raw); ok {
		return ev, nil
	}
	return slowDecode(raw)
}

// slowDecode is the precise decoder: it walks the body level by level so it
// can name exactly what is wrong. Decode uses it when the one-pass fastDecode
// cannot vouch for the body.
func slowDecode(raw []byte) (*Update, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrNotJSON)
	}
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrNotJSON)
	}
	if !json.Valid(raw) {
		// Unmarshal into a throwaway value only to get a precise message.
		var v any
		err := json.Unmarshal(raw, &v)
		if err == nil {
			err = errors.New("syntax error")
		}
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	ev := &Update{}
	// Until the shape is known, repeats of the same bad body dedup on its bytes.
	ev.DedupKey = sha256.Sum256(raw)

	var env wireEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return ev, &ShapeError{Reason: "body is not a JSON object"}
	}
	if env.Event == nil || isNull(*env.Event) {
		return ev, &ShapeError{Reason: "missing event"}
	}
	if err := json.Unmarshal(*env.Event, &ev.Name); err != nil || ev.Name == "" {
		return ev, &ShapeError{Reason: "event is not a non-empty string"}
	}
	if env.Data == nil || !isObject(*env.Data) {
		return ev, &ShapeError{Reason: "data is not an object"}
	}
	var d wireData
	if err := json.Unmarshal(*env.Data, &d); err != nil {
		return ev, &ShapeError{Reason: "data: " + err.Error()}
	}
	if d.ID == nil || isNull(*d.ID) {
		return ev, &ShapeError{Reason: "missing data.id"}
	}
	if err := json.Unmarshal(*d.ID, &ev.TicketID); err != nil || ev.TicketID == "" {
		return ev, &ShapeError{Reason: "data.id is not a non-empty string"}
	}
	canonical := []byte("{}")
	if d.Changes != nil && !isNull(*d.Changes) {
		if !isObject(*d.Changes) {
			return ev, &ShapeError{Reason: "data.changes is not an object"}
		}
		if err := json.Unmarshal(*d.Changes, &ev.Changes); err != nil {
			return ev, &ShapeError{Reason: "data.changes: " + err.Error()}
		}
		c, err := canonicalJSON(*d.Changes)
		if err != nil {
			return ev, &ShapeError{Reason: "data.changes: " + err.Error()}
		}
		canonical = c
	}
	ev.DedupKey = dedupKey(ev.Name, ev.TicketID, canonical)

	switch {
	case d.Data != nil && !isNull(*d.Data):
		if !isObject(*d.Data) {
			return ev, &ShapeError{Reason: "data.data is not an object"}
		}
		if err := decodeTicket(*d.Data, &ev.Ticket); err != nil {
			return ev, err
		}
	case ev.Name == EventTicketUpdated:
		return ev, &ShapeError{Reason: "missing data.data"}
	}
	if ev.Name == EventTicketUpdated {
		for _, k := range []string{"date_status", "updated_at"} {
			if s, ok := ev.ChangeString(k); ok && s != "" {
				if _, err := ParseTime(s); err != nil {
					return ev, &ShapeError{Reason: "data.changes." + k + ": " + err.Error()}
				}
			}
		}
	}
	return ev, nil
}

func decodeTicket(raw json.RawMessage, t *Ticket) error {
	var w wireTicket
	if err := json.Unmarshal(raw, &w); err != nil {
		return &ShapeError{Reason: "data.data: " + err.Error()}
	}
	t.ID, _ = scalar(w.ID)
	t.ExternalID, _ = scalar(w.ExternalID)
	t.Subject, _ = scalar(w.Subject)
	t.TicketNumber, _ = scalar(w.TicketNumber)
	t.TypeTicketID, _ = scalar(w.TypeTicketID)
	t.StatusID, _ = scalar(w.StatusID)
	if !isObject(w.Information) {
		return nil // absent or of another type: no third, no campaign data
	}
	var info wireInformation
	if err := json.Unmarshal(w.Information, &info); err != nil {
		return nil
	}
	if isObject(info.Third) {
		var m map[string]json.RawMessage
		if json.Unmarshal(info.Third, &m) == nil {
			t.Third = make(map[string]string, len(m))
			for k, v := range m {
				if s, ok := scalar(v); ok {
					t.Third[k] = s
				}
			}
		}
	}
	if isObject(info.CampaignData) {
		_ = json.Unmarshal(info.CampaignData, &t.CampaignData)
	}
	return nil
}

func dedupKey(name, ticketID string, canonicalChanges []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(ticketID))
	h.Write([]byte{0})
	h.Write(canonicalChanges)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// canonicalJSON re-encodes a JSON value with object keys sorted and no
// insignificant whitespace; numbers keep their literal text.
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps are encoded with sorted keys
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// scalar returns a JSON string's value or a number's text; ok is false for
// absent, null, objects, arrays and booleans.
func scalar(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case c == '-' || (c >= '0' && c <= '9'):
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return "", false
		}
		return n.String(), true
	}
	return "", false
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}
