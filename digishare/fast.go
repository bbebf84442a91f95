package digishare

import (
	"bytes"
	"encoding/json"
	"sort"
	"unicode/utf8"
)

// The fast path decodes a well-shaped body in one pass of encoding/json into
// typed structs; anything unusual (a wrong kind anywhere, a syntax error, an
// unreadable timestamp) makes it give up, and slowDecode, which walks the
// body level by level, decides and names the problem. Both must agree on
// every input: FuzzDecode checks it.

// jtext records a JSON scalar as text (a string's value or a number's
// literal) and the kind of any value, without failing on the unexpected.
type jtext struct {
	s    string
	kind byte // first byte of the value: '"', '{', '[', 't', 'f', 'n', or a digit/'-'
}

func (t *jtext) UnmarshalJSON(b []byte) error {
	t.kind = b[0]
	switch {
	case t.kind == '"':
		if bytes.IndexByte(b, '\\') < 0 {
			t.s = string(b[1 : len(b)-1]) // no escapes: the bytes are the value
			return nil
		}
		return json.Unmarshal(b, &t.s)
	case t.kind == '-' || (t.kind >= '0' && t.kind <= '9'):
		t.s = string(b)
	}
	return nil
}

func (t *jtext) scalar() bool {
	return t.kind == '"' || t.kind == '-' || (t.kind >= '0' && t.kind <= '9')
}

type fastRoot struct {
	Event *jtext    `json:"event"`
	Data  *fastData `json:"data"`
}

type fastData struct {
	ID      *jtext                     `json:"id"`
	Data    *fastTicket                `json:"data"`
	Changes map[string]json.RawMessage `json:"changes"`
}

type fastTicket struct {
	ID           jtext     `json:"id"`
	ExternalID   jtext     `json:"external_id"`
	Subject      jtext     `json:"subject"`
	TicketNumber jtext     `json:"ticket_number"`
	TypeTicketID jtext     `json:"type_ticket_id"`
	StatusID     jtext     `json:"ticket_status_id"`
	Information  *fastInfo `json:"information"`
}

type fastInfo struct {
	Third        map[string]jtext           `json:"third"`
	CampaignData map[string]json.RawMessage `json:"campaign_data"`
}

// fastDecode returns ok=false whenever slowDecode must look.
func fastDecode(raw []byte) (*Event, bool) {
	if !utf8.Valid(raw) {
		return nil, false
	}
	var w fastRoot
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, false // syntax or kind error: let the precise path say which
	}
	if w.Event == nil || w.Event.kind != '"' || w.Event.s == "" || w.Data == nil ||
		w.Data.ID == nil || w.Data.ID.kind != '"' || w.Data.ID.s == "" {
		return nil, false
	}
	if w.Data.Data == nil && w.Event.s == EventTicketUpdated {
		return nil, false
	}
	if w.Data.Data != nil && w.Data.Data.Information != nil && (w.Data.Data.Information.Third == nil || w.Data.Data.Information.CampaignData == nil) {
		return nil, false // information present but third/campaign_data absent, null or odd: rare, be precise
	}
	ev := &Event{Name: w.Event.s, TicketID: w.Data.ID.s, Changes: w.Data.Changes}
	if len(ev.Changes) == 0 {
		ev.Changes = nil
	}
	canonical, ok := canonicalObject(w.Data.Changes)
	if !ok {
		return nil, false
	}
	ev.DedupKey = dedupKey(ev.Name, ev.TicketID, canonical)
	if t := w.Data.Data; t != nil {
		ev.Ticket = Ticket{ID: t.ID.s, ExternalID: t.ExternalID.s, Subject: t.Subject.s,
			TicketNumber: t.TicketNumber.s, TypeTicketID: t.TypeTicketID.s, StatusID: t.StatusID.s}
		if info := t.Information; info != nil {
			ev.Ticket.Third = make(map[string]string, len(info.Third))
			for k, v := range info.Third {
				if v.scalar() {
					ev.Ticket.Third[k] = v.s
				}
			}
			ev.Ticket.CampaignData = info.CampaignData
		}
	}
	if ev.Name == EventTicketUpdated {
		for _, k := range []string{"date_status", "updated_at"} {
			if s, present := ev.ChangeString(k); present && s != "" {
				if _, err := ParseTime(s); err != nil {
					return nil, false
				}
			}
		}
	}
	return ev, true
}

// canonicalObject encodes changes exactly as canonicalJSON encodes the whole
// object (sorted keys, no whitespace, numbers as written, HTML not escaped),
// value by value. nil means {}.
func canonicalObject(m map[string]json.RawMessage) ([]byte, bool) {
	if len(m) == 0 {
		return []byte("{}"), true
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(k); err != nil {
			return nil, false
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
		buf.WriteByte(':')
		if v := bytes.TrimSpace(m[k]); plainScalar(v) {
			buf.Write(v) // already canonical
			continue
		}
		v, err := canonicalJSON(m[k])
		if err != nil {
			return nil, false
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), true
}

// plainScalar reports whether v is already in canonical form: a number, a
// literal, or a string without escapes and without the characters the
// encoder escapes (U+2028, U+2029: their UTF-8 starts with 0xE2).
func plainScalar(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	switch c := v[0]; {
	case c == '"':
		return bytes.IndexByte(v, '\\') < 0 && bytes.IndexByte(v, 0xE2) < 0
	case c == '-' || (c >= '0' && c <= '9'), c == 't', c == 'f', c == 'n':
		return true
	}
	return false
}
