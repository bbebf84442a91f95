package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/mapping"
	"github.com/statusbridge/statusbridge/receiver"
)

// Exit statuses, as main's.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// subcommand checks that args start with one of names; otherwise it prints
// the usage (to stdout for --help, exit 0; to stderr, exit 2) and done is true.
func subcommand(args []string, usage string, env Env, names ...string) (code int, done bool) {
	if len(args) > 0 {
		for _, n := range names {
			if args[0] == n {
				return 0, false
			}
		}
		if args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
			fmt.Fprint(env.Stdout, usage)
			return exitOK, true
		}
	}
	fmt.Fprint(env.Stderr, usage)
	return exitUsage, true
}

func flags(name, usage string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(env.Stdout, usage)
		fs.SetOutput(env.Stdout)
		fs.PrintDefaults()
		fs.SetOutput(env.Stderr)
	}
	return fs
}

// common registers --config and --server.
func common(fs *flag.FlagSet) (cfgPath, server *string) {
	return fs.String("config", "", config.FlagUsage),
		fs.String("server", "", "admin API base URL (default: http://<listen>); when set, the store is never opened directly")
}

func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	return 0, false
}

// loadConfig reads --config; without it ./config.yaml, else the built-in
// defaults. A --config that does not exist is an error. A command that
// decides or sends (decides) says on stderr when it runs on the defaults.
func loadConfig(path string, env Env, decides bool) (*config.Config, error) {
	cfg, err := config.Resolve(path, env.Getenv)
	if err == nil && decides {
		noteDefaults(cfg, env)
	}
	return cfg, err
}

// noteDefaults says on stderr that cfg is the built-in defaults.
func noteDefaults(cfg *config.Config, env Env) {
	if cfg.File == "" {
		fmt.Fprintln(env.Stderr, "statusbridge:", config.DefaultsNote)
	}
}

// usageError reports a bad flag value (exit 2), the same whichever backend
// would have answered.
func usageError(env Env, flagName string, err error) int {
	fmt.Fprintf(env.Stderr, "statusbridge: %s: %v\n", flagName, err)
	return exitUsage
}

func fail(env Env, err error) int {
	fmt.Fprintln(env.Stderr, "statusbridge:", userMessage(err))
	return exitFailure
}

// userMessage is an error's text for the person at the terminal: a
// conflict's own words, and no store sentinel's wording.
func userMessage(err error) string {
	var ce *bridge.ConflictError
	if errors.As(err, &ce) {
		return ce.Msg
	}
	msg := err.Error()
	if errors.Is(err, bridge.ErrNotFound) {
		msg = strings.Replace(msg, bridge.ErrNotFound.Error()+": ", "not found: ", 1)
	}
	return msg
}

const eventsUsage = `Usage:
  statusbridge events list [--state S] [--delivery-state S [--all]] [--order ID] [--since T] [--until T] [--limit N] [--json]
  statusbridge events show ID [--json | --raw]
  statusbridge events tail [--json]

Lists stored events (newest first) or shows one: payload, decisions,
deliveries and every attempt. Times are RFC 3339 or "YYYY-MM-DD HH:MM:SS" (UTC).
The running server is asked through its admin API (STATUSBRIDGE_ADMIN_TOKEN);
when none answers, the store is read directly (the bbolt file, or the
PostgreSQL database with store.driver: postgres).
Run "statusbridge events list --help" (or show) for a command's flags.

`

const eventsListUsage = `Usage: statusbridge events list [--state S] [--delivery-state S [--all]] [--order ID]
                                [--since T] [--until T] [--limit N] [--json]

Lists stored events, newest first. The ID column shows the end of each
event's id, enough of it to be unique: events show, replay --event and the
admin API accept it as the id. --delivery-state dead lists the events with a
dead delivery that no done retry has resolved (--all: resolved ones too). Times are RFC 3339 or
"YYYY-MM-DD HH:MM:SS" (UTC). The running server is asked through its admin
API (STATUSBRIDGE_ADMIN_TOKEN); when none answers, the store file is read.

`

const eventsShowUsage = `Usage: statusbridge events show ID [--json | --raw]

ID is the event's id or the end of it that events list shows.

Shows one stored event: its decisions, the payload (pretty-printed; --raw
prints it exactly as received, and nothing else), its deliveries and every
attempt. The running server is asked through its admin
API (STATUSBRIDGE_ADMIN_TOKEN); when none answers, the store file is read.

`

