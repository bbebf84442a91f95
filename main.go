// Command statusbridge receives Digishare ticket.updated webhooks, stores
// them durably, maps ticket statuses to order statuses and delivers them
// downstream. main only wires the packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/statusbridge/statusbridge/admin"
	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/cli"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/console"
	"github.com/statusbridge/statusbridge/live"
	"github.com/statusbridge/statusbridge/logging"
	"github.com/statusbridge/statusbridge/mapping"
	"github.com/statusbridge/statusbridge/metrics"
	"github.com/statusbridge/statusbridge/outbound"
	"github.com/statusbridge/statusbridge/postgres"
	"github.com/statusbridge/statusbridge/receiver"
	"github.com/statusbridge/statusbridge/storeopen"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

const usage = `statusbridge — Digishare webhook → order status bridge

Usage:
  statusbridge serve [--config FILE]         run the service
  statusbridge config check [--config FILE]  validate a config file
  statusbridge events list|show|tail ...     stored events, their decisions and deliveries; tail: live
  statusbridge deliveries list|retry|tail .. deliveries (dead ones that need a person), retry, live tail
  statusbridge orders push|import|list|show  take orders in (through the running server), list them, show one
  statusbridge replay ...                    re-decide and re-send stored events
  statusbridge mapping diff --config NEW     what a candidate mapping would change
  statusbridge store compact                 shrink the bbolt file (service stopped)
  statusbridge store copy --to NEW.yaml      copy a bbolt store into PostgreSQL (service stopped)
  statusbridge version                       print the version
  statusbridge COMMAND --help                help for a command

events, deliveries, replay and mapping diff ask the running server through its admin API
(--server URL, default http://<listen>; token from STATUSBRIDGE_ADMIN_TOKEN)
and read the store directly (the bbolt file, or the PostgreSQL database)
only when no server answers.

Without --config, commands read ./config.yaml when it exists, else built-in
defaults (listen 127.0.0.1:8080, store data/statusbridge.db, no mapping, no
targets); replay, mapping diff and events on the file say so on stderr. A
--config that does not exist is an error.

Exit status: 0 ok; 1 runtime failure (store cannot be opened, address in
use) or invalid config for 'config check'; 2 usage or config error at serve.
`

// Exit statuses.
const (
	exitOK      = 0
	exitRuntime = 1
	exitConfig  = 2
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is the whole program behind main, with its environment passed in so
// tests can call it.
func run(ctx context.Context, args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], getenv, stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			if len(args) >= 2 && isHelp(args[1]) {
				fmt.Fprint(stdout, checkUsage)
				return exitOK
			}
			fmt.Fprint(stderr, "usage: statusbridge config check [--config FILE]\n")
			return exitConfig
		}
		return cmdConfigCheck(args[2:], getenv, stdout, stderr)
	case "events":
		return cli.Events(args[1:], cli.Env{Getenv: getenv, Stdout: stdout, Stderr: stderr})
	case "deliveries":
		return cli.Deliveries(args[1:], cli.Env{Getenv: getenv, Stdout: stdout, Stderr: stderr})
	case "replay":
		return cli.Replay(args[1:], cli.Env{Getenv: getenv, Stdout: stdout, Stderr: stderr})
	case "orders":
		return cli.Orders(args[1:], cli.Env{Getenv: getenv, Stdout: stdout, Stderr: stderr})
	case "mapping":
		return cli.MappingDiff(args[1:], cli.Env{Getenv: getenv, Stdout: stdout, Stderr: stderr})
	case "store":
		return cli.Store(args[1:], cli.Env{Getenv: getenv, Stdout: stdout, Stderr: stderr})
	case "version":
		if len(args) > 1 {
			if isHelp(args[1]) {
				fmt.Fprint(stdout, versionUsage)
				return exitOK
			}
			fmt.Fprint(stderr, versionUsage)
			return exitConfig
		}
		fmt.Fprintln(stdout, "statusbridge", buildVersion())
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "statusbridge: unknown command %q\n\n%s", args[0], usage)
	return exitConfig
}

const versionUsage = `Usage: statusbridge version

Prints the version of this build (set at build time with
-ldflags "-X main.version=v1.2.3", else the module version, else "dev").
`

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newFlags returns a flag set that prints help to stdout on --help.
func newFlags(name, help string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stdout, help)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	return fs
}

// parseFlags parses args; done is true when the command should exit with code.
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitConfig, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return exitConfig, true
	}
	return 0, false
}

const checkUsage = `Usage: statusbridge config check [--config FILE]

Validates a config file: YAML syntax, unknown keys, value formats, ranges and
references. Prints every problem (line, key path, reason; a YAML syntax error
with its column and the nearest key) to stderr and exits
1, or prints a summary and exits 0.

`

