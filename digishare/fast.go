package digishare

import (
	"bytes"
	"encoding/json"
	"sort"
	"unicode/utf8"
)

// The fast path reads a well-shaped body in one pass over its bytes,
// validating the whole document as it goes and keeping only the fields the
// bridge needs; anything unusual (a wrong kind where an object belongs, a
// repeated or case-folded field name, an escaped key, deep nesting, an
// unreadable timestamp) makes it give up, and slowDecode, which walks the
// body level by level with encoding/json, decides and names the problem.
// Both must agree on every input: FuzzDecode checks it.
//
// It replaced a fast path that unmarshalled into typed structs with
// encoding/json: 35 µs and 89 allocations for a 1.2 KB webhook, a fifth of
// the server's CPU per webhook at saturation.

// maxScanDepth: deeper documents go to slowDecode (encoding/json allows 10,000).
const maxScanDepth = 64

// scanner walks one JSON document; every method leaves i after what it read
// and returns false on anything it does not accept.
type scanner struct {
	b     []byte
	i     int
	depth int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c, after whitespace, if it is next.
func (s *scanner) eat(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string and returns its contents' span and whether it holds
// escapes.
func (s *scanner) str() (start, end int, esc, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return 0, 0, false, false
	}
	s.i++
	start = s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			end = s.i
			s.i++
			return start, end, esc, true
		case c == '\\':
			esc = true
			if s.i+1 >= len(s.b) {
				return 0, 0, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+5 >= len(s.b) {
					return 0, 0, false, false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return 0, 0, false, false
					}
				}
				s.i += 6
			default:
				return 0, 0, false, false
			}
		case c < 0x20:
			return 0, 0, false, false
		default:
			s.i++
		}
	}
	return 0, 0, false, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number reads a number by JSON's grammar.
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return true
}

// value reads any value (after whitespace) and returns its span.
func (s *scanner) value() (start, end int, ok bool) {
	s.ws()
	start = s.i
	if s.i >= len(s.b) {
		return 0, 0, false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, _, ok = s.str()
	case c == '{':
		ok = s.members(func([]byte, bool) bool { _, _, ok := s.value(); return ok })
	case c == '[':
		ok = s.elements()
	case c == 't':
		ok = s.literal("true")
	case c == 'f':
		ok = s.literal("false")
	case c == 'n':
		ok = s.literal("null")
	case c == '-' || isDigit(c):
		ok = s.number()
	}
	return start, s.i, ok
}

func (s *scanner) literal(word string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	return true
}

