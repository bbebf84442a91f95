// Package mapping decides what a Digishare update means: it turns the
// admin's mapping and the order's last applied state into exactly one outcome
// and the deliveries to create. It is pure: no I/O and no clock reads, so
// receiving, replaying and diffing all reuse it unchanged.
package mapping

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
)

// Target names, used for deliveries, logs and metric labels. Generic HTTP
// targets are named HTTPTargetPrefix + their config name ("http.crm").
const (
	TargetExpertSender  = "expertsender"
	TargetOrderSystem   = "order_system"
	TargetWhatsAppOptIn = "whatsapp_opt_in"
	TargetEverlytic     = "everlytic"
	HTTPTargetPrefix    = "http."
)

// OptInStatus is the status of whatsapp_opt_in deliveries (what the order
// system is asked to set).
const OptInStatus = "ACTIVE"

// Table is a compiled mapping: immutable once built, safe for concurrent use.
type Table struct {
	version     string
	ticketTypes map[string]bool
	statuses    map[string]Entry
	targets     []string          // configured targets, sorted
	disabled    map[string]string // target → why its deliveries are skipped
	orderFrom   string            // "external_id", "ticket_number" or "campaign_data"
	campaignKey string
	stripPrefix string
}

// Entry is one status id's mapping: a name and the status per target.
type Entry struct {
	Name    string            `json:"name"`
	Targets map[string]string `json:"targets"` // target name → status to send
}

// New compiles a validated config into a Table.
func New(cfg *config.Config) *Table {
	t := &Table{
		ticketTypes: map[string]bool{},
		statuses:    map[string]Entry{},
		disabled:    map[string]string{},
		stripPrefix: cfg.OrderID.StripPrefix,
	}
	for _, tt := range cfg.Mapping.TicketTypes {
		t.ticketTypes[tt] = true
	}
	add := func(name string, configured, enabled bool, why string) {
		if !configured {
			return
		}
		t.targets = append(t.targets, name)
		if !enabled {
			t.disabled[name] = why
		}
	}
	tg := cfg.Targets
	add(TargetExpertSender, tg.ExpertSender != nil, tg.ExpertSender.Enabled(), "targets.expertsender has no api_key or base_url")
	add(TargetOrderSystem, tg.OrderSystem != nil, tg.OrderSystem.Enabled(), "targets.order_system has no base_url")
	add(TargetWhatsAppOptIn, tg.OrderSystem != nil, tg.OrderSystem.Enabled(), "targets.order_system has no base_url")
	add(TargetEverlytic, tg.Everlytic != nil, tg.Everlytic.Enabled(), "targets.everlytic has no base_url, store_hash or customer_hash")
	for name, h := range tg.HTTP {
		add(HTTPTargetPrefix+name, true, h.Enabled(), "targets.http."+name+" has no url")
	}
	sort.Strings(t.targets)
	for id, st := range cfg.Mapping.Statuses {
		e := Entry{Name: st.Name, Targets: map[string]string{}}
		set := func(target, status string) {
			if status != "" {
				e.Targets[target] = status
			}
		}
		set(TargetExpertSender, st.ExpertSender)
		set(TargetOrderSystem, st.OrderSystem)
		if st.WhatsAppOptIn {
			set(TargetWhatsAppOptIn, OptInStatus)
		}
		if st.Everlytic != nil && st.Everlytic.WorkflowID > 0 {
			set(TargetEverlytic, strconv.Itoa(st.Everlytic.WorkflowID)) // the workflow to trigger
		}
		for name, status := range st.HTTP {
			set(HTTPTargetPrefix+name, status)
		}
		t.statuses[id] = e
	}
	if k, ok := strings.CutPrefix(cfg.OrderID.From, "campaign_data."); ok {
		t.orderFrom, t.campaignKey = "campaign_data", k
	} else {
		t.orderFrom = cfg.OrderID.From
	}
	t.version = version(cfg)
	return t
}

// version is the first 12 hex digits of the SHA-256 of the canonical mapping
// section: its JSON encoding (maps sorted by key, no whitespace).
func version(cfg *config.Config) string {
	canon, _ := json.Marshal(cfg.Mapping)
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])[:12]
}

// Version identifies the mapping that made a decision.
func (t *Table) Version() string { return t.version }

