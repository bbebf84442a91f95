package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree into a Config by reflection so that every
// problem is reported with its key path and line, not only the first one.
type decoder struct {
	getenv   func(string) (string, bool)
	lines    map[string]int // key path → line, for messages about valid-looking values
	problems []Problem
	warnings []Problem
	// envValues: key path → the values its ${VAR} references expanded to.
	envValues map[string][]string
	// active holds the alias targets being expanded (a cycle is an error);
	// expanded counts nodes walked, bounding alias "billion laughs" blow-ups.
	active   map[*yaml.Node]bool
	expanded int
}

// maxExpandedNodes bounds the nodes a config may expand to through aliases.
const maxExpandedNodes = 100000

func (d *decoder) add(path string, line int, msg string) {
	d.problems = append(d.problems, Problem{Path: path, Line: line, Message: msg})
}

// fail reports a problem at a key path, with the line it was read from.
func (d *decoder) fail(path, msg string) { d.add(path, d.lines[path], msg) }

// warn records something valid but probably unintended at a key path.
func (d *decoder) warn(path, msg string) {
	d.warnings = append(d.warnings, Problem{Path: path, Line: d.lines[path], Message: msg})
}

// scalarDecoder is implemented by value types parsed from one YAML scalar.
type scalarDecoder interface{ decodeScalar(string) error }

// defaulter is implemented by optional sections that have defaults once present.
type defaulter interface{ setDefaults() }

// decodeDocument fills cfg; it returns false when the YAML itself is broken.
func (d *decoder) decodeDocument(data []byte, cfg *Config) bool {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.problems = append(d.problems, syntaxProblem(data, err))
		return false
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return true // empty file: defaults
	}
	d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	return true
}

// decode fills v from n; mapping keys are never env-expanded, values are.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.enter(n, path) {
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if v.CanAddr() {
		if sd, ok := v.Addr().Interface().(scalarDecoder); ok {
			s, ok := d.scalar(n, path)
			if !ok {
				return
			}
			if err := sd.decodeScalar(s); err != nil {
				d.add(path, n.Line, err.Error())
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		p := reflect.New(v.Type().Elem())
		if df, ok := p.Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.add(path, n.Line, "must be a mapping of keys")
			return
		}
		fields := yamlFields(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			d.lines[p] = k.Line
			idx, ok := fields[k.Value]
			if !ok {
				d.add(p, k.Line, "unknown key"+suggest(k.Value, fields))
				continue
			}
			d.decode(val, v.FieldByIndex(idx), p)
		}
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.add(path, n.Line, "must be a mapping")
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			d.lines[p] = k.Line
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, elem, p)
			v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
	case reflect.Slice:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.add(path, n.Line, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = item.Line
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.String:
		if s, ok := d.scalar(n, path); ok {
			v.SetString(s)
		}
	case reflect.Int, reflect.Int64:
		if s, ok := d.scalar(n, path); ok {
			i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				d.add(path, n.Line, fmt.Sprintf("%q is not a whole number", s))
				return
			}
			v.SetInt(i)
		}
	case reflect.Interface:
		if x, ok := d.generic(n, path); ok {
			if x == nil {
				v.Set(reflect.Zero(v.Type()))
			} else {
				v.Set(reflect.ValueOf(x))
			}
		}
	case reflect.Bool:
		if s, ok := d.scalar(n, path); ok {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			if err != nil {
				d.add(path, n.Line, fmt.Sprintf("%q is not true or false", s))
				return
			}
			v.SetBool(b)
		}
	default:
		d.add(path, n.Line, "unsupported value") // a programming error in this package
	}
}

// enter accounts for one node; it reports false (once, as a problem) when
// the document expands past maxExpandedNodes.
func (d *decoder) enter(n *yaml.Node, path string) bool {
	d.expanded++
	if d.expanded == maxExpandedNodes+1 {
		d.add(path, n.Line, fmt.Sprintf("the document expands to more than %d nodes through aliases", maxExpandedNodes))
	}
	return d.expanded <= maxExpandedNodes
}

// generic decodes free-form YAML (a request body) into maps, slices, strings,
// numbers and booleans, expanding ${VAR} in strings.
func (d *decoder) generic(n *yaml.Node, path string) (any, bool) {
	if !d.enter(n, path) {
		return nil, false
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if d.active[n.Alias] {
			d.add(path, n.Line, "alias refers to a value that contains it (a cycle)")
			return nil, false
		}
		if d.active == nil {
			d.active = map[*yaml.Node]bool{}
		}
		d.active[n.Alias] = true
		defer delete(d.active, n.Alias)
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			x, good := d.generic(n.Content[i+1], join(path, k))
			ok = ok && good
			m[k] = x
		}
		return m, ok
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		ok := true
		for i, item := range n.Content {
			x, good := d.generic(item, fmt.Sprintf("%s[%d]", path, i))
			ok = ok && good
			s[i] = x
		}
		return s, ok
	}
	switch n.Tag {
	case "!!null":
		return nil, true
	case "!!int", "!!float", "!!bool":
		var x any
		if err := n.Decode(&x); err == nil {
			return x, true
		}
	}
	return d.scalar(n, path)
}

