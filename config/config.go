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
	"sort"
	"strings"
	"time"
)

// Config is the whole configuration. Its yaml tags are the contract users'
// files depend on: rename nothing.
type Config struct {
	Listen   string   `yaml:"listen"`
	Log      Log      `yaml:"log"`
	Store    Store    `yaml:"store"`
	Webhook  Webhook  `yaml:"webhook"`
	OrderID  OrderID  `yaml:"order_id"`
	Targets  Targets  `yaml:"targets"`
	Delivery Delivery `yaml:"delivery"`
	Mapping  Mapping  `yaml:"mapping"`

	// File is the path the config was read from ("" for built-in defaults).
	File string `yaml:"-"`
}

// Log selects the log level and format.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text (tint) | json
}

// Store locates the bbolt file.
type Store struct {
	Path string `yaml:"path"`
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
	ExpertSender *ExpertSender `yaml:"expertsender"`
}

// ExpertSender configures the ExpertSender CDP client.
type ExpertSender struct {
	BaseURL   string   `yaml:"base_url"`
	APIKey    string   `yaml:"api_key"` // empty = deliveries skipped (warned at start)
	WebsiteID int      `yaml:"website_id"`
	Timeout   Duration `yaml:"timeout"`
}

// Enabled reports whether deliveries can be sent (credentials present).
func (e *ExpertSender) Enabled() bool { return e != nil && e.BaseURL != "" && e.APIKey != "" }

func (e *ExpertSender) setDefaults() {
	e.BaseURL = "https://api.ecdp.app"
	e.Timeout = Duration(10 * time.Second)
}

// Delivery configures retries and parallelism of outbound deliveries.
type Delivery struct {
	MaxAttempts int     `yaml:"max_attempts"`
	Backoff     Backoff `yaml:"backoff"`
	Concurrency int     `yaml:"concurrency"`
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

// Status is one mapping entry.
type Status struct {
	Name         string `yaml:"name"`
	ExpertSender string `yaml:"expertsender"`
}

// Default returns the built-in defaults: listen 127.0.0.1:8080, store
// data/statusbridge.db, no targets, no mapping.
func Default() *Config {
	return &Config{
		Listen:  "127.0.0.1:8080",
		Log:     Log{Level: "info", Format: "text"},
		Store:   Store{Path: "data/statusbridge.db"},
		Webhook: Webhook{Path: "/webhooks/digishare", MaxBody: 1 << 20},
		OrderID: OrderID{From: "external_id"},
		Delivery: Delivery{
			MaxAttempts: 12,
			Backoff:     Backoff{Initial: Duration(time.Second), Max: Duration(10 * time.Minute)},
			Concurrency: 16,
		},
		Mapping: Mapping{Statuses: map[string]Status{}},
	}
}

// Problem is one thing wrong with a config: the key path (e.g.
// "delivery.backoff.max"), its line (0 when unknown) and what is wrong.
type Problem struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	loc := ""
	if p.Line > 0 {
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
	d := &decoder{getenv: getenv, lines: map[string]int{}}
	if d.decodeDocument(data, cfg) {
		// Values that failed to decode kept their defaults, so validating
		// the rest still reports every other problem in the same pass.
		d.validate(cfg)
	}
	if len(d.problems) > 0 {
		sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
		return nil, &Error{Problems: d.problems}
	}
	return cfg, nil
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
	if strings.TrimSpace(c.Store.Path) == "" {
		d.fail("store.path", "must not be empty")
	}
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
	if es := c.Targets.ExpertSender; es != nil {
		d.checkURL("targets.expertsender.base_url", es.BaseURL)
		if es.Timeout <= 0 {
			d.fail("targets.expertsender.timeout", "must be positive")
		}
		if es.WebsiteID < 0 {
			d.fail("targets.expertsender.website_id", "must not be negative")
		}
	}
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
	for i, t := range c.Mapping.TicketTypes {
		if strings.TrimSpace(t) == "" {
			d.fail(fmt.Sprintf("mapping.ticket_types[%d]", i), "must not be empty")
		}
	}
	for id, st := range c.Mapping.Statuses {
		p := "mapping.statuses." + id
		if strings.TrimSpace(id) == "" {
			d.fail(p, "status id must not be empty")
		}
		if st.ExpertSender != "" && c.Targets.ExpertSender == nil {
			d.fail(p+".expertsender", "targets.expertsender is not configured")
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
