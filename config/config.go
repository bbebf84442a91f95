// Package config loads statusbridge's YAML configuration: it expands
// ${VAR} and ${VAR:-default} inside values, refuses unknown keys, fills
// defaults and validates everything, reporting every problem with its key
// path and line.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/statusbridge/statusbridge/placeholder"
)

// Config is the whole configuration. Its yaml tags are the contract users'
// files depend on: rename nothing.
type Config struct {
	Listen   string   `yaml:"listen"`
	Log      Log      `yaml:"log"`
	Store    Store    `yaml:"store"`
	Webhook  Webhook  `yaml:"webhook"`
	Intake   Intake   `yaml:"intake"`
	OrderID  OrderID  `yaml:"order_id"`
	Targets  Targets  `yaml:"targets"`
	Delivery Delivery `yaml:"delivery"`
	Mapping  Mapping  `yaml:"mapping"`
	Admin    Admin    `yaml:"admin"`
	Server   Server   `yaml:"server"`

	// File is the path the config was read from ("" for built-in defaults).
	File string `yaml:"-"`
	// Warnings are things that are valid but probably not what was meant
	// (e.g. a store.postgres section under store.driver: bbolt). config
	// check prints them; serve should log them.
	Warnings []Problem `yaml:"-"`

	lines map[string]int // key path → line, for later messages (CheckMapping)
	// envValues holds, by key path, the values ${VAR} references expanded to
	// (the values of the variables, not the whole strings).
	envValues map[string][]string
}

// EnvValues returns the values the ${VAR} references at a key path (e.g.
// "targets.http.crm.headers.Authorization") expanded to, nil when it had
// none: a header filled from the environment carries a secret.
func (c *Config) EnvValues(path string) []string { return c.envValues[path] }

