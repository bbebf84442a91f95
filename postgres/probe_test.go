package postgres

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/bridge/backendtest"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/internal/pgtest"
)

func TestProbeStatements(t *testing.T) {
	params := []pgtest.Option{pgtest.Param("shared_preload_libraries", "pg_stat_statements")}
	if *probeNoAV {
		params = append(params, pgtest.Param("autovacuum", "off"))
	}
	srv := pgtest.Start(t, params...)
	dsn := srv.NewDatabase(t)
	db := openDSN(t, dsn, Options{MaxConns: *probeConns})
	ctx := context.Background()
	if _, err := db.pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	tb := backendtest.Table(t, "k")
	var n atomic.Int64
	var wg sync.WaitGroup
	cpu0, _ := serverCPU(db)
	go0 := processCPU()
	start := time.Now()
	total := int64(*probeTotal)
	for w := 0; w < *probeWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := n.Add(1)
				if i > total {
					return
				}
				raw := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: backendtest.Confirmed, DateStatus: "2026-01-13 16:29:51"}.Payload()
				ev, _ := digishare.Decode(raw)
				if _, err := bridge.Ingest(ctx, db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}, tb); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu1, _ := serverCPU(db)
	t.Logf("%d ingests in %s; pg cpu %d µs/op, go cpu %d µs/op", total, time.Since(start), (cpu1-cpu0)/total/1000, (processCPU()-go0)/total/1000)
	rows, err := db.pool.Query(ctx, "SELECT calls, round(total_exec_time::numeric, 1), round((total_exec_time/calls*1000)::numeric, 1), left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM public.pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var calls int64
		var tot, per float64
		var q string
		rows.Scan(&calls, &tot, &per, &q)
		t.Logf("%8d calls %9.1f ms %7.1f µs  %s", calls, tot, per, q)
	}
}

var (
	probeConns   = flag.Int("probeconns", 32, "")
	probeWorkers = flag.Int("probeworkers", 64, "")
	probeTotal   = flag.Int("probetotal", 20000, "")
	probeNoAV    = flag.Bool("probenoav", false, "")
)
