// Package logging builds statusbridge's slog logger: tint on terminals, JSON
// for machines, and in both a filter that masks secrets, email addresses and
// phone numbers before anything is written.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/lmittmann/tint"
)

// Options choose the format and level and name the secret values to redact.
type Options struct {
	Format  string // "text" (tint) or "json"
	Level   string // debug | info | warn | error
	Color   bool   // text only: colour output (for terminals)
	Secrets []string
}

// New returns a logger writing to w.
func New(w io.Writer, o Options) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.Level)); err != nil {
		lvl = slog.LevelInfo
	}
	m := NewMasker(o.Secrets)
	if o.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: m.ReplaceAttr}))
	}
	return slog.New(tint.NewHandler(w, &tint.Options{Level: lvl, ReplaceAttr: m.ReplaceAttr,
		TimeFormat: time.DateTime, NoColor: !o.Color}))
}

// Masker hides secrets and personal data in log attributes.
type Masker struct {
	secrets []string
}

// NewMasker redacts the given secret values wherever they appear (values
// shorter than 4 characters are ignored: they would mask ordinary text).
func NewMasker(secrets []string) *Masker {
	m := &Masker{}
	for _, s := range secrets {
		if len(s) >= 4 {
			m.secrets = append(m.secrets, s)
		}
	}
	return m
}

// Keys whose values are always secret, and keys that carry identifiers (long
// digit strings there are order or ticket numbers, not phones).
var (
	secretKeys = map[string]bool{"token": true, "api_key": true, "apikey": true, "authorization": true,
		"password": true, "secret": true, "x-api-key": true, "store_hash": true, "customer_hash": true}
	idKeys = map[string]bool{"event_id": true, "ticket_id": true, "order_id": true, "delivery_id": true,
		"status_id": true, "intake_id": true, "fetched_intake_id": true, "by": true, "mapping_version": true, "version": true}
	emailRE = regexp.MustCompile(`([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})`)
	phoneRE = regexp.MustCompile(`\+?\b\d{9,15}\b`)
)

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that masks values.
func (m *Masker) ReplaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
		return a
	}
	key := strings.ToLower(a.Key)
	if secretKeys[key] {
		return slog.String(a.Key, "***")
	}
	v := a.Value.Resolve()
	var s string
	switch v.Kind() {
	case slog.KindString:
		s = v.String()
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return a
		}
	default:
		return a
	}
	masked := m.Mask(s, idKeys[key])
	if masked == s && v.Kind() == slog.KindString {
		return a
	}
	return slog.String(a.Key, masked)
}

// Mask redacts secrets and emails in s, and phone numbers unless s is an
// identifier (isID) whose digits are not personal data.
func (m *Masker) Mask(s string, isID bool) string {
	for _, sec := range m.secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	s = emailRE.ReplaceAllString(s, "$1***@$2")
	if !isID {
		s = phoneRE.ReplaceAllStringFunc(s, maskPhone)
	}
	return s
}

// maskPhone keeps the last three digits: +212600000123 → ***123.
func maskPhone(p string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, p)
	if len(digits) < 9 {
		return p
	}
	return "***" + digits[len(digits)-3:]
}