// SecretHeaders returns the names of generic target name's configured
// headers whose values are filled from the environment: they carry secrets.
func (c *Config) SecretHeaders(name string) []string {
	h := c.Targets.HTTP[name]
	if h == nil {
		return nil
	}
	var out []string
	for k := range h.Headers {
		if len(c.EnvValues("targets.http."+name+".headers."+k)) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// Secrets returns every configured secret value: the webhook and admin
// tokens, the targets' keys, tokens and hashes, and the environment values
// that fill generic targets' headers. Logs and stored requests redact them.
func (c *Config) Secrets() []string {
	s := append([]string{c.Webhook.Token, c.Admin.Token, c.Intake.Token}, c.Store.Secrets()...)
	t := c.Targets
	if t.Digishare != nil {
		s = append(s, t.Digishare.Token, t.Digishare.ClientSecret)
	}
	if t.ExpertSender != nil {
		s = append(s, t.ExpertSender.APIKey)
	}
	if t.OrderSystem != nil {
		s = append(s, t.OrderSystem.Token)
	}
	if t.Everlytic != nil {
		s = append(s, t.Everlytic.StoreHash, t.Everlytic.CustomerHash)
	}
	for name, h := range t.HTTP {
		if h == nil {
			continue
		}
		for k := range h.Headers {
			s = append(s, c.EnvValues("targets.http."+name+".headers."+k)...)
		}
	}
	out := s[:0]
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Server configures the HTTP server beyond its address (listen).
type Server struct {
	// TrustedProxies are the networks whose X-Forwarded-For is believed;
	// empty = none (the peer address is the client).
	TrustedProxies []CIDR `yaml:"trusted_proxies"`
}

// Log selects the log level and format.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text (tint) | json
}

// Admin configures the admin API under /admin.
type Admin struct {
	Token string `yaml:"token"` // empty = admin API disabled (its routes answer 404)
}

// Store drivers.
const (
	DriverBbolt    = "bbolt"
	DriverPostgres = "postgres"
)

// Store selects the store: a local bbolt file (one process) or PostgreSQL
// (several replicas).
type Store struct {
	Driver string `yaml:"driver"` // bbolt (default) | postgres
	Path   string `yaml:"path"`   // bbolt only
	// Retention is how long events (and their finished deliveries and dedup
	// keys) are kept; 0 keeps them for ever.
	Retention Duration `yaml:"retention"`
	// Postgres is the PostgreSQL store; nil when the section is absent.
	// Validation guarantees it is set, with a DSN, when Driver is postgres.
	Postgres *Postgres `yaml:"postgres"`
}

// Secrets returns what the logger must mask: the DSN's password, as
// written and decoded. Nil when there is none.
func (s Store) Secrets() []string {
	if s.Postgres == nil {
		return nil
	}
	return DSNSecrets(s.Postgres.DSN)
}

// Postgres configures the PostgreSQL store.
type Postgres struct {
	// DSN is a postgres:// URL or libpq key=value pairs. It holds a
	// password: print it only through RedactDSN.
	DSN string `yaml:"dsn"`
	// Schema holds statusbridge's tables (a plain SQL identifier).
	Schema string `yaml:"schema"`
	// MaxConns bounds the connection pool of each replica.
	MaxConns int `yaml:"max_conns"`
}

func (p *Postgres) setDefaults() {
	p.Schema = "statusbridge"
	p.MaxConns = 16
}

// Webhook configures the Digishare endpoint.
type Webhook struct {
	Path    string `yaml:"path"`
	Token   string `yaml:"token"` // empty = no authentication (warned at start)
	MaxBody Size   `yaml:"max_body"`
}

// OrderID says where the order id is read from.
type OrderID struct {
	From        string `yaml:"from"` // external_id | ticket_number | campaign_data.<key>
	StripPrefix string `yaml:"strip_prefix"`
}

// Targets lists the downstream systems. A nil target is not configured.
type Targets struct {
	ExpertSender *ExpertSender          `yaml:"expertsender"`
	Digishare    *Digishare             `yaml:"digishare"`
	OrderSystem  *OrderSystem           `yaml:"order_system"`
	Everlytic    *Everlytic             `yaml:"everlytic"`
	HTTP         map[string]*HTTPTarget `yaml:"http"`
}

// Limits are the per-target delivery limits, written inline in each target.
type Limits struct {
	Timeout        Duration       `yaml:"timeout"`
	Rate           Rate           `yaml:"rate"`        // e.g. 10/s, 600/m; empty = unlimited
	Concurrency    int            `yaml:"concurrency"` // 0 = delivery.concurrency
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker"`
}

// CircuitBreaker pauses a target after consecutive failures.
type CircuitBreaker struct {
	Failures int      `yaml:"failures"` // consecutive retryable failures that open it
	Cooldown Duration `yaml:"cooldown"` // pause before a probe is let through
}

func (l *Limits) setDefaults() {
	l.Timeout = Duration(10 * time.Second)
	l.CircuitBreaker = CircuitBreaker{Failures: 5, Cooldown: Duration(30 * time.Second)}
}

// ExpertSender configures the ExpertSender CDP client.
type ExpertSender struct {
	BaseURL   string `yaml:"base_url"`
	APIKey    string `yaml:"api_key"` // empty = deliveries skipped (warned at start)
	WebsiteID int    `yaml:"website_id"`
	// Orders, when present, registers intake orders with POST /orders;
	// absent = status PUTs only.
	Orders *ExpertSenderOrders `yaml:"orders"`
	Limits `yaml:",inline"`
}

// Enabled reports whether deliveries can be sent (credentials present).
func (e *ExpertSender) Enabled() bool { return e != nil && e.BaseURL != "" && e.APIKey != "" }

func (e *ExpertSender) setDefaults() {
	e.BaseURL = "https://api.ecdp.app"
	e.Limits.setDefaults()
}

// OrderSystem configures the store's originating order system (eShopbox-style
// ESB): status write-back and WhatsApp opt-in.
type OrderSystem struct {
	BaseURL      string   `yaml:"base_url"` // empty = its deliveries are skipped
	Token        string   `yaml:"token"`    // optional; sent as Authorization: Bearer
	AccountID    string   `yaml:"account_id"`
	PhoneRegion  string   `yaml:"phone_region"` // ISO region of the system's national numbers, e.g. MA
	StatusUpdate *Request `yaml:"status_update"`
	Limits       `yaml:",inline"`
}

// Enabled reports whether the order system can be called.
func (o *OrderSystem) Enabled() bool { return o != nil && o.BaseURL != "" }

func (o *OrderSystem) setDefaults() { o.Limits.setDefaults() }

// Request is a configurable HTTP request. Strings may hold placeholders such
// as {order_id}, {status} or {third.email}.
type Request struct {
	Method  string            `yaml:"method"`
	Path    string            `yaml:"path"` // order_system.status_update: relative to base_url
	URL     string            `yaml:"url"`  // generic targets: absolute URL
	Headers map[string]string `yaml:"headers"`
	Body    any               `yaml:"body"` // any YAML structure; sent as JSON
	// SuccessWhenBodyLacks names a property whose presence in a 2xx JSON body
	// means failure (e.g. error).
	SuccessWhenBodyLacks string `yaml:"success_when_body_lacks"`
}

// HTTPTarget is a generic HTTP target: a request and its limits.
type HTTPTarget struct {
	Request `yaml:",inline"`
	Limits  `yaml:",inline"`
}

// Enabled reports whether the target has a URL.
func (h *HTTPTarget) Enabled() bool { return h != nil && h.URL != "" }

func (h *HTTPTarget) setDefaults() {
	h.Method = "POST"
	h.Limits.setDefaults()
}

// Everlytic configures the Everlytic e-commerce orders endpoint.
type Everlytic struct {
	BaseURL      string `yaml:"base_url"`
	StoreHash    string `yaml:"store_hash"`
	CustomerHash string `yaml:"customer_hash"`
	Limits       `yaml:",inline"`
}

// Enabled reports whether Everlytic can be called (URL and both hashes set).
func (e *Everlytic) Enabled() bool {
	return e != nil && e.BaseURL != "" && e.StoreHash != "" && e.CustomerHash != ""
}

func (e *Everlytic) setDefaults() { e.Limits.setDefaults() }

// Delivery configures retries and parallelism of outbound deliveries.
type Delivery struct {
	MaxAttempts int     `yaml:"max_attempts"`
	Backoff     Backoff `yaml:"backoff"`
	Concurrency int     `yaml:"concurrency"`
	// Failover is how soon another replica takes over sending when the
	// replica that sends stops renewing its lease (PostgreSQL store).
	Failover Duration `yaml:"failover"`
}

// Backoff bounds the exponential retry delay.
type Backoff struct {
	Initial Duration `yaml:"initial"`
	Max     Duration `yaml:"max"`
}

// Mapping turns Digishare status ids into per-target statuses.
type Mapping struct {
	TicketTypes []string          `yaml:"ticket_types"` // empty = every type
	Statuses    map[string]Status `yaml:"statuses"`
}

// Status is one mapping entry: a name and what each target is sent.
type Status struct {
	Name          string            `yaml:"name"`
	ExpertSender  string            `yaml:"expertsender"`
	OrderSystem   string            `yaml:"order_system"`    // status written back to the order system
	WhatsAppOptIn bool              `yaml:"whatsapp_opt_in"` // subscribe the customer to WhatsApp there
	Everlytic     *EverlyticAction  `yaml:"everlytic"`
	HTTP          map[string]string `yaml:"http"` // generic target name → status
}

// EverlyticAction triggers an Everlytic workflow.
type EverlyticAction struct {
	WorkflowID int `yaml:"workflow_id"`
}

// Default returns the built-in defaults: listen 127.0.0.1:8080, store
// data/statusbridge.db, no targets, no mapping.
func Default() *Config {
	return &Config{
		Listen:  "127.0.0.1:8080",
		Log:     Log{Level: "info", Format: "text"},
		Store:   Store{Driver: DriverBbolt, Path: "data/statusbridge.db", Retention: Duration(2160 * time.Hour)},
		Webhook: Webhook{Path: "/webhooks/digishare", MaxBody: 1 << 20},
		Intake:  defaultIntake(),
		OrderID: OrderID{From: "external_id"},
		Delivery: Delivery{
			MaxAttempts: 12,
			Backoff:     Backoff{Initial: Duration(time.Second), Max: Duration(10 * time.Minute)},
			Concurrency: 16,
			Failover:    Duration(15 * time.Second),
		},
		Mapping: Mapping{Statuses: map[string]Status{}},
	}
}

// Problem is one thing wrong with a config: the key path (e.g.
// "delivery.backoff.max"; for a syntax error the nearest key, when known),
// its line and column (0 when unknown) and what is wrong.
type Problem struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	loc := ""
	switch {
	case p.Line > 0 && p.Column > 0:
		loc = fmt.Sprintf("line %d, column %d: ", p.Line, p.Column)
	case p.Line > 0:
		loc = fmt.Sprintf("line %d: ", p.Line)
	}
	if p.Path == "" {
		return loc + p.Message
	}
	return loc + p.Path + ": " + p.Message
}

// Error lists every problem found in one config file. Load returns it
// (wrapped or not, use errors.As) for anything the user must fix.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	name := e.File
	if name == "" {
		name = "config"
	}
	fmt.Fprintf(&b, "%s: %d problem(s)", name, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// FlagUsage describes every command's --config flag and its fallback.
const FlagUsage = "config file (default: ./config.yaml if it exists, else built-in defaults: listen 127.0.0.1:8080, store data/statusbridge.db, no mapping, no targets)"

// DefaultsNote is what a command that decides or sends says when it runs on
// the built-in defaults because no --config was given and ./config.yaml does
// not exist.
const DefaultsNote = "no --config given and ./config.yaml not found: running on built-in defaults (no mapping, no targets; store data/statusbridge.db)"

// ErrNotFound is returned by Resolve when an explicitly named file is missing.
var ErrNotFound = errors.New("config file not found")

// Resolve loads the config for a command: the named file when path is
// non-empty, else config.yaml when present, else the built-in defaults.
func Resolve(path string, getenv func(string) (string, bool)) (*Config, error) {
	if path == "" {
		if _, err := os.Stat("config.yaml"); err != nil {
			return Default(), nil
		}
		path = "config.yaml"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{File: path, Problems: []Problem{{Message: ErrNotFound.Error()}}}
		}
		return nil, &Error{File: path, Problems: []Problem{{Message: err.Error()}}}
	}
	cfg, err := Parse(data, getenv)
	if cfg != nil {
		cfg.File = path
	}
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	return cfg, err
}

// Parse decodes and validates YAML bytes. getenv looks variables up (nil
// means os.LookupEnv). On problems it returns a *Error listing all of them.
func Parse(data []byte, getenv func(string) (string, bool)) (*Config, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	cfg := Default()
	d := &decoder{getenv: getenv, lines: map[string]int{}, envValues: map[string][]string{}}
	if d.decodeDocument(data, cfg) {
		// Values that failed to decode kept their defaults, so validating
		// the rest still reports every other problem in the same pass.
		d.validate(cfg)
	}
	if len(d.problems) > 0 {
		sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
		return nil, &Error{Problems: d.problems}
	}
	sort.SliceStable(d.warnings, func(i, j int) bool { return d.warnings[i].Line < d.warnings[j].Line })
	cfg.Warnings = d.warnings
	cfg.lines, cfg.envValues = d.lines, d.envValues
	return cfg, nil
}

// CheckMapping validates cand's mapping section against targets (those of
// the config in force, when a reload keeps the running targets), naming
// cand's lines. It returns a *Error, or nil.
func CheckMapping(cand *Config, targets Targets) error {
	d := &decoder{lines: cand.lines}
	if d.lines == nil {
		d.lines = map[string]int{}
	}
	for id, st := range cand.Mapping.Statuses {
		d.validateEntry("mapping.statuses."+id, id, st, &targets)
	}
	if len(d.problems) == 0 {
		return nil
	}
	sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
	return &Error{File: cand.File, Problems: d.problems}
}

// validate checks values the YAML types cannot: ranges, references, formats.
func (d *decoder) validate(c *Config) {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		d.fail("listen", "must be host:port, e.g. 127.0.0.1:8080")
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		d.fail("log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level))
	}
	if !oneOf(c.Log.Format, "text", "json") {
		d.fail("log.format", fmt.Sprintf("%q is not one of text, json", c.Log.Format))
	}
	d.validateStore(&c.Store)
	if !strings.HasPrefix(c.Webhook.Path, "/") {
		d.fail("webhook.path", "must start with /")
	}
	if c.Webhook.MaxBody <= 0 || c.Webhook.MaxBody > 64<<20 {
		d.fail("webhook.max_body", "must be between 1 byte and 64MiB")
	}
	switch from := c.OrderID.From; {
	case from == "external_id", from == "ticket_number":
	case strings.HasPrefix(from, "campaign_data.") && len(from) > len("campaign_data."):
	default:
		d.fail("order_id.from", fmt.Sprintf("%q is not external_id, ticket_number or campaign_data.<key>", from))
	}
	d.validateOrderIntake(c)
	d.validateTargets(&c.Targets)
	if c.Delivery.MaxAttempts < 1 || c.Delivery.MaxAttempts > 1000 {
		d.fail("delivery.max_attempts", "must be between 1 and 1000")
	}
	if c.Delivery.Backoff.Initial < 0 {
		d.fail("delivery.backoff.initial", "must not be negative")
	}
	if c.Delivery.Backoff.Max < c.Delivery.Backoff.Initial {
		d.fail("delivery.backoff.max", "must be at least delivery.backoff.initial")
	}
	if c.Delivery.Concurrency < 1 || c.Delivery.Concurrency > 1024 {
		d.fail("delivery.concurrency", "must be between 1 and 1024")
	}
	if c.Delivery.Failover < Duration(time.Second) {
		d.fail("delivery.failover", "must be at least 1s")
	}
	for i, t := range c.Mapping.TicketTypes {
		if strings.TrimSpace(t) == "" {
			d.fail(fmt.Sprintf("mapping.ticket_types[%d]", i), "must not be empty")
		}
	}
	for id, st := range c.Mapping.Statuses {
		d.validateEntry("mapping.statuses."+id, id, st, &c.Targets)
	}
}

// sqlIdentifier is a plain (unquoted) SQL identifier.
var sqlIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) validateStore(s *Store) {
	switch s.Driver {
	case DriverBbolt:
		if strings.TrimSpace(s.Path) == "" {
			d.fail("store.path", "must not be empty")
		}
		if s.Postgres != nil {
			d.warn("store.postgres", "is ignored: store.driver is bbolt (the default); set store.driver: postgres to use PostgreSQL")
		}
		return
	case DriverPostgres:
	default:
		d.fail("store.driver", fmt.Sprintf("%q is not one of bbolt, postgres", s.Driver))
		return
	}
	if _, set := d.lines["store.path"]; set {
		d.warn("store.path", "is ignored: store.driver is postgres (store.path is the bbolt file)")
	}
	if s.Postgres == nil {
		s.Postgres = &Postgres{}
		s.Postgres.setDefaults()
	}
	p := s.Postgres
	if strings.TrimSpace(p.DSN) == "" {
		line := d.lines["store.postgres.dsn"]
		if line == 0 {
			line = d.lines["store.driver"]
		}
		d.add("store.postgres.dsn", line, "must be set when store.driver is postgres, e.g. dsn: ${STATUSBRIDGE_POSTGRES_DSN} with postgres://user:password@host:5432/dbname in that variable")
	} else if err := checkDSN(p.DSN); err != nil {
		d.fail("store.postgres.dsn", err.Error())
	}
	switch {
	case !sqlIdentifier.MatchString(p.Schema):
		d.fail("store.postgres.schema", fmt.Sprintf("%q is not a plain SQL identifier (letters, digits and _, not starting with a digit)", p.Schema))
	case len(p.Schema) > 63:
		d.fail("store.postgres.schema", fmt.Sprintf("%q is longer than PostgreSQL's 63 bytes", p.Schema))
	}
	if p.MaxConns < 1 || p.MaxConns > 1000 {
		d.fail("store.postgres.max_conns", "must be between 1 and 1000")
	}
}

