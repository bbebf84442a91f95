// Package placeholder fills request templates with values from a delivery:
// {order_id}, {status}, {ticket_id}, {ticket_number}, {status_id},
// {status_name}, {changed_at}, {third.KEY} and {campaign_data.KEY}.
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

// token matches anything that looks like a placeholder; other braces (JSON-ish
// text such as "{ }") are left alone.
var token = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_.\-]*)\}`)

// MissingError says a placeholder had no value: the delivery fails
// permanently rather than sending the placeholder literally.
type MissingError struct{ Name string }

func (e *MissingError) Error() string {
	return fmt.Sprintf("placeholder {%s} has no value (missing, null or empty)", e.Name)
}

// Check returns an error naming the first unknown placeholder in s.
func Check(s string) error {
	for _, m := range token.FindAllStringSubmatch(s, -1) {
		if !known(m[1]) {
			return fmt.Errorf("unknown placeholder {%s} (known: {%s}, {third.KEY}, {campaign_data.KEY})",
				m[1], strings.Join(Names, "}, {"))
		}
	}
	return nil
}

// CheckValue checks every string in a free-form value (a request body).
func CheckValue(v any) error {
	var first error
	walk(v, func(s string) string {
		if err := Check(s); err != nil && first == nil {
			first = err
		}
		return s
	})
	return first
}

func known(name string) bool {
	for _, n := range Names {
		if name == n {
			return true
		}
	}
	for _, p := range Prefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

// Lookup returns a placeholder's value; ok is false when it has none.
type Lookup func(name string) (value string, ok bool)

// Render replaces every placeholder in s, passing each value through escape
// (nil: as is). A missing or empty value returns *MissingError.
func Render(s string, look Lookup, escape func(string) string) (string, error) {
	var err error
	out := token.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		if !known(name) {
			return m
		}
		v, ok := look(name)
		if !ok || v == "" {
			if err == nil {
				err = &MissingError{Name: name}
			}
			return m
		}
		if escape != nil {
			return escape(v)
		}
		return v
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
