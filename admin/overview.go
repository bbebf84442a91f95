package admin

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
)

// Overview is the console's first page: read from the store's counters, the
// sender's breakers and the mapping in force, never from a scan.
type Overview struct {
	At       time.Time    `json:"at"`
	LastHour []StateCount `json:"last_hour"`
	LastDay  []StateCount `json:"last_day"`
	Targets  []TargetView `json:"targets"`
	Mapping  MappingState `json:"mapping"`
	// Unmapped counts the events held as unmapped, by status id.
	Unmapped []IDCount       `json:"unmapped"`
	Actions  []bridge.Action `json:"actions"`
	// Jobs are the newest jobs (running ones first).
	Jobs []bridge.Job `json:"jobs"`
}

// StateCount is a number of events in one state.
type StateCount struct {
	State bridge.EventState `json:"state"`
	Count int               `json:"count"`
}

// IDCount is a number of events with one status id.
type IDCount struct {
	StatusID string `json:"status_id"`
	Count    int    `json:"count"`
}

// TargetView is one target's backlog and health.
type TargetView struct {
	Name          string        `json:"name"`
	Pending       int           `json:"pending"`
	OldestPending time.Time     `json:"oldest_pending,omitzero"`
	OldestAge     time.Duration `json:"oldest_age_ns"`
	Dead          int           `json:"dead"`
	// Breaker is closed, open or half_open ("" when this process does not
	// send: it is the sending replica's).
	Breaker   string    `json:"breaker"`
	OpenUntil time.Time `json:"open_until,omitzero"`
	// Configured is false for a target that has deliveries but is no longer
	// in the config.
	Configured bool `json:"configured"`
}

// MappingState is the mapping in force and the last reload's outcome.
type MappingState struct {
	Version    string      `json:"version"`
	LoadedAt   time.Time   `json:"loaded_at"`
	LastReload *ReloadView `json:"last_reload,omitempty"`
}

// ReloadView is one reload's outcome.
type ReloadView struct {
	At       time.Time        `json:"at"`
	OK       bool             `json:"ok"`
	Version  string           `json:"version"`
	Message  string           `json:"message"`
	Problems []config.Problem `json:"problems,omitempty"`
}

func stateCounts(m map[bridge.EventState]int) []StateCount {
	out := []StateCount{}
	for _, st := range bridge.EventStates {
		if n := m[st]; n > 0 {
			out = append(out, StateCount{State: st, Count: n})
		}
	}
	return out
}

func idCounts(m map[string]int) []IDCount {
	out := make([]IDCount, 0, len(m))
	for id, n := range m {
		out = append(out, IDCount{StatusID: id, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Count > out[j].Count || (out[i].Count == out[j].Count && out[i].StatusID < out[j].StatusID)
	})
	return out
}

// Overview reads the overview.
func (s *Service) Overview(ctx context.Context) (*Overview, error) {
	now := s.now().UTC()
	c, err := s.console.Counters(ctx, now)
	if err != nil {
		return nil, err
	}
	actions, err := s.console.Actions(ctx, 10)
	if err != nil {
		return nil, err
	}
	jobs, err := s.console.ListJobs(ctx, 5)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(jobs, func(i, j int) bool { return !jobs[i].State.Finished() && jobs[j].State.Finished() })
	o := &Overview{At: now, LastHour: stateCounts(c.LastHour), LastDay: stateCounts(c.LastDay), Targets: []TargetView{},
		Unmapped: idCounts(c.Unmapped), Actions: actions, Jobs: jobs}
	configured := s.maps.Current().Targets()
	names := targetNames(configured, c)
	var health map[string]bridge.TargetHealth
	if s.health != nil {
		health = s.health()
	}
	for _, name := range names {
		tc := c.Targets[name]
		tv := TargetView{Name: name, Pending: tc.States[bridge.Pending], Dead: tc.States[bridge.Dead], OldestPending: tc.OldestPending,
			Configured: slices.Contains(configured, name)}
		if !tc.OldestPending.IsZero() {
			tv.OldestAge = max(0, now.Sub(tc.OldestPending))
		}
		if h, ok := health[name]; ok {
			tv.Breaker, tv.OpenUntil = h.Breaker, h.OpenUntil
		}
		o.Targets = append(o.Targets, tv)
	}
	o.Mapping = s.mappingState()
	return o, nil
}

func (s *Service) mappingState() MappingState {
	m := MappingState{Version: s.maps.Current().Version(), LoadedAt: s.maps.LoadedAt()}
	if last := s.maps.LastReload(); last != nil {
		r := &ReloadView{At: last.At, OK: last.Err == nil, Version: last.Version}
		var ce *config.Error
		switch {
		case last.Err == nil && len(last.Result.Added)+len(last.Result.Removed)+len(last.Result.Changed) == 0:
			r.Message = "accepted, no change to the mapping"
		case last.Err == nil:
			r.Message = "accepted"
		case errors.As(last.Err, &ce):
			r.Message, r.Problems = "refused; the running mapping stays", ce.Problems
		default:
			r.Message = "refused: " + UserMessage(last.Err)
		}
		m.LastReload = r
	}
	return m
}

// targetNames are the configured targets and those that have deliveries, sorted.
func targetNames(configured []string, c bridge.Counters) []string {
	names := slices.Clone(configured)
	for name := range c.Targets {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Targets names every target a delivery filter can ask for: the configured
// ones and those with stored deliveries.
func (s *Service) Targets(ctx context.Context) ([]string, error) {
	c, err := s.console.Counters(ctx, s.now())
	if err != nil {
		return nil, err
	}
	return targetNames(s.maps.Current().Targets(), c), nil
}
