package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
)

const deliveriesUsage = `Usage:
  statusbridge deliveries list [--state S] [--target T] [--order ID] [--all] [--limit N] [--json]
  statusbridge deliveries retry ID...
  statusbridge deliveries tail [--json]

Lists deliveries (newest first) or queues dead ones again. The running
server is asked through its admin API (STATUSBRIDGE_ADMIN_TOKEN); when none
answers, the store file is used. Run "statusbridge deliveries list --help"
(or retry) for a command's flags.

`

const deliveriesListUsage = `Usage: statusbridge deliveries list [--state S] [--target T] [--order ID] [--all] [--limit N] [--json]

Lists deliveries, newest first. --state dead lists what still needs a
person: dead deliveries that no done retry (deliveries retry, or a replay of
their event) has resolved; --all lists the resolved ones too. The ID column
shows the end of each id, enough of it to be unique: deliveries retry and
the admin API accept it.

`

const deliveriesRetryUsage = `Usage: statusbridge deliveries retry ID...

Queues each dead delivery again, as a new delivery with the same order,
target and status. ID is the delivery's id or the end of it that deliveries
list shows. Refused for a delivery that is not dead, or one a newer delivery
for the same order and target replaced (it would send an older status).

`

// Deliveries runs "deliveries list", "deliveries retry" and "deliveries tail".
func Deliveries(args []string, env Env) int {
	if code, done := subcommand(args, deliveriesUsage, env, "list", "retry", "tail"); done {
		return code
	}
	switch args[0] {
	case "retry":
		return deliveriesRetry(args[1:], env)
	case "tail":
		return tail(args[1:], env, "deliveries tail", deliveriesTailUsage, "/admin/deliveries/stream")
	}
	return deliveriesList(args[1:], env)
}

func deliveriesList(args []string, env Env) int {
	fs := flags("deliveries list", deliveriesListUsage, env)
	cfgPath, server := common(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	state := fs.String("state", "", "only deliveries in this state (pending, in_flight, done, dead, skipped, superseded)")
	target := fs.String("target", "", "only deliveries to this target")
	order := fs.String("order", "", "only deliveries of this order id")
	all := fs.Bool("all", false, "with --state dead: also dead deliveries a done retry resolved")
	limit := fs.Int("limit", 50, "at most this many deliveries (1-1000)")
	if code, done := parse(fs, args); done {
		return code
	}
	if err := bridge.CheckDeliveryState(*state); err != nil {
		return usageError(env, "--state", err)
	}
	b, _, code := open(env, *cfgPath, *server, false)
	if b == nil {
		return code
	}
	defer b.Close()
	ds, _, err := b.Deliveries(bridge.DeliveryFilter{State: *state, Target: *target, OrderID: *order, IncludeResolved: *all, Limit: *limit})
	if err != nil {
		return fail(env, err)
	}
	if *asJSON {
		return printJSON(env.Stdout, ds)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tORDER\tTARGET\tKIND\tSTATUS\tSTATE\tATTEMPTS\tNOTE")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", shortOr(d.ShortID, d.ID), d.CreatedAt.UTC().Format(digishare.TimeLayout),
			d.OrderID, d.Target, d.KindOrStatus(), dash(d.Status), d.State, len(d.Attempts), deliveryNote(&d))
	}
	tw.Flush()
	return exitOK
}

// deliveryNote says what a delivery waits for or why it ended.
func deliveryNote(d *bridge.Delivery) string {
	var parts []string
	if d.ResolvedBy != "" {
		parts = append(parts, "resolved by "+d.ResolvedBy)
	}
	if d.RetryOf != "" {
		parts = append(parts, "retry of "+d.RetryOf)
	}
	if !d.NextAttemptAt.IsZero() && !d.State.Terminal() {
		parts = append(parts, "next attempt "+d.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	if d.Reason != "" && !strings.HasPrefix(d.Reason, "retry of ") {
		parts = append(parts, d.Reason)
	}
	if d.Result != "" {
		parts = append(parts, d.Result)
	}
	return dash(strings.Join(parts, "; "))
}

func deliveriesRetry(args []string, env Env) int {
	fs := flags("deliveries retry", deliveriesRetryUsage, env)
	cfgPath, server := common(fs)
	var ids []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		ids, args = append(ids, args[0]), args[1:]
	}
	if code, done := parse(fs, args); done {
		return code
	}
	ids = append(ids, fs.Args()...)
	if len(ids) == 0 {
		fmt.Fprint(env.Stderr, "deliveries retry needs at least one delivery id\n")
		return exitUsage
	}
	b, _, code := open(env, *cfgPath, *server, true)
	if b == nil {
		return code
	}
	defer b.Close()
	failed := 0
	for _, ref := range ids {
		d, err := b.Retry(ref)
		if err != nil {
			failed++
			fmt.Fprintf(env.Stderr, "statusbridge: retry %s: %s\n", ref, userMessage(err))
			continue
		}
		if d.KindOrStatus() != bridge.KindStatus {
			fmt.Fprintf(env.Stdout, "%s: queued again as %s (order %s, %s, %s)\n", ref, d.ID, d.OrderID, d.Target, d.Kind)
			continue
		}
		fmt.Fprintf(env.Stdout, "%s: queued again as %s (order %s, %s, status %q)\n", ref, d.ID, d.OrderID, d.Target, d.Status)
	}
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}