func cmdConfigCheck(args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("config check", checkUsage, stdout, stderr)
	path := fs.String("config", "", config.FlagUsage)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	cfg, err := config.Resolve(*path, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitRuntime
	}
	name := cfg.File
	if name == "" {
		name = "built-in defaults"
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", name, w)
	}
	table := mapping.New(cfg)
	var enabled, disabled []string
	for _, t := range table.Targets() {
		if why := table.Disabled(t); why != "" {
			disabled = append(disabled, fmt.Sprintf("    %s: %s", t, why))
		} else {
			enabled = append(enabled, t)
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d mapped status ids)\n  targets enabled: %s\n", name, len(cfg.Mapping.Statuses), orNone(enabled))
	if len(disabled) > 0 {
		fmt.Fprintf(stdout, "  targets disabled (their deliveries are recorded as skipped):\n%s\n", strings.Join(disabled, "\n"))
	}
	fmt.Fprintf(stdout, "  order intake (POST %s): %s\n", cfg.Intake.Path, intakeSummary(cfg))
	return exitOK
}

// intakeSummary says what an order intake causes under cfg.
func intakeSummary(cfg *config.Config) string {
	if cfg.Intake.Token == "" {
		return "refused (intake.token is empty)"
	}
	plan := outbound.Plan(cfg)
	var steps []string
	for _, s := range []struct {
		name string
		step bridge.Step
	}{{"ticket (digishare)", plan.Ticket}, {"order upsert (expertsender)", plan.Upsert}, {"fetch of an orderId alone (order_system)", plan.Fetch}} {
		switch {
		case !s.step.On:
			continue
		case s.step.Skip != "":
			steps = append(steps, s.name+" recorded as skipped: "+s.step.Skip)
		default:
			steps = append(steps, s.name)
		}
	}
	return orNone(steps)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

const serveUsage = `Usage: statusbridge serve [--config FILE]

Runs the service: the Digishare webhook (POST webhook.path), the order
intake (POST intake.path), /healthz, /readyz, the admin API, and the
delivery worker. SIGINT/SIGTERM shut it down gracefully.
A config error exits 2 before listening; a start-up failure exits 1.

`

func cmdServe(ctx context.Context, args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("serve", serveUsage, stdout, stderr)
	path := fs.String("config", "", config.FlagUsage)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	cfg, err := config.Resolve(*path, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	log := logging.New(stderr, logging.Options{Format: cfg.Log.Format, Level: cfg.Log.Level,
		Color: isTerminal(stderr), Secrets: secrets(cfg)})
	if err := serve(ctx, cfg, getenv, log); err != nil {
		log.Error("statusbridge stopped", "err", err)
		return exitRuntime
	}
	return exitOK
}

// secrets are what the logs mask: every configured secret, and every
// generic target's header values (and the token after a scheme).
func secrets(cfg *config.Config) []string {
	t := cfg.Targets
	s := cfg.Secrets()
	for _, h := range t.HTTP {
		for _, v := range h.Headers {
			if _, tok, ok := strings.Cut(v, " "); ok {
				s = append(s, tok)
			}
			s = append(s, v)
		}
	}
	return s
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// serve wires the parts, runs until a signal and shuts down in order:
// HTTP first, then the worker and background jobs, then the store.
func serve(ctx context.Context, cfg *config.Config, getenv func(string) (string, bool), log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	gcDefaults(getenv)
	warnInsecure(cfg, log)
	var st bridge.Store
	// Read at scrapes, once the store is open; with PostgreSQL these are the
	// deployment's figures, the same on every replica.
	met := metrics.New(func() (map[string]metrics.OutboxStat, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stats, err := st.PendingByTarget(ctx)
		out := make(map[string]metrics.OutboxStat, len(stats))
		for t, s := range stats {
			out[t] = metrics.OutboxStat{Pending: s.Pending, OldestCreate: s.Oldest}
		}
		return out, err
	})
	plan := outbound.Plan(cfg)                                       // which deliveries an order intake causes
	met.Targets(withIntakeTargets(mapping.New(cfg).Targets(), plan)) // every configured target's gauges read 0 from the start
	var commits atomic.Int64
	backend, err := storeopen.Open(ctx, cfg, storeopen.Options{Logger: log,
		OnCommit: func(writes, pages int, d time.Duration) { commits.Add(1); met.Commit(writes, pages, d) },
		OnCommitter: func(c storeopen.CommitterTimes) {
			met.Committer(c.Idle, c.Linger, c.Apply, c.Spill, c.Sync, c.Rest)
		}})
	if err != nil {
		return err
	}
	go releaseWhenIdle(ctx, commits.Load, time.Second, debug.FreeOSMemory)
	st = bridge.Store{Backend: backend}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}

	// The sender: with bbolt this process is the only one; with PostgreSQL
	// the replicas elect one, and /readyz says whether it is this one.
	pg, replicated := backend.(*postgres.DB)
	var sending atomic.Bool
	setSender := func(on bool) { sending.Store(on); met.SetSender(on) }
	readyInfo := func() map[string]any { return nil }
	if replicated {
		readyInfo = func() map[string]any { return map[string]any{"sender": sending.Load()} }
	}

	maps := live.New(cfg, getenv, log, met)
	met.SetMappingVersion(maps.Current().Version())
	maps.OnReload = func(ids []string, t *mapping.Table) (int, error) {
		met.SetMappingVersion(t.Version())
		sum, err := st.RedecideUnmapped(context.Background(), ids, t, time.Now())
		return sum.Matched, err
	}
	senders, policy := outbound.Build(cfg)
	worker := outbound.NewWorker(st, senders, policy, log)
	worker.Observe(met)
	proxies := admin.ProxiesOf(cfg.Server.TrustedProxies)
	svc := admin.New(admin.Options{Store: st, Console: storeopen.Console(backend), Mapping: maps, Health: worker.Health,
		IntakeTargets: plan.Targets(), Log: log})
	feed, _ := backend.(receiver.Feed)       // the live tail; a backend without one answers 404
	guard := admin.NewGuard(cfg.Admin.Token) // one count of wrong tokens for the API and the console
	var ui http.Handler
	if cfg.Admin.Token != "" {
		c, err := console.New(svc, console.Options{Token: cfg.Admin.Token, Guard: guard, Proxies: proxies, Log: log})
		if err != nil {
			return err
		}
		ui = c
	}
	srv := receiver.New(st, receiver.Options{
		WebhookPath:     cfg.Webhook.Path,
		Token:           cfg.Webhook.Token,
		MaxBody:         int64(cfg.Webhook.MaxBody),
		Mapping:         maps.Current,
		MappingLoadedAt: maps.LoadedAt,
		Ready: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return st.Ping(ctx)
		},
		ReadyInfo:  readyInfo,
		AdminToken: cfg.Admin.Token,
		Admin:      st,
		Service:    svc,
		Guard:      guard,
		Proxies:    proxies,
		Console:    ui,
		Intake: receiver.IntakeOptions{Path: cfg.Intake.Path, Token: cfg.Intake.Token, MaxBody: int64(cfg.Intake.MaxBody),
			Plan: plan},
		Feed:     feed,
		Observer: met,
		Metrics:  met.Handler(),
		Log:      log,
	})

	bg, stopBackground := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	workerDone := make(chan error, 1)
	if replicated {
		leader := postgres.NewLeader(cfg.Store.Postgres.DSN, pg.Schema(), cfg.Delivery.Failover.D(), log)
		setSender(false)
		go func() { workerDone <- worker.RunElected(bg, leader, pg.TakeOver, setSender) }()
	} else {
		setSender(true) // one process holds the bbolt file: it is the sender
		go func() { workerDone <- worker.Run(bg) }()
	}
	background := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	background(func() {
		if err := maps.Watch(bg); err != nil {
			log.Warn("config file not watched; reload with SIGHUP or POST /admin/mapping/reload", "err", err)
		}
	})
	background(func() {
		st.RunRetention(bg, cfg.Store.Retention.D(), retentionInterval(cfg.Store.Retention.D()), log)
	})
	background(func() { svc.RunJobs(bg) }) // bulk jobs run where deliveries are sent
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	background(func() {
		for {
			select {
			case <-bg.Done():
				return
			case <-hup:
				_, _ = maps.Reload() // logged either way
			}
		}
	})
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("statusbridge listening", "addr", ln.Addr().String(), "webhook", cfg.Webhook.Path, "intake", cfg.Intake.Path,
		"store", storeopen.Describe(cfg), "mapping_version", maps.Current().Version(), "targets", orNone(maps.Current().Targets()),
		"version", buildVersion())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
	case runErr = <-workerDone:
		workerDone <- runErr
	}
	stopping := time.Now()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Error("http shutdown", "err", err)
	}
	stopBackground()
	wg.Wait()
	if err := <-workerDone; err != nil && runErr == nil {
		runErr = err
	}
	attrs := []any{"duration", time.Since(stopping).Round(time.Millisecond)}
	if stats, err := st.Stats(context.Background()); err == nil {
		attrs = append(attrs, "pending", stats.Pending) // sent at the next start
	}
	log.Info("shut down", attrs...)
	return runErr
}

