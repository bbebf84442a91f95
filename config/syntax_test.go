package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// breakLine returns the example config with the line holding old replaced
// by new, and that line's number.
func breakLine(t *testing.T, old, new string) (string, int) {
	t.Helper()
	raw, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i, l := range lines {
		if strings.Contains(l, old) {
			lines[i] = strings.Replace(l, old, new, 1)
			return strings.Join(lines, "\n"), i + 1
		}
	}
	t.Fatalf("%q not in the example config", old)
	return "", 0
}

// TestSyntaxErrorsPointAtTheirLine: a YAML syntax error is reported at the
// line (and column) where it is, with the nearest key path, not at the line
// before (where the parser's construct began, counted from 0).
func TestSyntaxErrorsPointAtTheirLine(t *testing.T) {
	for _, c := range []struct {
		name, old, new string
		col            int
		path, msg      string
	}{
		{"missing }", "log: { level: info, format: text }", "log: { level: info, format: text", 6, "log", `"{" here is not closed`},
		{"missing } nested", "http: { crm: confirmed }", "http: { crm: confirmed", 13, "mapping.statuses.yqdwrbka7kz69v8e.http", `"{" here is not closed`},
		{"unterminated quote", `strip_prefix: "ORDER-"`, `strip_prefix: "ORDER-`, 17, "order_id.strip_prefix", "quoted value starting here is not closed"},
		{"unterminated quote in mapping", `x9q3wrlv0m7vzea8: { name: Awaiting confirmation`, `x9q3wrlv0m7vzea8: { name: "Awaiting confirmation`, 31, "mapping.statuses.x9q3wrlv0m7vzea8", "quoted value starting here is not closed"},
		{"tab", "  path: data/statusbridge.db", "\tpath: data/statusbridge.db", 1, "store.path", "tab"},
		{"bad indentation", "  retention: 2160h", "   retention: 2160h", 4, "store.retention", "expected key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, line := breakLine(t, c.old, c.new)
			_, err := Parse([]byte(doc), env(nil))
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 {
				t.Fatalf("Parse = %v, want one problem", err)
			}
			p := ce.Problems[0]
			if p.Line != line || p.Column != c.col || p.Path != c.path || !strings.Contains(p.Message, c.msg) {
				t.Errorf("problem = line %d column %d path %q %q; want line %d column %d path %q, containing %q",
					p.Line, p.Column, p.Path, p.Message, line, c.col, c.path, c.msg)
			}
		})
	}
	// The first line, which the parser reports with no line at all.
	_, err := Parse([]byte("listen: a: b\nlog: {}\n"), env(nil))
	var ce *Error
	if !errors.As(err, &ce) || ce.Problems[0].Line != 1 || ce.Problems[0].Path != "listen" {
		t.Errorf("error on line 1 = %v", err)
	}
}
