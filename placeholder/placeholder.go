// Package placeholder fills request templates with values. A template
// names a value as {name}; {a|b} takes the first of a, b that has a value.
// Which names a template may use is its Vocabulary: Status for the delivery
// requests of a ticket status change ({order_id}, {status}, {ticket_id},
// {ticket_number}, {status_id}, {status_name}, {changed_at}, {third.KEY},
// {campaign_data.KEY}; the package-level functions use it) and Order for the
// Digishare ticket made from an order ({order.PATH}, {wa_id}, {items_count}).
// Config validation and the outbound clients share it, so what config check
// accepts is exactly what deliveries can render.
package placeholder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Names are the placeholders without a key.
var Names = []string{"order_id", "status", "ticket_id", "ticket_number", "status_id", "status_name", "changed_at"}

// Prefixes are the placeholders that take a key: {third.email}.
var Prefixes = []string{"third.", "campaign_data."}

// Vocabulary is the set of placeholders one kind of template may use.
type Vocabulary struct {
	Names    []string // whole names: {status}
	Prefixes []string // a prefix and any key: {third.email}, {campaign_data.a.b}
	Paths    []string // a prefix and a dotted path of non-empty segments: {order.items.0.sku}
}

// Status is the vocabulary of delivery requests made for a status change.
var Status = Vocabulary{Names: Names, Prefixes: Prefixes}

// Order is the vocabulary of the Digishare ticket made from an order:
// {order.PATH} (any value of the order by dotted path; numbers index
// arrays), {wa_id} and {items_count}.
var Order = Vocabulary{Names: []string{"wa_id", "items_count"}, Paths: []string{"order."}}

// token matches anything that looks like a placeholder, alternatives
// included ({a|b}); other braces (JSON-ish text such as "{ }") are left alone.
var token = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_.\-]*(?:\|[A-Za-z_][A-Za-z0-9_.\-]*)*)\}`)

// MissingError says a placeholder had no value: the delivery fails
// permanently rather than sending the placeholder literally. Name is the
// placeholder as written inside its braces (a|b for alternatives).
type MissingError struct{ Name string }

func (e *MissingError) Error() string {
	if strings.Contains(e.Name, "|") {
		return fmt.Sprintf("placeholder {%s} has no value (none of its alternatives has one)", e.Name)
	}
	return fmt.Sprintf("placeholder {%s} has no value (missing, null or empty)", e.Name)
}

// Check returns an error naming the first unknown placeholder in s (Status).
func Check(s string) error { return Status.Check(s) }

// CheckValue checks every string in a free-form value (a request body) (Status).
func CheckValue(v any) error { return Status.CheckValue(v) }

// Check returns an error naming the first unknown placeholder in s.
func (voc Vocabulary) Check(s string) error {
	for _, m := range token.FindAllStringSubmatch(s, -1) {
		for _, alt := range strings.Split(m[1], "|") {
			if !voc.known(alt) {
				return fmt.Errorf("unknown placeholder {%s} (known: %s)", alt, voc.help())
			}
		}
	}
	return nil
}

// CheckValue checks every string in a free-form value (a request body).
func (voc Vocabulary) CheckValue(v any) error {
	var first error
	walk(v, func(s string) string {
		if err := voc.Check(s); err != nil && first == nil {
			first = err
		}
		return s
	})
	return first
}

// Uses returns the placeholders of s as written inside their braces, in
// order ("order.orderId", "a|b").
func Uses(s string) []string {
	var out []string
	for _, m := range token.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func (voc Vocabulary) help() string {
	var h []string
	for _, n := range voc.Names {
		h = append(h, "{"+n+"}")
	}
	for _, p := range voc.Prefixes {
		h = append(h, "{"+p+"KEY}")
	}
	for _, p := range voc.Paths {
		h = append(h, "{"+p+"PATH}")
	}
	return strings.Join(h, ", ")
}

func (voc Vocabulary) known(name string) bool {
	for _, n := range voc.Names {
		if name == n {
			return true
		}
	}
	for _, p := range voc.Prefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	for _, p := range voc.Paths {
		if rest, ok := strings.CutPrefix(name, p); ok && rest != "" && !strings.Contains("."+rest+".", "..") {
			return true
		}
	}
	return false
}

// Lookup returns a placeholder's value; ok is false when it has none.
type Lookup func(name string) (value string, ok bool)

// Render replaces every placeholder in s, passing each value through escape
// (nil: as is) (Status). A missing or empty value returns *MissingError.
func Render(s string, look Lookup, escape func(string) string) (string, error) {
	return Status.Render(s, look, escape)
}

// Render replaces every placeholder in s, passing each value through escape
// (nil: as is); {a|b} takes the first alternative with a value. A missing or
// empty value returns *MissingError (the first one); unknown placeholders are
// left as written. Values are inserted once: a value that looks like a
// placeholder is not expanded again.
func (voc Vocabulary) Render(s string, look Lookup, escape func(string) string) (string, error) {
	var err error
	out := token.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		alts := strings.Split(name, "|")
		for _, alt := range alts {
			if !voc.known(alt) {
				return m
			}
		}
		for _, alt := range alts {
			if v, ok := look(alt); ok && v != "" {
				if escape != nil {
					return escape(v)
				}
				return v
			}
		}
		if err == nil {
			err = &MissingError{Name: name}
		}
		return m
	})
	return out, err
}

// RenderURL renders a URL template: values are path-escaped before the '?'
// and query-escaped after it.
func RenderURL(tmpl string, look Lookup) (string, error) {
	path, query, hasQuery := strings.Cut(tmpl, "?")
	p, err := Render(path, look, url.PathEscape)
	if err != nil {
		return "", err
	}
	if !hasQuery {
		return p, nil
	}
	q, err := Render(query, look, url.QueryEscape)
	if err != nil {
		return "", err
	}
	return p + "?" + q, nil
}

// RenderHeader renders a header value; CR and LF are removed from values so a
// customer's data cannot inject headers.
func RenderHeader(tmpl string, look Lookup) (string, error) {
	return Render(tmpl, look, func(v string) string {
		return strings.NewReplacer("\r", "", "\n", "").Replace(v)
	})
}

// RenderJSON renders every string of a free-form body and encodes it as JSON.
// Values are inserted as Go strings before encoding, so quotes, backslashes,
// braces and any Unicode stay valid JSON and arrive byte for byte (HTML
// characters are not escaped).
func RenderJSON(body any, look Lookup) ([]byte, error) {
	var err error
	rendered := walk(body, func(s string) string {
		out, e := Render(s, look, nil)
		if e != nil && err == nil {
			err = e
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if e := enc.Encode(rendered); e != nil {
		return nil, fmt.Errorf("placeholder: encode body: %w", e)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// walk returns a copy of v with f applied to every string (map keys kept).
func walk(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic error reporting
		out := make(map[string]any, len(x))
		for _, k := range keys {
			out[k] = walk(x[k], f)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = walk(x[i], f)
		}
		return out
	}
	return v
}