func (d *decoder) validateTargets(t *Targets) {
	if es := t.ExpertSender; es != nil {
		d.checkURL("targets.expertsender.base_url", es.BaseURL)
		d.checkLimits("targets.expertsender", &es.Limits)
		if es.WebsiteID < 0 {
			d.fail("targets.expertsender.website_id", "must not be negative")
		}
	}
	if osys := t.OrderSystem; osys != nil {
		d.checkURL("targets.order_system.base_url", osys.BaseURL)
		d.checkLimits("targets.order_system", &osys.Limits)
		if osys.PhoneRegion != "" && phonenumbers.GetCountryCodeForRegion(strings.ToUpper(osys.PhoneRegion)) == 0 {
			d.fail("targets.order_system.phone_region", fmt.Sprintf("%q is not a known ISO 3166 region code (e.g. MA, FR, IN)", osys.PhoneRegion))
		}
		if r := osys.StatusUpdate; r != nil {
			p := "targets.order_system.status_update"
			if r.URL != "" {
				d.fail(p+".url", "use path (relative to targets.order_system.base_url) here, not url")
			}
			if !strings.HasPrefix(r.Path, "/") {
				d.fail(p+".path", "must start with / (it is relative to base_url)")
			}
			d.checkRequest(p, r, r.Path)
		}
	}
	if ev := t.Everlytic; ev != nil {
		d.checkURL("targets.everlytic.base_url", ev.BaseURL)
		d.checkLimits("targets.everlytic", &ev.Limits)
	}
	for name, h := range t.HTTP {
		p := "targets.http." + name
		if !targetName.MatchString(name) {
			d.fail(p, "target names use letters, digits, _ and - only")
		}
		if h == nil {
			d.fail(p, "must be a mapping with at least url")
			continue
		}
		if h.Path != "" {
			d.fail(p+".path", "generic targets take an absolute url, not a path")
		}
		if h.URL != "" {
			if err := placeholder.Check(h.URL); err != nil {
				d.fail(p+".url", err.Error())
			} else {
				d.checkURL(p+".url", placeholderFree(h.URL))
			}
		}
		d.checkRequest(p, &h.Request, "")
		d.checkLimits(p, &h.Limits)
	}
}

