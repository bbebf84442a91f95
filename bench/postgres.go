package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statusbridge/statusbridge/bench/internal/wrk"
	"github.com/statusbridge/statusbridge/internal/pgserver"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// pgStore is statusbridge's PostgreSQL store as the bench runs it: one
// server of its own (internal/pgserver, a child process of the bench, so the
// quiet wait counts it as the bench's), durable (fsync and
// synchronous_commit on, as a production server), and one schema per
// statusbridge server configuration, so each starts empty as a new bbolt
// file does. Replicas of one configuration share its schema.
type pgStore struct {
	srv      *pgserver.Server
	maxConns int // store.postgres.max_conns of each replica
}

// pgParams are the server settings the bench changes from pgserver's
// (32 MB of shared buffers is a test server's; 128 MB is PostgreSQL's own
// default).
var pgParams = map[string]string{"shared_buffers": "128MB"}

func (s *pgStore) start() error {
	srv, err := pgserver.Start(pgserver.Options{Params: pgParams})
	if errors.Is(err, pgserver.ErrNotInstalled) {
		return errors.New("-store postgres: PostgreSQL is not installed (apt-get install postgresql)")
	}
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	s.srv = srv
	return nil
}

func (s *pgStore) stop() {
	if s.srv != nil {
		if err := s.srv.Destroy(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stop PostgreSQL:", err)
		}
	}
}

func (s *pgStore) name() string { return "postgres" }

func (s *pgStore) configSection(server string) string {
	dsn := "postgres://postgres@127.0.0.1:1/postgres" // not started: a placeholder (TestStoreFlag)
	if s.srv != nil {
		dsn = s.srv.DSN()
	}
	return fmt.Sprintf("store: { driver: postgres, postgres: { dsn: %q, schema: %s, max_conns: %d } }", dsn, server, max(s.maxConns, 1))
}

