package postgres

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// PostgreSQL's text and jsonb hold no NUL character and only valid UTF-8,
// while a webhook's strings (a JSON "\u0000") and a downstream's answers may
// hold anything. What is written is made storable: a NUL becomes U+FFFD, as
// invalid UTF-8 does. (The raw payload is bytea: kept byte for byte.)

// text returns s as a text column can hold it.
func text(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

var escapedNUL = []byte(`\u0000`)

// jsonb marshals v as a jsonb column can hold it (nil for a nil slice or
// map: SQL NULL). encoding/json writes invalid UTF-8 as U+FFFD already, and
// a NUL as the escape \u0000, which jsonb refuses: that escape becomes
// \ufffd (an escaped backslash before "u0000" is left alone).
func jsonb(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return nil, nil
	}
	if !bytes.Contains(b, escapedNUL) {
		return b, nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		if bytes.HasPrefix(b[i:], escapedNUL) {
			out = append(out, `\ufffd`...)
			i += len(escapedNUL) - 1
			continue
		}
		out = append(out, b[i], b[i+1]) // any other escape, \\ included
		i++
	}
	return out, nil
}