var targetName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// placeholderFree replaces placeholders with a harmless value so the rest of
// a URL template can be checked.
func placeholderFree(s string) string {
	out, _ := placeholder.Render(s, func(string) (string, bool) { return "x", true }, nil)
	return out
}

func (d *decoder) checkRequest(p string, r *Request, pathTmpl string) {
	switch strings.ToUpper(r.Method) {
	case "GET", "POST", "PUT", "PATCH", "DELETE":
		r.Method = strings.ToUpper(r.Method)
	case "":
		r.Method = "POST"
	default:
		d.fail(p+".method", fmt.Sprintf("%q is not GET, POST, PUT, PATCH or DELETE", r.Method))
	}
	if pathTmpl != "" {
		if err := placeholder.Check(pathTmpl); err != nil {
			d.fail(p+".path", err.Error())
		}
	}
	for k, v := range r.Headers {
		if err := placeholder.Check(v); err != nil {
			d.fail(p+".headers."+k, err.Error())
		}
	}
	if err := placeholder.CheckValue(r.Body); err != nil {
		d.fail(p+".body", err.Error())
	}
}

func (d *decoder) checkLimits(p string, l *Limits) {
	if l.Timeout <= 0 {
		d.fail(p+".timeout", "must be positive")
	}
	if l.Concurrency < 0 || l.Concurrency > 1024 {
		d.fail(p+".concurrency", "must be between 0 (= delivery.concurrency) and 1024")
	}
	if l.CircuitBreaker.Failures < 1 {
		d.fail(p+".circuit_breaker.failures", "must be at least 1")
	}
}