// Events runs "events list", "events show" and "events tail".
func Events(args []string, env Env) int {
	if code, done := subcommand(args, eventsUsage, env, "list", "show", "tail"); done {
		return code
	}
	switch args[0] {
	case "show":
		return eventsShow(args[1:], env)
	case "tail":
		return tail(args[1:], env, "events tail", eventsTailUsage, "/admin/events/stream")
	}
	return eventsList(args[1:], env)
}

// open loads the config and connects to the server or the file.
func open(env Env, cfgPath, server string, writable bool) (backend, *config.Config, int) {
	cfg, err := loadConfig(cfgPath, env, false)
	if err != nil {
		return nil, nil, fail(env, err)
	}
	srv, explicit := serverURL(cfg, server)
	b, err := connect(cfg, srv, explicit, env, writable)
	if err != nil {
		return nil, nil, fail(env, err)
	}
	return b, cfg, exitOK
}

func eventsShow(args []string, env Env) int {
	fs := flags("events show", eventsShowUsage, env)
	cfgPath, server := common(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	raw := fs.Bool("raw", false, "print only the payload, exactly as it was received")
	var id string
	rest := args
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	if code, done := parse(fs, rest); done {
		return code
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	}
	if id == "" {
		fmt.Fprint(env.Stderr, "events show needs an event id\n")
		return exitUsage
	}
	b, _, code := open(env, *cfgPath, *server, false)
	if b == nil {
		return code
	}
	defer b.Close()
	if *raw {
		p, err := b.Payload(id)
		if err != nil {
			return fail(env, err)
		}
		_, _ = env.Stdout.Write(p)
		return exitOK
	}
	d, err := b.Detail(id)
	if err != nil {
		return fail(env, err)
	}
	if *asJSON {
		return printJSON(env.Stdout, d)
	}
	printDetail(env.Stdout, d)
	return exitOK
}

func eventsList(args []string, env Env) int {
	fs := flags("events list", eventsListUsage, env)
	cfgPath, server := common(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	state := fs.String("state", "", "only events in this state (dispatched, unmapped, invalid, ...)")
	deliveryState := fs.String("delivery-state", "", "only events with a delivery in this state (dead, pending, done, ...)")
	all := fs.Bool("all", false, "with --delivery-state dead: also dead deliveries a done retry resolved")
	order := fs.String("order", "", "only events of this order id")
	since := fs.String("since", "", "received at or after this time")
	until := fs.String("until", "", "received before this time")
	limit := fs.Int("limit", 50, "at most this many events (1-1000)")
	if code, done := parse(fs, args); done {
		return code
	}
	if err := bridge.CheckEventState(*state); err != nil { // before connecting: the server and the file agree
		return usageError(env, "--state", err)
	}
	if err := bridge.CheckDeliveryState(*deliveryState); err != nil {
		return usageError(env, "--delivery-state", err)
	}
	f := bridge.EventFilter{State: *state, OrderID: *order, Limit: *limit, DeliveryState: *deliveryState, IncludeResolved: *all}
	var err error
	if f.Since, err = parseTime("--since", *since); err != nil {
		return usageError(env, "--since", err)
	}
	if f.Until, err = parseTime("--until", *until); err != nil {
		return usageError(env, "--until", err)
	}
	b, _, code := open(env, *cfgPath, *server, false)
	if b == nil {
		return code
	}
	defer b.Close()
	rows, _, err := b.EventSummaries(f)
	if err != nil {
		return fail(env, err)
	}
	if *asJSON {
		return printJSON(env.Stdout, rows)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tEVENT\tTICKET\tORDER\tSTATUS\tSTATE\tDELIVERIES")
	for _, r := range rows {
		status := r.StatusName
		if status == "" {
			status = r.StatusID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shortOr(r.ShortID, r.ID), r.ReceivedAt.UTC().Format(digishare.TimeLayout), r.Event,
			dash(r.TicketID), dash(r.OrderID), dash(status), r.State, counts(r.Deliveries))
	}
	tw.Flush()
	return exitOK
}

// shortOr is the short id a listing computed, else the whole id.
func shortOr(short, id string) string {
	if short != "" {
		return short
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitFailure
	}
	return exitOK
}

func printDetail(w io.Writer, d *bridge.EventDetail) {
	ev := d.Event
	fmt.Fprintf(w, "Event %s (%s)\n  received  %s\n  ticket    %s\n  order     %s\n  state     %s\n",
		ev.ID, ev.Name, ev.ReceivedAt.UTC().Format(time.RFC3339), dash(ev.TicketID), dash(ev.OrderID), ev.State)
	if ev.Error != "" {
		fmt.Fprintf(w, "  error     %s\n", ev.Error)
	}
	for i, dec := range ev.Decisions {
		label := "decision"
		if i > 0 {
			label = fmt.Sprintf("replay %d", i)
		}
		fmt.Fprintf(w, "  %-9s %s (mapping %s) status %s %q changed_at %s", label, dec.Outcome, dec.MappingVersion,
			dash(dec.StatusID), dec.StatusName, dash(dec.ChangedAtText))
		if dec.Reason != "" {
			fmt.Fprintf(w, " — %s", dec.Reason)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Deliveries (%d)\n", len(d.Deliveries))
	for _, del := range d.Deliveries {
		fmt.Fprintf(w, "  %s  %-16s %-12s status %q", del.ID, del.Target, del.State, del.Status)
		if del.Result != "" {
			fmt.Fprintf(w, " result %s", del.Result)
		}
		if del.Reason != "" {
			fmt.Fprintf(w, " — %s", del.Reason)
		}
		fmt.Fprintln(w)
		printAttempts(w, del.Attempts)
	}
	fmt.Fprintf(w, "Payload\n%s\n", prettyPayload(d.Payload))
}

// prettyPayload indents a JSON payload two spaces a level under a two-space
// margin, whatever indentation it arrived with; a body that was not JSON
// (stored as a JSON string) is printed as its text.
func prettyPayload(p json.RawMessage) string {
	var text string
	if json.Unmarshal(p, &text) == nil {
		return "  " + strings.ReplaceAll(text, "\n", "\n  ")
	}
	var compact, out bytes.Buffer
	if json.Compact(&compact, p) != nil || json.Indent(&out, compact.Bytes(), "  ", "  ") != nil {
		return "  " + string(p)
	}
	return "  " + out.String()
}

// printAttempts writes each attempt and the request it sent.
func printAttempts(w io.Writer, attempts []bridge.Attempt) {
	for i, a := range attempts {
		fmt.Fprintf(w, "    attempt %d  %s  HTTP %d  %v", i+1, a.At.UTC().Format(time.RFC3339), a.StatusCode, a.Duration.Round(time.Millisecond))
		if a.Error != "" {
			fmt.Fprintf(w, "  %s", a.Error)
		}
		fmt.Fprintln(w)
		if r := a.Request; r != nil {
			fmt.Fprintf(w, "      sent %s %s\n", r.Method, r.URL)
			names := make([]string, 0, len(r.Headers))
			for k := range r.Headers {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(w, "        %s: %s\n", k, r.Headers[k])
			}
			if r.Body != "" {
				fmt.Fprintf(w, "        %s\n", strings.ReplaceAll(r.Body, "\n", "\n        "))
			}
			if r.BodySize > 0 {
				fmt.Fprintf(w, "        (body cut: the first %d of %d bytes)\n", len(r.Body), r.BodySize)
			}
		}
	}
}

const replayUsage = `Usage: statusbridge replay (--event ID... | --order ID | --since T [--until T] | --dead [--include-unknown])
                          [--target NAME]... [--dry-run] [--force]

Re-decides the selected events under the current mapping and creates the
deliveries that decision asks for; superseded and unchanged still hold
unless --force. --dry-run prints, per event, what it would send and sends
nothing. Ends with a summary of the events (matched; dispatched,
superseded, unchanged, with no delivery to make, failed) and, separately, of
the deliveries (to send; skipped because their target is disabled); a bulk
replay on the store itself shows progress. --dead also queues again the dead
deliveries of order intakes (tickets, ExpertSender orders, fetches), except
tickets whose outcome is unknown (they may exist in Digishare): those are
left out and counted unless --include-unknown.

`

// Replay runs "replay".
func Replay(args []string, env Env) int {
	fs := flags("replay", replayUsage, env)
	cfgPath, server := common(fs)
	var events, targets multi
	fs.Var(&events, "event", "event id to replay, or the end of it events list shows (repeatable)")
	order := fs.String("order", "", "replay every event of this order")
	since := fs.String("since", "", "replay events received at or after this time")
	until := fs.String("until", "", "with --since: received before this time")
	dead := fs.Bool("dead", false, "replay the events of every dead delivery")
	fs.Var(&targets, "target", "only this target (repeatable): expertsender, order_system, whatsapp_opt_in, everlytic, http.<name>, digishare")
	dry := fs.Bool("dry-run", false, "print what would be sent; send nothing")
	force := fs.Bool("force", false, "send even when superseded or unchanged (and repeat Everlytic workflows)")
	includeUnknown := fs.Bool("include-unknown", false, "with --dead: retry dead tickets whose outcome is unknown too (they may exist in Digishare)")
	if code, done := parse(fs, args); done {
		return code
	}
	events = append(events, fs.Args()...)
	selectors := 0
	for _, on := range []bool{len(events) > 0, *order != "", *since != "", *dead} {
		if on {
			selectors++
		}
	}
	if selectors != 1 || (*until != "" && *since == "") {
		fmt.Fprint(env.Stderr, "replay needs exactly one of --event, --order, --since (with optional --until) or --dead\n")
		return exitUsage
	}
	if *includeUnknown && !*dead {
		fmt.Fprint(env.Stderr, "--include-unknown goes with --dead\n")
		return exitUsage
	}
	cfg, err := loadConfig(*cfgPath, env, true)
	if err != nil {
		return fail(env, err)
	}
	srv, explicit := serverURL(cfg, *server)
	b, err := connect(cfg, srv, explicit, env, !*dry)
	if err != nil {
		return fail(env, err)
	}
	defer b.Close()
	req := receiver.ReplayRequest{EventIDs: events, OrderID: *order, Since: *since, Until: *until, Dead: *dead,
		Targets: targets, DryRun: *dry, Force: *force, IncludeUnknown: *includeUnknown}
	start := time.Now()
	progress := func(done, total int) {
		if total > replayProgressMin {
			fmt.Fprintf(env.Stderr, "\rreplayed %d/%d events", done, total)
			if done == total {
				fmt.Fprintln(env.Stderr)
			}
		}
	}
	sum, err := b.Replay(req, progress)
	if err != nil {
		return fail(env, err)
	}
	if *dry {
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EVENT\tORDER\tTARGET\tSTATUS\tNOTE")
		for _, r := range sum.Requests {
			note := "would send"
			if r.Skip != "" {
				note = "skipped: " + r.Skip
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.EventID, r.OrderID, r.Target, r.Status, note)
		}
		tw.Flush()
	}
	fmt.Fprintln(env.Stdout, summaryLine(sum, *dry, time.Since(start)))
	if *dead {
		fmt.Fprintln(env.Stdout, deadIntakeLine(sum, *dry))
	}
	for _, e := range sum.Errors {
		fmt.Fprintln(env.Stderr, "  ", e)
	}
	if sum.Failed > 0 {
		return exitFailure
	}
	return exitOK
}

// summaryLine counts a replay's events (by the outcome of their new
// decision) and its deliveries (to send, or skipped because their target is
// disabled) separately, each labelled: a dispatched event whose deliveries
// are all skipped is one dispatched event and that many skipped deliveries.
func summaryLine(sum bridge.ReplaySummary, dry bool, took time.Duration) string {
	verb, send := "replayed", "queued to send"
	if dry {
		verb, send = "dry run", "would be sent"
	}
	skipped := 0
	for _, r := range sum.Requests {
		if r.Skip != "" {
			skipped++
		}
	}
	return fmt.Sprintf("%s: events: %d matched, %d dispatched, %d superseded, %d unchanged, %d with no delivery to make, %d failed; "+
		"deliveries: %d %s, %d skipped (target disabled) (%v)",
		verb, sum.Matched, sum.Dispatched, sum.Superseded, sum.Unchanged, sum.Skipped, sum.Failed,
		len(sum.Requests)-skipped, send, skipped, took.Round(time.Millisecond))
}

// deadIntakeLine counts what a dead replay did with the dead deliveries of
// order intakes (tickets, ExpertSender orders, fetches), which have no event
// to re-decide: retried, and the tickets of unknown outcome left out.
func deadIntakeLine(sum bridge.ReplaySummary, dry bool) string {
	verb := "queued again"
	if dry {
		verb = "would be queued again"
	}
	line := fmt.Sprintf("intake deliveries (ticket, order, fetch): %d %s", sum.Retried, verb)
	if sum.LeftOutUnknown > 0 {
		line += fmt.Sprintf("; %d ticket(s) of unknown outcome left out (they may exist in Digishare: check, then retry each with "+
			"deliveries retry, or all with --include-unknown)", sum.LeftOutUnknown)
	}
	return line
}

// replayProgressMin: smaller replays print only their summary.
const replayProgressMin = 200

const diffUsage = `Usage: statusbridge mapping diff --config NEW.yaml [--last N] [--server URL]

Decides the last N stored events under the mapping of NEW.yaml and prints
each event whose outcome or statuses would change (old outcome → new
outcome). Nothing is sent and nothing is written. Order history is not
re-evaluated: superseded and unchanged count as dispatched, so the diff
shows what the mapping itself changes. The store is read from the server
at --server or, when none answers, from the store of NEW.yaml itself.

`

// MappingDiff runs "mapping diff".
func MappingDiff(args []string, env Env) int {
	if code, done := subcommand(args, diffUsage, env, "diff"); done {
		return code
	}
	fs := flags("mapping diff", diffUsage, env)
	cfgPath, server := common(fs)
	last := fs.Int("last", 100, "how many of the newest events to decide again (1-1000)")
	if code, done := parse(fs, args[1:]); done {
		return code
	}
	if *last < 1 || *last > 1000 {
		fmt.Fprint(env.Stderr, "--last: a whole number from 1 to 1000\n")
		return exitUsage
	}
	cand, err := loadConfig(*cfgPath, env, true)
	if err != nil {
		fmt.Fprintln(env.Stderr, err)
		return exitFailure
	}
	table := mapping.New(cand)
	srv, explicit := serverURL(cand, *server)
	b, err := connect(cand, srv, explicit, env, false)
	if err != nil {
		return fail(env, err)
	}
	defer b.Close()
	rows, _, err := b.EventSummaries(bridge.EventFilter{Limit: *last})
	if err != nil {
		return fail(env, err)
	}
	changed := 0
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tORDER\tSTATUS\tOLD\t\tNEW")
	for i := len(rows) - 1; i >= 0; i-- {
		r := rows[i]
		if r.State == bridge.EventInvalid {
			continue
		}
		d, err := b.Detail(r.ID)
		if err != nil {
			return fail(env, err)
		}
		old, nd, diff, ok := table.Compare(d)
		if !ok || !diff {
			continue
		}
		changed++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t→\t%s %s\n", r.ID, dash(r.OrderID), dash(nd.StatusID), old.Outcome, mapping.Sends(old, d.Deliveries), nd.Outcome, mapping.Sends(nd, nil))
	}
	tw.Flush()
	fmt.Fprintf(env.Stdout, "%d of %d events would change under %s (mapping version %s)\n", changed, len(rows), cand.File, table.Version())
	return exitOK
}

const compactUsage = `Usage: statusbridge store compact [--config FILE]

Rewrites the store file offline so it shrinks after retention deleted old
events (bbolt never gives space back by itself). Refuses while a server
holds the file: stop the service first.

`

// StoreCompact runs "store compact".
func StoreCompact(args []string, env Env) int {
	if code, done := subcommand(args, compactUsage, env, "compact"); done {
		return code
	}
	fs := flags("store compact", compactUsage, env)
	cfgPath := fs.String("config", "", config.FlagUsage)
	if code, done := parse(fs, args[1:]); done {
		return code
	}
	cfg, err := loadConfig(*cfgPath, env, false)
	if err != nil {
		return fail(env, err)
	}
	if cfg.Store.Driver == config.DriverPostgres {
		return fail(env, errors.New("store compact shrinks a bbolt file; this config uses PostgreSQL, which reclaims space with VACUUM"))
	}
	before, after, err := bolt.Compact(cfg.Store.Path, 500*time.Millisecond)
	if errors.Is(err, bolt.ErrLocked) {
		return fail(env, fmt.Errorf("a running server holds %s: stop it before compacting", cfg.Store.Path))
	}
	if err != nil {
		return fail(env, err)
	}
	fmt.Fprintf(env.Stdout, "compacted %s: %d → %d bytes\n", cfg.Store.Path, before, after)
	return exitOK
}

func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := digishare.ParseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: use RFC 3339 or \"YYYY-MM-DD HH:MM:SS\" (UTC)", name)
	}
	return t, nil
}
