package config

import (
	"fmt"
	"sort"
	"strings"
)

// ParseMapping reads a candidate mapping section, as an operator pastes it in
// the console: a YAML document whose only top-level key is mapping. Its
// entries are checked against the targets of running, and the result is
// running with the candidate's mapping in place of its own. Problems come
// back as a *Error whose lines are the lines of data. ${VAR} references are
// not read from the server's environment: an unset one without a default is
// a problem.
func ParseMapping(data []byte, running *Config) (*Config, error) {
	d := &decoder{getenv: func(string) (string, bool) { return "", false }, lines: map[string]int{}}
	cand := Default()
	if d.decodeDocument(data, cand) {
		if _, ok := d.lines["mapping"]; !ok && len(d.problems) == 0 {
			d.add("mapping", 0, "the candidate has no mapping section: start it with a line \"mapping:\"")
		}
		for path, line := range d.lines {
			if !strings.Contains(path, ".") && !strings.Contains(path, "[") && path != "mapping" {
				d.add(path, line, "only the mapping section is checked here")
			}
		}
		for i, t := range cand.Mapping.TicketTypes {
			if strings.TrimSpace(t) == "" {
				d.fail(fmt.Sprintf("mapping.ticket_types[%d]", i), "must not be empty")
			}
		}
		for id, st := range cand.Mapping.Statuses {
			d.validateEntry("mapping.statuses."+id, id, st, &running.Targets)
		}
	}
	if len(d.problems) > 0 {
		sort.SliceStable(d.problems, func(i, j int) bool {
			a, b := d.problems[i], d.problems[j]
			return a.Line < b.Line || (a.Line == b.Line && a.Path < b.Path)
		})
		return nil, &Error{File: "candidate", Problems: d.problems}
	}
	out := *running
	out.Mapping = cand.Mapping
	out.lines = d.lines
	return &out, nil
}
