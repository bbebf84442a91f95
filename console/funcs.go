package console

import (
	"fmt"
	"html/template"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
)

var funcs = template.FuncMap{
	"utc":        utc,
	"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"dur":        duration,
	"age":        age,
	"stateclass": stateClass,
	"counts":     counts,
	"pct":        pct,
	"excerpt":    excerpt,
	"lastattempt": func(d bridge.Delivery) *bridge.Attempt {
		if len(d.Attempts) == 0 {
			return nil
		}
		return &d.Attempts[len(d.Attempts)-1]
	},
	"add": func(a, b int) int { return a + b },
}

func utc(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return d.Round(100 * time.Millisecond).String()
}

func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// known states and breaker positions get a class of their own; anything
// else is shown plainly.
var classed = []string{"dispatched", "unmapped", "superseded", "unchanged", "no_status_change", "ignored", "no_order_id",
	"no_action", "invalid", "pending", "in_flight", "done", "dead", "skipped", "queued", "running", "failed",
	"closed", "open", "half_open"}

func stateClass(s any) string {
	v := fmt.Sprint(s)
	if slices.Contains(classed, v) {
		return "state state-" + v
	}
	return "state"
}

// counts writes deliveries counted by state: "1 done, 2 dead".
func counts(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func pct(done, total int) int {
	if total <= 0 {
		return 100
	}
	return min(100, done*100/total)
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func excerpt(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
