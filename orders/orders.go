// Package orders reads orders in the order system's shape (the document of
// GET /_ah/api/esb/v2/order/{orderId}: orderId, orderDate, shippingAddress,
// billingAddress, items[], orderTotal, …) as posted to the intake endpoint:
// it checks the one field it needs (orderId), keeps the body byte for byte,
// and gives the content key that tells a repeat from an update.
//
// The package does no I/O. Every value of the order stays reachable by dotted
// path (Text, Value) with numbers exactly as written in the body.
package orders

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrNotJSON is returned (wrapped, with the detail) by Decode when the body is
// empty, not valid UTF-8 or not JSON: the intake answers 400.
var ErrNotJSON = errors.New("body is not JSON")

// InvalidError is returned by Decode for JSON that is not an order: not an
// object, or without a usable orderId. The intake answers 422 with Reason.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "not an order: " + e.Reason }

// Order is one decoded order document.
type Order struct {
	// ID is the orderId as text: a string's value without surrounding
	// spaces, or a number's literal as written (44212809, 1e3).
	ID string
	// IDOnly is true when the body is an object with orderId and nothing
	// else: the order must be fetched from the order system, and such a
	// body is never a duplicate by itself (compare the fetched document).
	IDOnly bool
	// Raw is the body exactly as received.
	Raw []byte
	// Key is the SHA-256 of the canonical JSON of the body (object keys
	// sorted, no insignificant whitespace, numbers as written, the last of
	// duplicate keys): the same order in another key order or layout has
	// the same Key; any change of a value changes it.
	Key [32]byte

	doc map[string]any // numbers as json.Number
}

// Decode parses an intake body. It returns an error wrapping ErrNotJSON when
// the body is not JSON, an *InvalidError when it is JSON but not an order
// (the reason names what is wrong), and never panics. Unknown fields are
// accepted and kept.
func Decode(raw []byte) (*Order, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrNotJSON)
	}
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrNotJSON)
	}
	v, err := decodeValue(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, &InvalidError{Reason: "the body is a JSON " + kind(v) + ", not an object with orderId"}
	}
	id, err := normaliseID(doc)
	if err != nil {
		return nil, err
	}
	canon, err := encodeCanonical(doc)
	if err != nil { // cannot happen for a decoded document; kept as a 400
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	return &Order{
		ID:     id,
		IDOnly: len(doc) == 1,
		Raw:    bytes.Clone(raw),
		Key:    sha256.Sum256(canon),
		doc:    doc,
	}, nil
}

func normaliseID(doc map[string]any) (string, error) {
	v, ok := doc["orderId"]
	if !ok {
		return "", &InvalidError{Reason: "missing orderId"}
	}
	switch x := v.(type) {
	case string:
		id := strings.TrimSpace(x)
		if id == "" {
			return "", &InvalidError{Reason: "orderId is an empty string"}
		}
		return id, nil
	case json.Number:
		return x.String(), nil
	}
	return "", &InvalidError{Reason: "orderId is " + article(kind(v)) + ", not a non-empty string or a number"}
}

// Canonical returns the canonical JSON of a JSON document: object keys sorted,
// no insignificant whitespace, numbers as written, strings re-encoded (so
// "\u0041" and "A" are the same), HTML characters not escaped.
func Canonical(raw []byte) ([]byte, error) {
	v, err := decodeValue(raw)
	if err != nil {
		return nil, err
	}
	return encodeCanonical(v)
}

// decodeValue decodes one JSON value with numbers kept as json.Number; it
// refuses trailing data.
func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

func encodeCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps are encoded with sorted keys
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Value returns the value at a dotted path ("shippingAddress.city",
// "items.0.invoiceUrl": a number indexes an array). ok is false when the path
// leads nowhere or to null. Objects are map[string]any, arrays []any, numbers
// json.Number.
func (o *Order) Value(path string) (any, bool) {
	if o == nil || path == "" {
		return nil, false
	}
	var cur any = o.doc
	for _, seg := range strings.Split(path, ".") {
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, ok := index(seg)
			if !ok || i >= len(x) {
				return nil, false
			}
			cur = x[i]
		default:
			return nil, false
		}
	}
	return cur, cur != nil
}

// Text returns the value at a dotted path as text: a string as is, a number
// as written in the order, true/false, an object or array as its compact
// JSON. ok is false when the value is missing, null or an empty string.
func (o *Order) Text(path string) (string, bool) {
	v, ok := o.Value(path)
	if !ok {
		return "", false
	}
	s := text(v)
	return s, s != ""
}

// index reads an array index: decimal digits only.
func index(seg string) (int, bool) {
	if seg == "" || len(seg) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range seg {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	b, err := encodeCanonical(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// Number returns the value at path as a JSON number literal, as written: a
// number, or a string holding one ("500.00"). ok is false otherwise.
func (o *Order) Number(path string) (json.Number, bool) {
	v, ok := o.Value(path)
	if !ok {
		return "", false
	}
	switch x := v.(type) {
	case json.Number:
		return x, true
	case string:
		s := strings.TrimSpace(x)
		if isJSONNumber(s) {
			return json.Number(s), true
		}
	}
	return "", false
}

// Len returns the length of the array at path (0 when it is not an array).
func (o *Order) Len(path string) int {
	v, _ := o.Value(path)
	a, _ := v.([]any)
	return len(a)
}

// ItemsCount is the sum of items[].quantity as decimal text. ok is false
// when items is not an array or a quantity is not a whole number ≥ 0 (a
// number or a string holding one); an empty items array counts "0".
func (o *Order) ItemsCount() (string, bool) {
	v, _ := o.Value("items")
	items, ok := v.([]any)
	if !ok {
		return "", false
	}
	var sum int64
	for i := range items {
		q, ok := o.Number("items." + strconv.Itoa(i) + ".quantity")
		if !ok {
			return "", false
		}
		n, err := strconv.ParseInt(q.String(), 10, 64)
		if err != nil || n < 0 || sum > (1<<62)-n {
			return "", false
		}
		sum += n
	}
	return strconv.FormatInt(sum, 10), true
}

// Email is the customer's email: the shipping address's, else the billing
// address's ("" when neither has one).
func (o *Order) Email() string {
	for _, p := range []string{"shippingAddress.email", "billingAddress.email"} {
		if s, ok := o.Text(p); ok && strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// DateLayouts are the zone-less forms of orderDate that ParseDate reads
// (a fractional second, as in "2023-12-19 09:22:09.0", is accepted by each).
var DateLayouts = []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05"}

// ParseDate reads an order system date. The documented form has no zone
// ("2023-12-19 09:22:09.0") and is read in loc (nil: UTC); an RFC 3339 date
// with its own offset keeps it.
func ParseDate(s string, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	s = strings.TrimSpace(s)
	for _, layout := range DateLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date like 2023-12-19 09:22:09.0", truncate(s, 40))
}

// Date reads orderDate in loc (see ParseDate).
func (o *Order) Date(loc *time.Location) (time.Time, error) {
	s, ok := o.Text("orderDate")
	if !ok {
		return time.Time{}, errors.New("orderDate is missing")
	}
	t, err := ParseDate(s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("orderDate: %w", err)
	}
	return t, nil
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func article(k string) string {
	switch k {
	case "null":
		return "null"
	case "object", "array":
		return "an " + k
	}
	return "a " + k
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// isJSONNumber reports whether s is a JSON number literal.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}