// withIntakeTargets adds the targets of the order intake's steps (digishare)
// to the mapping's.
func withIntakeTargets(targets []string, plan bridge.IntakePlan) []string {
	for _, t := range plan.Targets() {
		if !slices.Contains(targets, t) {
			targets = append(targets, t)
		}
	}
	sort.Strings(targets)
	return targets
}

// retentionInterval sweeps often enough for the retention, at most hourly.
// gcPercent and memoryLimit are the garbage collector's settings unless the
// environment sets GOGC or GOMEMLIMIT. Under load a webhook allocates ~20
// KB (bbolt's nodes, the request, the delivery's HTTP call) and keeps
// almost none of it: at Go's default (GOGC 100) the collector took ~15% of
// the CPU at saturation. Twice the live heap between collections halves
// that; the soft limit keeps a burst (the delivery worker holds up to
// 10,000 deliveries per target in memory) from growing the heap to three
// times its size, and the collector works harder only near it.
const (
	gcPercent   = 200
	memoryLimit = 64 << 20
)

func gcDefaults(getenv func(string) (string, bool)) {
	if _, set := getenv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	if _, set := getenv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// releaseWhenIdle gives the heap's garbage back to the system once a busy
// spell is over: when the store has committed nothing for a whole period
// after committing something. With GOGC at 200 the heap of a burst (three
// times its live size) would otherwise stay until the next collection,
// which an idle process does not make for minutes; one collection at the
// end of each burst costs a few milliseconds.
func releaseWhenIdle(ctx context.Context, commits func() int64, period time.Duration, release func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	last, released := commits(), true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch n := commits(); {
		case n != last:
			last, released = n, false
		case !released:
			release()
			released = true
		}
	}
}