func (s *scanner) elements() bool {
	if s.depth++; s.depth > maxScanDepth {
		return false
	}
	s.i++ // '['
	if s.eat(']') {
		s.depth--
		return true
	}
	for {
		if _, _, ok := s.value(); !ok {
			return false
		}
		if s.eat(']') {
			s.depth--
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// members reads the object at i (its '{' next), calling member with each
// key (raw, as written between the quotes) and whether it holds escapes;
// member must read the value.
func (s *scanner) members(member func(key []byte, esc bool) bool) bool {
	if s.depth++; s.depth > maxScanDepth {
		return false
	}
	s.i++ // '{'
	if s.eat('}') {
		s.depth--
		return true
	}
	for {
		s.ws()
		start, end, esc, ok := s.str()
		if !ok || !s.eat(':') || !member(s.b[start:end], esc) {
			return false
		}
		if s.eat('}') {
			s.depth--
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// objectOrNull reads null (found is false) or an object, calling member
// for each of its keys as members does.
func (s *scanner) objectOrNull(member func(key []byte, esc bool) bool) (found, ok bool) {
	switch s.next() {
	case 'n':
		return false, s.literal("null")
	case '{':
		return true, s.members(member)
	}
	return false, false
}

// next returns the first byte of the next value, after whitespace.
func (s *scanner) next() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// text is a scalar read as text: a string's value or a number's literal,
// with the kind of any value (its first byte).
type text struct {
	s    string
	kind byte
}

func (s *scanner) text(t *text) bool {
	start, end, ok := s.value()
	if !ok {
		return false
	}
	t.kind = s.b[start]
	v := s.b[start:end]
	switch {
	case t.kind == '"' && bytes.IndexByte(v, '\\') < 0:
		t.s = string(v[1 : len(v)-1])
	case t.kind == '"':
		return json.Unmarshal(v, &t.s) == nil
	case t.kind == '-' || isDigit(t.kind):
		t.s = string(v)
	}
	return true
}

func (t *text) scalar() bool { return t.kind == '"' || t.kind == '-' || isDigit(t.kind) }

// The fields read from each struct-like object of a webhook.
var (
	rootFields   = []string{"event", "data"}
	dataFields   = []string{"id", "data", "changes"}
	ticketFields = []string{"id", "external_id", "subject", "ticket_number", "type_ticket_id", "ticket_status_id", "information"}
	infoFields   = []string{"third", "campaign_data"}
)

// wanted returns a members callback for an object whose fields named in
// wanted are handed to read (with i at the value, which read must consume)
// and whose other fields are skipped. It gives up when encoding/json might
// read a key as a wanted name it is not written as (escapes, case folding)
// or when a wanted name repeats: slowDecode decides those.
func (s *scanner) wanted(wanted []string, read func(name string) bool) func(key []byte, esc bool) bool {
	var seen uint32
	return func(key []byte, esc bool) bool {
		if esc {
			return false
		}
		for i, w := range wanted {
			if string(key) == w {
				if seen&(1<<i) != 0 {
					return false
				}
				seen |= 1 << i
				return read(w)
			}
		}
		ascii := isASCII(key)
		for _, w := range wanted {
			if (len(key) == len(w) || !ascii) && bytes.EqualFold(key, []byte(w)) {
				return false
			}
		}
		_, _, ok := s.value()
		return ok
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// rawMap reads an object of any values into a map of their raw text;
// null leaves *m nil. Escaped or repeated keys give up.
func (s *scanner) rawMap(m *map[string]json.RawMessage) bool {
	seen := map[string]json.RawMessage{}
	found, ok := s.objectOrNull(func(key []byte, esc bool) bool {
		if _, dup := seen[string(key)]; dup || esc {
			return false
		}
		start, end, ok := s.value()
		seen[string(key)] = s.b[start:end:end]
		return ok
	})
	if found {
		*m = seen
	}
	return ok
}

// fastDecode returns ok=false whenever slowDecode must look.
func fastDecode(raw []byte) (*Update, bool) {
	if !utf8.Valid(raw) {
		return nil, false
	}
	// RawMessages point into one copy of the body, never into the caller's.
	s := &scanner{b: bytes.Clone(raw)}
	var (
		name, id                              text
		ticket                                Ticket
		tID, ext, subj, num, typ, status      text
		hasData, hasTicket, hasInfo, hasThird bool
		changes, campaign                     map[string]json.RawMessage
		third                                 map[string]string
	)
	info := s.wanted(infoFields, func(f string) (ok bool) {
		switch f {
		case "third":
			third = map[string]string{}
			hasThird, ok = s.objectOrNull(func(key []byte, esc bool) bool {
				var t text
				if _, dup := third[string(key)]; dup || esc || !s.text(&t) {
					return false
				}
				if t.scalar() {
					third[string(key)] = t.s
				}
				return true
			})
			return ok
		default: // campaign_data
			return s.rawMap(&campaign)
		}
	})
	tick := s.wanted(ticketFields, func(f string) (ok bool) {
		switch f {
		case "id":
			return s.text(&tID)
		case "external_id":
			return s.text(&ext)
		case "subject":
			return s.text(&subj)
		case "ticket_number":
			return s.text(&num)
		case "type_ticket_id":
			return s.text(&typ)
		case "ticket_status_id":
			return s.text(&status)
		default: // information
			hasInfo, ok = s.objectOrNull(info)
			return ok
		}
	})
	data := s.wanted(dataFields, func(f string) (ok bool) {
		switch f {
		case "id":
			return s.text(&id)
		case "data":
			hasTicket, ok = s.objectOrNull(tick)
			return ok
		default: // changes
			return s.rawMap(&changes)
		}
	})
	root := s.wanted(rootFields, func(f string) bool {
		if f == "event" {
			return s.text(&name)
		}
		if s.next() != '{' { // data
			return false
		}
		hasData = true
		return s.members(data)
	})
	if s.next() != '{' || !s.members(root) {
		return nil, false
	}
	if s.ws(); s.i != len(s.b) {
		return nil, false // trailing bytes
	}
	if name.kind != '"' || name.s == "" || !hasData || id.kind != '"' || id.s == "" {
		return nil, false
	}
	if !hasTicket && name.s == EventTicketUpdated {
		return nil, false
	}
	if hasInfo && (!hasThird || campaign == nil) {
		return nil, false // information present but third/campaign_data absent, null or odd: rare, be precise
	}
	ev := &Update{Name: name.s, TicketID: id.s, Changes: changes}
	if len(ev.Changes) == 0 {
		ev.Changes = nil
	}
	canonical, ok := canonicalObject(changes)
	if !ok {
		return nil, false
	}
	ev.DedupKey = dedupKey(ev.Name, ev.TicketID, canonical)
	if hasTicket {
		ticket = Ticket{ID: tID.s, ExternalID: ext.s, Subject: subj.s,
			TicketNumber: num.s, TypeTicketID: typ.s, StatusID: status.s}
		if hasInfo {
			ticket.Third, ticket.CampaignData = third, campaign
		}
		ev.Ticket = ticket
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
		if plainKey(k) {
			buf.WriteByte('"')
			buf.WriteString(k)
			buf.WriteString(`":`)
		} else {
			if err := enc.Encode(k); err != nil {
				return nil, false
			}
			buf.Truncate(buf.Len() - 1) // Encode's newline
			buf.WriteByte(':')
		}
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

// plainKey reports whether k encodes as itself between quotes.
func plainKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c == '"' || c == '\\' || c == 0xE2 {
			return false
		}
	}
	return true
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