// validateEntry checks that a mapping entry only names configured targets.
func (d *decoder) validateEntry(p, id string, st Status, t *Targets) {
	if strings.TrimSpace(id) == "" {
		d.fail(p, "status id must not be empty")
	}
	if st.ExpertSender != "" && t.ExpertSender == nil {
		d.fail(p+".expertsender", "targets.expertsender is not configured")
	}
	if st.OrderSystem != "" {
		switch {
		case t.OrderSystem == nil:
			d.fail(p+".order_system", "targets.order_system is not configured")
		case t.OrderSystem.StatusUpdate == nil:
			d.fail(p+".order_system", "targets.order_system.status_update is not configured (the order system's status endpoint must be described)")
		}
	}
	if st.WhatsAppOptIn {
		switch {
		case t.OrderSystem == nil:
			d.fail(p+".whatsapp_opt_in", "targets.order_system is not configured")
		case t.OrderSystem.PhoneRegion == "" || t.OrderSystem.AccountID == "":
			d.fail(p+".whatsapp_opt_in", "needs targets.order_system.phone_region and targets.order_system.account_id")
		}
	}
	if st.Everlytic != nil {
		if t.Everlytic == nil {
			d.fail(p+".everlytic", "targets.everlytic is not configured")
		}
		if st.Everlytic.WorkflowID <= 0 {
			d.fail(p+".everlytic.workflow_id", "must be a positive integer")
		}
	}
	for name, status := range st.HTTP {
		if t.HTTP[name] == nil {
			d.fail(p+".http."+name, fmt.Sprintf("targets.http.%s is not configured", name))
		}
		if strings.TrimSpace(status) == "" {
			d.fail(p+".http."+name, "status must not be empty")
		}
	}
}

func (d *decoder) checkURL(path, raw string) {
	if raw == "" {
		return // empty = target disabled
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		d.fail(path, fmt.Sprintf("%q is not an http(s) URL", raw))
	}
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}