// Entries returns the mapping entries by status id (a copy).
func (t *Table) Entries() map[string]Entry {
	out := make(map[string]Entry, len(t.statuses))
	for id, e := range t.statuses {
		out[id] = e
	}
	return out
}

// TicketTypes returns the ticket types acted on (empty: every type), sorted.
func (t *Table) TicketTypes() []string {
	out := make([]string, 0, len(t.ticketTypes))
	for tt := range t.ticketTypes {
		out = append(out, tt)
	}
	sort.Strings(out)
	return out
}

// Targets returns the configured target names, sorted.
func (t *Table) Targets() []string { return append([]string(nil), t.targets...) }

// Disabled returns why a configured target is disabled (its deliveries are
// recorded as skipped), or "" when it is enabled.
func (t *Table) Disabled(target string) string { return t.disabled[target] }

// OrderID reads the order id from the update as configured, with the prefix
// stripped. ok is false when the field is missing or empty.
func (t *Table) OrderID(ev *digishare.Update) (string, bool) {
	var id string
	switch t.orderFrom {
	case "external_id":
		id = ev.Ticket.ExternalID
	case "ticket_number":
		id = ev.Ticket.TicketNumber
	case "campaign_data":
		id, _ = ev.Ticket.CampaignString(t.campaignKey)
	}
	id = strings.TrimPrefix(strings.TrimSpace(id), t.stripPrefix)
	return id, id != ""
}

// Decide returns the one outcome that applies to ev, testing the rules in the
// documented order, and the deliveries to create when it is Dispatched.
func (t *Table) Decide(ev *digishare.Update, st bridge.OrderState, opt bridge.DecideOptions) bridge.Decision {
	d := bridge.Decision{MappingVersion: t.version}
	d.OrderID, _ = t.OrderID(ev)
	if ts, text, ok := ev.ChangedAt(); ok {
		d.ChangedAt, d.ChangedAtText = ts, text
	}
	if ev.Name != digishare.EventTicketUpdated {
		d.Outcome, d.Reason = bridge.EventIgnored, fmt.Sprintf("event %q is not acted on", ev.Name)
		return d
	}
	statusID, changed := ev.StatusID()
	if !changed {
		d.Outcome, d.Reason = bridge.EventNoStatusChange, "changes has no ticket_status_id"
		return d
	}
	d.StatusID = statusID
	if len(t.ticketTypes) > 0 && !t.ticketTypes[ev.Ticket.TypeTicketID] {
		d.Outcome, d.Reason = bridge.EventIgnored, fmt.Sprintf("ticket type %q is not in mapping.ticket_types", ev.Ticket.TypeTicketID)
		return d
	}
	entry, ok := t.statuses[statusID]
	if !ok {
		d.Outcome, d.Reason = bridge.EventUnmapped, fmt.Sprintf("status id %q has no mapping entry", statusID)
		return d
	}
	d.StatusName = entry.Name
	if d.OrderID == "" {
		d.Outcome, d.Reason = bridge.EventNoOrderID, "the configured order id field is missing or empty"
		return d
	}
	var planned []bridge.Planned
	for _, target := range t.targets {
		if len(opt.Targets) > 0 && !slices.Contains(opt.Targets, target) {
			continue
		}
		if status := entry.Targets[target]; status != "" {
			planned = append(planned, bridge.Planned{Target: target, Status: status, Skip: t.disabled[target]})
		}
	}
	if len(planned) == 0 {
		d.Outcome, d.Reason = bridge.EventNoAction, "the mapping entry names no status for a configured target"
		return d
	}
	if !opt.Force && !d.ChangedAt.IsZero() && st.Watermark.After(d.ChangedAt) {
		d.Outcome = bridge.EventSuperseded
		d.Reason = fmt.Sprintf("order already has a newer update (%s)", st.Watermark.Format(digishare.TimeLayout))
		return d
	}
	for _, p := range planned {
		last, ok := st.Targets[p.Target]
		if opt.Force || !ok || !last.Live || last.Status != p.Status {
			d.Deliveries = append(d.Deliveries, p)
		}
	}
	if len(d.Deliveries) == 0 {
		d.Outcome, d.Reason = bridge.EventUnchanged, "every target already has this status"
		return d
	}
	d.Outcome = bridge.EventDispatched
	return d
}
