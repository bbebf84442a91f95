package config

import (
	"errors"
	"testing"
)

func TestParseMapping(t *testing.T) {
	running, err := Parse([]byte("targets: { expertsender: { api_key: k } }\nmapping: { statuses: { a: { name: A, expertsender: paid } } }\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	good := "mapping:\n  statuses:\n    a: { name: A, expertsender: completed }\n    b: { name: B, expertsender: placed }\n"
	cand, err := ParseMapping([]byte(good), running)
	if err != nil {
		t.Fatalf("good candidate: %v", err)
	}
	if len(cand.Mapping.Statuses) != 2 || cand.Targets.ExpertSender == nil || running.Mapping.Statuses["a"].ExpertSender != "paid" {
		t.Errorf("candidate = %+v (running changed: %v)", cand.Mapping, running.Mapping)
	}
	for _, tc := range []struct {
		name, text string
		line       int
		path       string
	}{
		{"unknown key", "mapping:\n  statuses:\n    a: { name: A, expertsender: paid }\n    b: { name: B, expertsendr: placed }\n", 4, "mapping.statuses.b.expertsendr"},
		{"unconfigured target", "mapping:\n  statuses:\n\n    a: { name: A, order_system: paid }\n", 4, "mapping.statuses.a.order_system"},
		{"other section", "listen: 1.2.3.4:1\nmapping: { statuses: {} }\n", 1, "listen"},
		{"no mapping", "# nothing\n", 0, "mapping"},
		{"environment", "mapping:\n  statuses:\n    a: { name: \"${ADMIN_TOKEN}\", expertsender: paid }\n", 3, "mapping.statuses.a.name"},
		{"syntax", "mapping:\n  statuses:\n    a: { name: A, expertsender: paid\n", 0, ""},
	} {
		_, err := ParseMapping([]byte(tc.text), running)
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) == 0 {
			t.Errorf("%s: %v, want problems", tc.name, err)
			continue
		}
		p := ce.Problems[0]
		if tc.path != "" && (p.Path != tc.path || p.Line != tc.line) {
			t.Errorf("%s: first problem %+v, want %s at line %d", tc.name, p, tc.path, tc.line)
		}
		if tc.name == "syntax" && p.Line == 0 {
			t.Errorf("syntax error without a line: %+v", p)
		}
	}
}
