package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/mapping"
)

// MappingView is the mapping in force as a table, with what the store holds
// of each status id.
type MappingView struct {
	MappingState
	Targets     []string     `json:"targets"`
	TicketTypes []string     `json:"ticket_types"`
	Rows        []MappingRow `json:"rows"`
	// Unmapped are the status ids without an entry whose events are held.
	Unmapped []IDCount `json:"unmapped"`
	// Section is the mapping section as YAML, to start a candidate from.
	Section string `json:"section"`
}

// MappingRow is one status id: its name, its status per target, and how
// many stored events have it (held unmapped ones among them).
type MappingRow struct {
	StatusID string            `json:"status_id"`
	Name     string            `json:"name"`
	Targets  map[string]string `json:"targets"`
	Stored   int               `json:"stored"`
	Unmapped int               `json:"unmapped"`
}

// Mapping returns the mapping in force as a table.
func (s *Service) Mapping(ctx context.Context) (*MappingView, error) {
	c, err := s.console.Counters(ctx, s.now())
	if err != nil {
		return nil, err
	}
	t := s.maps.Current()
	v := &MappingView{MappingState: s.mappingState(), Targets: t.Targets(), TicketTypes: t.TicketTypes(), Rows: []MappingRow{}}
	entries := t.Entries()
	for id, e := range entries {
		v.Rows = append(v.Rows, MappingRow{StatusID: id, Name: e.Name, Targets: e.Targets, Stored: c.StatusIDs[id], Unmapped: c.Unmapped[id]})
	}
	sort.Slice(v.Rows, func(i, j int) bool { return v.Rows[i].StatusID < v.Rows[j].StatusID })
	held := map[string]int{}
	for id, n := range c.Unmapped {
		if _, ok := entries[id]; !ok {
			held[id] = n
		}
	}
	v.Unmapped = idCounts(held)
	v.Section, err = section(s.maps.Config().Mapping)
	return v, err
}

// section writes a mapping section as YAML, with only the keys that are set.
func section(m config.Mapping) (string, error) {
	statuses := map[string]map[string]any{}
	for id, st := range m.Statuses {
		e := map[string]any{"name": st.Name}
		set := func(k, v string) {
			if v != "" {
				e[k] = v
			}
		}
		set("expertsender", st.ExpertSender)
		set("order_system", st.OrderSystem)
		if st.WhatsAppOptIn {
			e["whatsapp_opt_in"] = true
		}
		if st.Everlytic != nil {
			e["everlytic"] = map[string]int{"workflow_id": st.Everlytic.WorkflowID}
		}
		if len(st.HTTP) > 0 {
			e["http"] = st.HTTP
		}
		statuses[id] = e
	}
	sec := map[string]any{"statuses": statuses}
	if m.TicketTypes != nil { // absent and empty make different versions
		sec["ticket_types"] = m.TicketTypes
	}
	doc := map[string]any{"mapping": sec}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("admin: write mapping section: %w", err)
	}
	return string(raw), nil
}

// MappingPreview is what a candidate mapping section would change: its
// problems, or the outcomes of the last stored events under it.
type MappingPreview struct {
	Problems []config.Problem `json:"problems,omitempty"`
	Version  string           `json:"version,omitempty"`
	// Examined counts the events decided again; Changed those whose outcome
	// or statuses would change.
	Examined int           `json:"examined"`
	Changed  int           `json:"changed"`
	Changes  []ChangeGroup `json:"changes"`
}

// ChangeGroup is one kind of change (old outcome → new outcome), counted,
// with a few examples.
type ChangeGroup struct {
	From     string          `json:"from"`
	To       string          `json:"to"`
	Count    int             `json:"count"`
	Examples []ChangeExample `json:"examples"`
}

// ChangeExample is one event a change applies to.
type ChangeExample struct {
	EventID  string `json:"event_id"`
	OrderID  string `json:"order_id"`
	StatusID string `json:"status_id"`
}

// MaxPreviewEvents bounds the events a mapping preview decides again.
const MaxPreviewEvents = 1000

// PreviewMapping checks a candidate mapping section (YAML with a mapping
// key) against the running targets and, when it is valid, decides the last
// `last` stored events under it as "mapping diff" does: what the mapping
// itself decides, order history left out. It writes and sends nothing.
func (s *Service) PreviewMapping(ctx context.Context, candidate []byte, last int) (*MappingPreview, error) {
	if last < 1 || last > MaxPreviewEvents {
		return nil, invalid("last: a whole number from 1 to %d", MaxPreviewEvents)
	}
	cfg, err := config.ParseMapping(candidate, s.maps.Config())
	var ce *config.Error
	if errors.As(err, &ce) {
		return &MappingPreview{Problems: ce.Problems, Changes: []ChangeGroup{}}, nil
	}
	if err != nil {
		return nil, err
	}
	table := mapping.New(cfg)
	p := &MappingPreview{Version: table.Version(), Changes: []ChangeGroup{}}
	evs, _, err := s.store.ListEvents(ctx, bridge.EventFilter{Limit: last})
	if err != nil {
		return nil, err
	}
	groups := map[[2]string]*ChangeGroup{}
	var order [][2]string
	for i := len(evs) - 1; i >= 0; i-- { // oldest first, as mapping diff prints them
		ev := evs[i]
		if ev.State == bridge.EventInvalid {
			continue
		}
		d, err := s.store.Detail(ctx, ev.ID)
		if err != nil {
			return nil, err
		}
		old, nd, diff, ok := table.Compare(d)
		if ok {
			p.Examined++
		}
		if !diff {
			continue
		}
		p.Changed++
		key := [2]string{outcomeText(old, d.Deliveries), outcomeText(nd, nil)}
		g := groups[key]
		if g == nil {
			g = &ChangeGroup{From: key[0], To: key[1], Examples: []ChangeExample{}}
			groups[key] = g
			order = append(order, key)
		}
		g.Count++
		if len(g.Examples) < 5 {
			g.Examples = append(g.Examples, ChangeExample{EventID: ev.ID, OrderID: ev.OrderID, StatusID: nd.StatusID})
		}
	}
	for _, k := range order {
		p.Changes = append(p.Changes, *groups[k])
	}
	sort.SliceStable(p.Changes, func(i, j int) bool { return p.Changes[i].Count > p.Changes[j].Count })
	return p, nil
}

func outcomeText(d bridge.Decision, ds []bridge.Delivery) string {
	s := string(d.Outcome)
	if s == "" {
		s = "undecided"
	}
	if sends := mapping.Sends(d, ds); sends != "" {
		s += " " + sends
	}
	return s
}

// ParseLast reads the "last N events" of a mapping preview ("" = 100).
func ParseLast(v string) (int, error) {
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPreviewEvents {
		return 0, invalid("last: a whole number from 1 to %d", MaxPreviewEvents)
	}
	return n, nil
}