// scalar returns the env-expanded text of a scalar value node.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.add(path, n.Line, "must be a single value, not a list or mapping")
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	s, err := expand(n.Value, d.getenv, func(v string) {
		if v != "" && d.envValues != nil {
			d.envValues[path] = append(d.envValues[path], v)
		}
	})
	if err != nil {
		d.add(path, n.Line, err.Error())
		return "", false
	}
	return s, true
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces ${VAR} and ${VAR:-default} (default when unset or empty);
// $$ is a literal $. An unset ${VAR} without a default is an error.
func expand(s string, getenv func(string) (string, bool), used func(value string)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := envRef.FindStringSubmatch(m)
		name, hasDefault, def := sub[1], sub[2] != "", sub[3]
		val, ok := getenv(name)
		if hasDefault && (!ok || val == "") {
			return def
		}
		if !ok {
			missing = append(missing, name)
		}
		used(val)
		return val
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set (write ${%s:-} to allow it to be empty)", missing[0], missing[0])
	}
	return out, nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps YAML keys to field index paths; embedded structs tagged
// ",inline" contribute their keys.
func yamlFields(t reflect.Type) map[string][]int {
	m := make(map[string][]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, idx := range yamlFields(f.Type) {
				m[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name != "" && name != "-" {
			m[name] = []int{i}
		}
	}
	return m
}

// suggest names the valid keys, closest first, so a typo is easy to fix.
func suggest(key string, fields map[string][]int) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		di, dj := distance(key, names[i]), distance(key, names[j])
		if di != dj {
			return di < dj
		}
		return names[i] < names[j]
	})
	if len(names) > 0 && distance(key, names[0]) <= 2 {
		return fmt.Sprintf(" (did you mean %q?)", names[0])
	}
	return " (valid keys: " + strings.Join(sortedCopy(names), ", ") + ")"
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Duration is a time.Duration written in Go syntax ("1s", "10m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) decodeScalar(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use Go syntax: 500ms, 10s, 5m, 1h)", s)
	}
	if v < 0 {
		return fmt.Errorf("%q must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count: bare bytes, KB/MB/GB (powers of 1000) or KiB/MiB/GiB (1024).
type Size int64

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

var sizeRE = regexp.MustCompile(`^\s*(\d+)\s*([A-Za-z]*)\s*$`)

func (z *Size) decodeScalar(s string) error {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("%q is not a size (e.g. 1048576, 512KB, 1MiB)", s)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return fmt.Errorf("%q has an unknown unit %q (use B, KB, MB, GB, KiB, MiB, GiB)", s, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > (1<<62)/unit {
		return fmt.Errorf("%q is too large", s)
	}
	*z = Size(n * unit)
	return nil
}

// Rate is a request rate written as N/s, N/m or N/h ("" = unlimited).
type Rate struct {
	N   int
	Per time.Duration
}

// PerSecond returns the rate in events per second (0 = unlimited).
func (r Rate) PerSecond() float64 {
	if r.N == 0 || r.Per == 0 {
		return 0
	}
	return float64(r.N) / r.Per.Seconds()
}

var rateRE = regexp.MustCompile(`^\s*(\d+)\s*/\s*(s|sec|m|min|h|hour)\s*$`)

func (r *Rate) decodeScalar(s string) error {
	if strings.TrimSpace(s) == "" {
		*r = Rate{}
		return nil
	}
	m := rateRE.FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("%q is not a rate (e.g. 10/s, 600/m, 1000/h)", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n <= 0 {
		return fmt.Errorf("%q must be a positive count per unit", s)
	}
	per := map[string]time.Duration{"s": time.Second, "sec": time.Second, "m": time.Minute, "min": time.Minute, "h": time.Hour, "hour": time.Hour}[m[2]]
	*r = Rate{N: n, Per: per}
	return nil
}

// CIDR is a network written as address/bits (10.0.0.0/8, fd00::/8); a bare
// address is the network of that one address.
type CIDR struct{ netip.Prefix }

func (c *CIDR) decodeScalar(s string) error {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8, 192.168.1.10/32, fd00::/8) or an IP address", s)
		}
		c.Prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8, 192.168.1.10/32, fd00::/8)", s)
	}
	if m := p.Masked(); m != p {
		return fmt.Errorf("%q has bits set past its /%d prefix: write %s for the network, or %s/%d for the one address", s, p.Bits(), m, p.Addr(), p.Addr().BitLen())
	}
	c.Prefix = p
	return nil
}