// sizeBytes is the schema's tables and indexes, on disk.
func (s *pgStore) sizeBytes(server string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.srv.DSN())
	if err != nil {
		return 0, fmt.Errorf("store size: %w", err)
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`, server).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store size: %w", err)
	}
	return n, nil
}

func (s *pgStore) ownPIDs() []int {
	if s.srv == nil || s.srv.PID() == 0 {
		return nil
	}
	return []int{s.srv.PID()}
}

// PostgresFigures are issue #12's figures of a run with -store postgres.
type PostgresFigures struct {
	Settings          string  `json:"settings"`
	Ingest1PerS       float64 `json:"durable_ingest_1_replica_per_s"`
	Deliver1PerS      float64 `json:"ingest_delivery_1_replica_per_s"`
	Ingest2PerS       float64 `json:"durable_ingest_2_replicas_per_s"`
	Deliver2PerS      float64 `json:"ingest_delivery_2_replicas_per_s"`
	AckP99_1kMs       float64 `json:"ack_p99_1000_with_delivery_ms"`
	ServerP99_1kMs    float64 `json:"ack_p99_1000_with_delivery_server_ms"`
	E2EP99_1kMs       float64 `json:"e2e_p99_1000_ms"`
	BboltDeliverPerS  float64 `json:"bbolt_ingest_delivery_per_s"`
	Deliver1VsBbolt   float64 `json:"ingest_delivery_1_replica_vs_bbolt"`
	Target            float64 `json:"target_vs_bbolt"`
	Met               bool    `json:"met"`
	CPUPerWebhookUs   float64 `json:"server_cpu_us_per_webhook_1_replica_delivering"`
	PostgresCPUPerReq float64 `json:"postgres_cpu_us_per_webhook_1_replica_delivering"`
	CommitP50ms       float64 `json:"commit_p50_ms_1_replica_delivering"`
	CommitP99ms       float64 `json:"commit_p99_ms_1_replica_delivering"`
	BytesPerEvent     float64 `json:"store_bytes_per_event_1_replica_delivering"`
}

// pgTarget: one replica on PostgreSQL ingests and delivers at least this
// share of the bbolt store's rate in the same run (issue #12).
const pgTarget = 0.33

// postgresPhases measures statusbridge on PostgreSQL: durable ingest and
// ingest + delivery at saturation with one replica and with two, and the
// ack at 1,000/s with one, against bboltDeliver (the bbolt store's ingest +
// delivery at saturation, same run).
func (b *bench) postgresPhases(bin string, pg *pgStore, bbolt Result) error {
	fmt.Fprintln(os.Stderr, "PostgreSQL (its own server, fsync and synchronous_commit on):")
	if err := pg.start(); err != nil {
		return err
	}
	defer pg.stop()
	f := &PostgresFigures{Settings: fmt.Sprintf("PostgreSQL from %s, fsync on, synchronous_commit on, shared_buffers %s, one server on this machine; max_conns %d per replica",
		pgVersion(pg), pgParams["shared_buffers"], pg.maxConns), BboltDeliverPerS: bbolt.Throughput, Target: pgTarget}
	b.rep.Postgres = f
	bridge := phaseOpts{bridge: true, pgCPU: pg}
	delivering := phaseOpts{bridge: true, drain: true, pgCPU: pg}

	// One replica.
	addr := freeAddr()
	one, err := startBridge(bin, b.dir, "pg1_ingest", addr, "", pg)
	if err != nil {
		return fmt.Errorf("statusbridge on PostgreSQL (targets paused): %w", err)
	}
	r, err := b.phase(one, bridge, func() (Result, error) { return b.saturate("pg 1 replica: ingest saturation", addr, b.satDur) })
	one.stop()
	if err != nil {
		return err
	}
	f.Ingest1PerS = r.Throughput

	addr = freeAddr()
	one, err = startBridge(bin, b.dir, "pg1_deliver", addr, b.es.URL(), pg)
	if err != nil {
		return fmt.Errorf("statusbridge on PostgreSQL (delivering): %w", err)
	}
	r, err = b.phase(one, delivering, func() (Result, error) {
		return b.saturate("pg 1 replica: ingest+delivery saturation", addr, b.satDur)
	})
	if err != nil {
		one.stop()
		return err
	}
	f.Deliver1PerS, f.CPUPerWebhookUs, f.PostgresCPUPerReq = r.Throughput, r.CPUPerReqUs, r.StoreCPUPerReqUs
	f.CommitP50ms, f.CommitP99ms = r.CommitP50ms, r.CommitP99ms
	stored := r.OK
	b.es.reset()
	r, err = b.phase(one, delivering, func() (Result, error) {
		return attack("pg 1 replica: ingest+delivery 1000/s", addr, b.es, vegeta.Rate{Freq: 1000, Per: time.Second}, b.fixDur)
	})
	one.stop()
	if err != nil {
		return err
	}
	stored += r.OK
	f.AckP99_1kMs, f.ServerP99_1kMs, f.E2EP99_1kMs = r.P99ms, r.ServerP99ms, r.E2EP99ms
	if size, err := pg.sizeBytes("pg1_deliver"); err == nil && stored > 0 {
		f.BytesPerEvent = float64(size) / float64(stored)
	}

	// Two replicas of one deployment, each taking half the load.
	for _, p := range []struct {
		name, schema, es string
		into             *float64
	}{
		{"pg 2 replicas: ingest saturation", "pg2_ingest", "", &f.Ingest2PerS},
		{"pg 2 replicas: ingest+delivery saturation", "pg2_deliver", b.es.URL(), &f.Deliver2PerS},
	} {
		a1, a2 := freeAddr(), freeAddr()
		r1, err := startBridge(bin, b.dir, p.schema, a1, p.es, pg)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		r2, err := startBridgeAs(bin, b.dir, p.schema, p.schema+"_b", a2, p.es, pg)
		if err != nil {
			r1.stop()
			return fmt.Errorf("%s: %w", p.name, err)
		}
		o := phaseOpts{drain: p.es != ""}
		r, err := b.phase(r1, o, func() (Result, error) { return b.saturateTwo(p.name, a1, a2, b.satDur) })
		r1.stop()
		r2.stop()
		if err != nil {
			return err
		}
		*p.into = r.Throughput
	}
	f.Deliver1VsBbolt = div(f.Deliver1PerS, f.BboltDeliverPerS)
	f.Met = f.Deliver1PerS > 0 && f.BboltDeliverPerS > 0 && f.Deliver1VsBbolt >= pgTarget
	return nil
}

func pgVersion(pg *pgStore) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.srv.DSN())
	if err != nil {
		return "?"
	}
	defer conn.Close(context.Background())
	var v string
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return "PostgreSQL " + v
}

// saturateTwo drives two servers at once, half the connections each (two
// wrk runs side by side, or two Go generators), and adds their figures up.
// Its p99 is the larger of the two runs' (they are not merged).
func (b *bench) saturateTwo(name, a1, a2 string, d time.Duration) (Result, error) {
	var wg sync.WaitGroup
	res := make([]Result, 2)
	errs := make([]error, 2)
	if b.gen.wrk == "" {
		for i, addr := range []string{a1, a2} {
			wg.Add(1)
			go func() { defer wg.Done(); res[i], errs[i] = attack(name, addr, nil, vegeta.Rate{}, d) }()
		}
	} else {
		const span = 1 << 28 // ids of the two runs never meet
		first := seq.Load() + 1
		for i, addr := range []string{a1, a2} {
			lua, err := wrk.Script(body, webhookPath, first+int64(i)*span, 1)
			if err != nil {
				return Result{}, err
			}
			script := fmt.Sprintf("%s.%d", b.gen.script, i)
			if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
				return Result{}, fmt.Errorf("wrk script: %w", err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, cpu, _, err := wrk.Run(context.Background(), wrk.Options{Bin: b.gen.wrk, URL: "http://" + addr + webhookPath,
					Threads: 1, Connections: 32, Duration: d, Timeout: 10 * time.Second, Script: script})
				if err != nil {
					errs[i] = err
					return
				}
				res[i] = Result{Generator: "wrk", Rate: s.RatePerS(), Throughput: s.OKPerS(), P50ms: s.Latency.P50 / 1000,
					P99ms: s.Latency.P99 / 1000, OK: int(s.OK()), NonOK: int(s.Non2xx()), SocketErrors: int(s.SocketErrors()),
					GenCPUPerReqUs: 1e6 * cpu.Seconds() / float64(max(s.Requests, 1))}
			}()
		}
		defer seq.Add(2 * span)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Result{}, fmt.Errorf("%s: %w", name, err)
	}
	out := Result{Name: name, Generator: res[0].Generator + " ×2", Rate: res[0].Rate + res[1].Rate,
		Throughput: res[0].Throughput + res[1].Throughput, P50ms: max(res[0].P50ms, res[1].P50ms), P99ms: max(res[0].P99ms, res[1].P99ms),
		OK: res[0].OK + res[1].OK, NonOK: res[0].NonOK + res[1].NonOK, SocketErrors: res[0].SocketErrors + res[1].SocketErrors,
		GenCPUPerReqUs: (res[0].GenCPUPerReqUs + res[1].GenCPUPerReqUs) / 2}
	out.Success = float64(out.OK) / float64(max(out.OK+out.NonOK+out.SocketErrors, 1))
	return out, nil
}