func retentionInterval(retention time.Duration) time.Duration {
	return min(max(retention/100, time.Minute), time.Hour)
}

// warnInsecure says loudly what runs without credentials.
func warnInsecure(cfg *config.Config, log *slog.Logger) {
	for _, w := range cfg.Warnings {
		log.Warn("config: "+w.Message, "key", w.Path, "line", w.Line)
	}
	if cfg.Webhook.Token == "" {
		log.Warn("webhook.token is empty: the webhook accepts unauthenticated calls; set DIGISHARE_WEBHOOK_TOKEN")
	}
	t := cfg.Targets
	if t.ExpertSender != nil && !t.ExpertSender.Enabled() {
		log.Warn("targets.expertsender has no api_key: its deliveries are recorded as skipped; set EXPERTSENDER_API_KEY")
	}
	if t.OrderSystem != nil && !t.OrderSystem.Enabled() {
		log.Warn("targets.order_system has no base_url: its deliveries (status and WhatsApp opt-in) are recorded as skipped")
	}
	if t.Everlytic != nil && !t.Everlytic.Enabled() {
		log.Warn("targets.everlytic lacks base_url, store_hash or customer_hash: its deliveries are recorded as skipped")
	}
	for name, h := range t.HTTP {
		if !h.Enabled() {
			log.Warn("generic target has no url: its deliveries are recorded as skipped", "target", mapping.HTTPTargetPrefix+name)
		}
	}
	if cfg.Intake.Token == "" {
		log.Warn("intake.token is empty: every order intake (POST " + cfg.Intake.Path + ") is refused with 401; set STATUSBRIDGE_INTAKE_TOKEN")
	}
	if t.Digishare != nil && !t.Digishare.Enabled() {
		log.Warn("targets.digishare has no token or client credentials: new orders' tickets are recorded as skipped; set DIGISHARE_API_TOKEN")
	}
	if t.ExpertSender != nil && t.ExpertSender.Orders != nil && !t.ExpertSender.OrdersEnabled() {
		log.Warn("targets.expertsender.orders is set but ExpertSender has no api_key: order upserts are recorded as skipped")
	}
	if cfg.Admin.Token == "" {
		log.Warn("admin.token is empty: the admin API (/admin) and the console (/ui/) are disabled; set STATUSBRIDGE_ADMIN_TOKEN to enable them")
	}
	if len(cfg.Mapping.Statuses) == 0 {
		log.Warn("mapping.statuses is empty: every status change is held as unmapped")
	}
	ids := make([]string, 0, len(cfg.Mapping.Statuses))
	for id := range cfg.Mapping.Statuses {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	log.Debug("mapping loaded", "status_ids", strings.Join(ids, ","))
}
