package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// A PostgreSQL DSN comes in two forms (libpq's, which pgx reads too):
//
//	postgres://user:password@host:5432/dbname?sslmode=require&password=...
//	host=db user=statusbridge password='se cret' dbname=statusbridge
//
// RedactDSN and DSNSecrets find the password in both, by the bytes as
// written, so a malformed DSN is redacted too (more rather than less).

// redacted replaces a password.
const redacted = "xxxxx"

// span is a byte range [start, end) of a DSN holding a password.
type span struct{ start, end int }

// RedactDSN returns dsn with every password replaced by xxxxx: the URL's
// user password, a password= query parameter, a password=value pair
// (quoted or not), and the same for sslpassword. A DSN it cannot read
// after password= is cut there.
func RedactDSN(dsn string) string {
	spans, _ := passwordSpans(dsn)
	sort.Slice(spans, func(i, j int) bool { return spans[i].start > spans[j].start })
	for _, s := range spans {
		dsn = dsn[:s.start] + redacted + dsn[s.end:]
	}
	return dsn
}

// DSNSecrets returns the DSN's passwords as written and as decoded (percent-
// or backslash-escapes undone), for the logger to mask. Nil when there are none.
func DSNSecrets(dsn string) []string {
	spans, decoded := passwordSpans(dsn)
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range spans {
		raw := dsn[s.start:s.end]
		add(raw)
		if len(raw) >= 2 && raw[0] == '\'' && raw[len(raw)-1] == '\'' {
			add(raw[1 : len(raw)-1])
		}
	}
	for _, s := range decoded {
		add(s)
	}
	return out
}

// urlScheme returns the length of a postgres:// or postgresql:// prefix, 0
// when dsn is not a URL.
func urlScheme(dsn string) int {
	for _, p := range []string{"postgres://", "postgresql://"} {
		if len(dsn) >= len(p) && strings.EqualFold(dsn[:len(p)], p) {
			return len(p)
		}
	}
	return 0
}

// passwordSpans finds every password in dsn: byte ranges and decoded values.
func passwordSpans(dsn string) ([]span, []string) {
	if off := urlScheme(dsn); off > 0 {
		return urlPasswordSpans(dsn, off)
	}
	pairs, err := parseKeyValue(dsn)
	var spans []span
	var decoded []string
	for _, p := range pairs {
		if isPasswordKey(p.key) {
			spans = append(spans, span{p.valStart, p.valEnd})
			decoded = append(decoded, p.val)
		}
	}
	if err != nil {
		// Unreadable after some point: redact from any password= on.
		if loc := passwordKey.FindStringIndex(dsn); loc != nil {
			spans = append(spans, span{loc[1], len(dsn)})
		}
	}
	return mergeSpans(spans), decoded
}

var passwordKey = regexp.MustCompile(`(?i)password\s*=\s*`) // sslpassword too

// isPasswordKey reports whether a key holds a secret: password, or
// sslpassword (the client key's passphrase).
func isPasswordKey(k string) bool {
	return strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword")
}

// urlPasswordSpans finds the user password and password= query parameters
// of a URL DSN; off is where the part after :// starts.
func urlPasswordSpans(dsn string, off int) ([]span, []string) {
	var spans []span
	var decoded []string
	rest := dsn[off:]
	authEnd := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authEnd = i
	}
	at := strings.LastIndex(rest[:authEnd], "@")
	if at < 0 {
		// A /, ? or # left unencoded in the password ends the authority
		// early: take the last @ of the whole URL.
		at = strings.LastIndex(rest, "@")
	}
	queryFrom := 0
	if at >= 0 {
		queryFrom = at
		if c := strings.Index(rest[:at], ":"); c >= 0 {
			spans = append(spans, span{off + c + 1, off + at})
			decoded = append(decoded, unescapeURL(rest[c+1:at]))
		}
	}
	if q := strings.Index(rest[queryFrom:], "?"); q >= 0 {
		start := off + queryFrom + q + 1
		query := dsn[start:]
		if h := strings.Index(query, "#"); h >= 0 {
			query = query[:h]
		}
		pos := start
		for _, part := range strings.Split(query, "&") {
			k, v, ok := strings.Cut(part, "=")
			if ok && isPasswordKey(unescapeURL(k)) {
				vs := pos + len(k) + 1
				spans = append(spans, span{vs, vs + len(v)})
				decoded = append(decoded, unescapeURL(v))
			}
			pos += len(part) + 1
		}
	}
	return mergeSpans(spans), decoded
}

