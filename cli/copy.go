package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/statusbridge/statusbridge/bolt"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/postgres"
	"github.com/statusbridge/statusbridge/storecopy"
	"github.com/statusbridge/statusbridge/storeopen"
)

const storeUsage = `Usage:
  statusbridge store compact [--config FILE]
  statusbridge store copy --to NEW.yaml [--config OLD.yaml]

compact rewrites the bbolt file offline so it shrinks. copy moves a bbolt
store into an empty PostgreSQL store. Both need the service stopped.

`

// Store runs "store compact" and "store copy".
func Store(args []string, env Env) int {
	if code, done := subcommand(args, storeUsage, env, "compact", "copy"); done {
		return code
	}
	if args[0] == "copy" {
		return StoreCopy(args, env)
	}
	return StoreCompact(args, env)
}

const copyUsage = `Usage: statusbridge store copy --to NEW.yaml [--config OLD.yaml]

Copies the bbolt store of OLD.yaml (store.path; the service must be stopped)
into the empty PostgreSQL store of NEW.yaml (store.driver: postgres): events
with their payloads and every decision, deliveries with every attempt, order
states, dedup keys (so a repeat of an old webhook is still a duplicate),
no-repeat keys, order intakes and each order's intake record, and durable
claims (kept durable: a ticket that may have gone out is not sent again),
deliveries' retry links (a dead delivery a retry resolved stays resolved),
finished bulk jobs (the last 100) and the operator-action log (the last
200), with their ids and times. Refuses a target that holds any record, and
a store with an unfinished bulk job. Writes 500 records a transaction, shows
progress, and ends with a summary and a count check (each kind counted in
both stores): exit 0 when they agree, 1 otherwise. The bbolt file is only
read.

`

// StoreCopy runs "store copy".
func StoreCopy(args []string, env Env) int {
	if code, done := subcommand(args, copyUsage, env, "copy"); done {
		return code
	}
	fs := flags("store copy", copyUsage, env)
	fromPath := fs.String("config", "", "config of the bbolt store to copy, its store.path (default ./config.yaml if present, else built-in defaults)")
	toPath := fs.String("to", "", "config of the PostgreSQL store to copy into (store.driver: postgres)")
	if code, done := parse(fs, args[1:]); done {
		return code
	}
	if *toPath == "" || fs.NArg() > 0 {
		fmt.Fprint(env.Stderr, "store copy needs --to NEW.yaml (and no other argument)\n")
		return exitUsage
	}
	from, err := loadConfig(*fromPath, env, false)
	if err != nil {
		return fail(env, err)
	}
	to, err := config.Resolve(*toPath, env.Getenv)
	if err != nil {
		return fail(env, err)
	}
	if from.Store.Driver != config.DriverBbolt {
		return fail(env, fmt.Errorf("--config %s: store.driver is %s; store copy copies a bbolt store", orDefaults(from), from.Store.Driver))
	}
	if to.Store.Driver != config.DriverPostgres {
		return fail(env, fmt.Errorf("--to %s: store.driver is %s; store copy copies into a PostgreSQL store (store.driver: postgres)", to.File, to.Store.Driver))
	}
	src, err := bolt.OpenExport(from.Store.Path, 500*time.Millisecond)
	if errors.Is(err, bolt.ErrLocked) {
		return fail(env, fmt.Errorf("a running server holds %s: stop the service before copying", from.Store.Path))
	}
	if err != nil {
		return fail(env, err)
	}
	defer src.Close()
	ctx := context.Background()
	backend, err := storeopen.Open(ctx, to, storeopen.Options{MaxConns: 4})
	if err != nil {
		return fail(env, err)
	}
	defer backend.Close()
	dst := backend.(*postgres.DB)

	start := time.Now()
	bar := newCopyProgress(env.Stderr)
	sum, err := storecopy.Copy(ctx, src, dst, bar.update)
	bar.finish()
	target := storeopen.Describe(to)
	if err != nil {
		if sum.Batches > 0 {
			fmt.Fprintf(env.Stderr, "statusbridge: the copy stopped after %d transactions: the target holds part of the store; drop its schema (or database) and copy again\n", sum.Batches)
		}
		return fail(env, err)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(env.Stdout, "copied bbolt %s → %s: %d records in %d transactions, %v (%.0f records/s)\n",
		from.Store.Path, target, sum.Records, sum.Batches, elapsed.Round(time.Millisecond), float64(sum.Records)/max(elapsed.Seconds(), 1e-3))
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tBBOLT\tPOSTGRES\t")
	for _, c := range sum.Checks {
		mark := "ok"
		if !c.OK() {
			mark = "MISMATCH"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", c.Kind, c.Source, c.Target, mark)
	}
	tw.Flush()
	if sum.RetryLinks > 0 {
		fmt.Fprintf(env.Stdout, "%d deliveries were copied with their retry links (a retry's predecessor, a dead delivery's resolving retry)\n", sum.RetryLinks)
	}
	if sum.Orphans > 0 {
		fmt.Fprintf(env.Stdout, "%d payloads belonged to no event and were not copied\n", sum.Orphans)
	}
	if sum.Mismatch {
		fmt.Fprintln(env.Stdout, "count check: MISMATCH — the target does not hold what the file holds")
		return exitFailure
	}
	fmt.Fprintln(env.Stdout, "count check: ok — serve with --config", to.File)
	return exitOK
}

func orDefaults(c *config.Config) string {
	if c.File == "" {
		return "built-in defaults"
	}
	return c.File
}

// copyProgress shows a copy's progress: a bar redrawn in place on a
// terminal, else one line per bucket copied.
type copyProgress struct {
	w        io.Writer
	tty      bool
	bucket   string
	from     int // done when bucket began
	done     int
	total    int
	lastDraw time.Time
}

func newCopyProgress(w io.Writer) *copyProgress { return &copyProgress{w: w, tty: isTerminal(w)} }

func (p *copyProgress) update(bucket string, done, total int) {
	if bucket != p.bucket {
		if p.bucket != "" && !p.tty {
			p.line()
		}
		p.from = p.done
	}
	p.bucket, p.done, p.total = bucket, done, total
	if p.tty && (time.Since(p.lastDraw) > 100*time.Millisecond || done == total) {
		p.lastDraw = time.Now()
		const width = 30
		filled := width
		if total > 0 {
			filled = width * done / total
		}
		fmt.Fprintf(p.w, "\r[%s%s] %3d%%  %d/%d records  %-12s", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
			100*done/max(total, 1), done, total, bucket)
	}
}

func (p *copyProgress) line() {
	fmt.Fprintf(p.w, "copied %-17s %7d records (%d of %d in all)\n", p.bucket, p.done-p.from, p.done, p.total)
}

func (p *copyProgress) finish() {
	switch {
	case p.tty && p.bucket != "":
		fmt.Fprintln(p.w)
	case p.bucket != "":
		p.line()
	}
}