func unescapeURL(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// mergeSpans drops empty spans and merges overlapping ones.
func mergeSpans(spans []span) []span {
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var out []span
	for _, s := range spans {
		if s.end <= s.start {
			continue
		}
		if n := len(out); n > 0 && s.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

// kvPair is one key=value of a libpq DSN; valStart/valEnd span the value
// as written (quotes included), val is it unquoted and unescaped.
type kvPair struct {
	key, val         string
	valStart, valEnd int
}

// parseKeyValue reads libpq's key=value form: pairs separated by spaces,
// spaces allowed around =, values bare or in single quotes, \' and \\
// escaped. It returns the pairs read before any error. Errors name byte
// positions, never the text (which may be a password).
func parseKeyValue(s string) ([]kvPair, error) {
	var pairs []kvPair
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return pairs, nil
		}
		ks := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[ks:i]
		skip()
		if key == "" || i == len(s) || s[i] != '=' {
			return pairs, fmt.Errorf("expected key=value at byte %d", ks+1)
		}
		i++ // =
		skip()
		vs := i
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return pairs, fmt.Errorf("the quoted value of %s (from byte %d) has no closing quote", safeKey(key), vs+1)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		pairs = append(pairs, kvPair{key: key, val: val.String(), valStart: vs, valEnd: i})
	}
}

// dsnKeys are the libpq keywords (safe to name in messages).
var dsnKeys = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "connect_timeout": true, "client_encoding": true, "options": true,
	"application_name": true, "fallback_application_name": true, "keepalives": true,
	"keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"tcp_user_timeout": true, "sslmode": true, "sslkey": true, "sslcert": true, "sslrootcert": true,
	"sslpassword": true, "sslcrl": true, "sslsni": true, "sslnegotiation": true, "service": true,
	"servicefile": true, "target_session_attrs": true, "load_balance_hosts": true,
	"search_path": true, "statement_timeout": true, "min_read_buffer_size": true,
	"require_auth": true, "gssencmode": true, "channel_binding": true, "krbsrvname": true,
	"replication": true,
}

// safeKey names a key in a message only when it is a libpq keyword.
func safeKey(k string) string {
	if dsnKeys[strings.ToLower(k)] {
		return k
	}
	return "a key"
}

// checkDSN checks a DSN's syntax. Its messages never hold the password.
func checkDSN(dsn string) error {
	if off := urlScheme(dsn); off > 0 {
		rest := dsn[off:]
		authEnd := len(rest)
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			authEnd = i
		}
		u, err := url.Parse(dsn)
		if err == nil {
			_, err = url.ParseQuery(u.RawQuery)
		}
		misplacedAt := !strings.Contains(rest[:authEnd], "@") && strings.Contains(rest[authEnd:], "@")
		if err != nil || misplacedAt {
			return fmt.Errorf("%s is not a valid URL: percent-encode @ : / ? # %% and spaces in the user name and password and parameters (e.g. p@ss → p%%40ss)", RedactDSN(dsn))
		}
		return nil
	}
	if strings.Contains(dsn, "://") {
		return errors.New("a URL DSN must start with postgres:// or postgresql://")
	}
	if _, err := parseKeyValue(dsn); err != nil {
		return fmt.Errorf("must be a postgres:// URL or key=value pairs (host=db user=statusbridge dbname=statusbridge): %v", err)
	}
	return nil
}
