package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	bolt "go.etcd.io/bbolt"
)

// diskBytesFrom says, in the JSON, where the disk figures come from and why
// that way.
const diskBytesFrom = "write_bytes of /proc/<server pid>/io over the phase (deliveries drained), ÷ the phase's 2xx. " +
	"Every server runs as a child process of the bench, so the figure is the server's alone: not the generator's, " +
	"the bench's, nor the no-op ExpertSender's. It counts bytes the server dirtied in the page cache (bbolt's page " +
	"and meta writes); the file system's journal is not in it."

// runNoop is the baseline: Echo, read the body, answer 200.
func runNoop(addr string) error {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST(webhookPath, func(c echo.Context) error {
		_, _ = io.Copy(io.Discard, c.Request().Body)
		return c.JSON(http.StatusOK, map[string]any{"event_id": "x", "duplicate": false, "state": "dispatched"})
	})
	if err := e.Start(addr); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("no-op Echo on %s: %w", addr, err)
	}
	return nil
}

// runBolt is the issue-5 reference: Echo, read the body, store it with one
// bbolt Update (two fdatasyncs), answer 200.
func runBolt(addr, path string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var n atomic.Uint64
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST(webhookPath, func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		key := binary.BigEndian.AppendUint64(nil, n.Add(1))
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("events"))
			if err != nil {
				return err
			}
			return b.Put(key, body)
		}); err != nil {
			return fmt.Errorf("bbolt update: %w", err)
		}
		return c.JSON(http.StatusOK, map[string]any{"event_id": "x", "duplicate": false, "state": "dispatched"})
	})
	if err := e.Start(addr); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bbolt Echo on %s: %w", addr, err)
	}
	return nil
}

// storeBackend is statusbridge's store as the bench sets it up: the bench
// writes each server's config, so each store is its own store section (a
// path, or a DSN and a schema), its own size, and its own processes (the
// PostgreSQL server's), which the quiet wait counts as the bench's.
type storeBackend interface {
	name() string
	configSection(server string) string // the config's store: line for that server
	sizeBytes(server string) (int64, error)
	ownPIDs() []int
}

func newStore(kind, dir string) (storeBackend, error) {
	switch kind {
	case "bbolt":
		return bboltStore{dir: dir}, nil
	case "postgres":
		return &pgStore{maxConns: 16}, nil // started by the PostgreSQL phases
	default:
		return nil, fmt.Errorf("-store %q: want bbolt or postgres", kind)
	}
}

// bboltStore is one bbolt file per server in the bench's directory.
type bboltStore struct{ dir string }

func (bboltStore) name() string                { return "bbolt" }
func (s bboltStore) path(server string) string { return filepath.Join(s.dir, server+".db") }
func (bboltStore) ownPIDs() []int              { return nil }

func (s bboltStore) configSection(server string) string {
	return fmt.Sprintf("store: { path: %q }", s.path(server))
}

func (s bboltStore) sizeBytes(server string) (int64, error) {
	fi, err := os.Stat(s.path(server))
	if err != nil {
		return 0, fmt.Errorf("store size: %w", err)
	}
	return fi.Size(), nil
}

type process struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// startProcess starts a server and waits (at most 20 s) until it listens.
func startProcess(bin string, args []string, addr string) (*process, error) {
	p := &process{cmd: exec.Command(bin, args...), addr: addr, done: make(chan struct{})}
	p.cmd.Stderr = io.Discard
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited during start-up", bin)
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not listen on %s within 20 s", bin, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitDrained waits (at most d) until the delivery worker has drained its
// outbox, and says whether it did.
func (p *process) waitDrained(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if drained(scrape(p.addr)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// drained says whether a scrape shows an empty outbox. statusbridge reports
// statusbridge_outbox_depth only for targets with pending deliveries, so an
// empty outbox has no series at all; a scrape that failed (no
// statusbridge_webhooks_total either) is not taken for one.
func drained(m map[string]float64) bool {
	answered := false
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "statusbridge_outbox_depth{") && v > 0:
			return false
		case strings.HasPrefix(k, "statusbridge_webhooks_total"), strings.HasPrefix(k, "process_cpu_seconds_total"):
			answered = true
		}
	}
	return answered
}

// startBridge writes a statusbridge config (its store section from st) and
// starts the server; esURL "" pauses the target (deliveries are recorded as
// skipped).
func startBridge(bin, dir, name, addr, esURL string, st storeBackend) (*process, error) {
	return startBridgeAs(bin, dir, name, name, addr, esURL, st)
}

// startBridgeAs is startBridge for a server named name whose store is
// store's (a second replica of one deployment).
func startBridgeAs(bin, dir, store, name, addr, esURL string, st storeBackend) (*process, error) {
	key := ""
	base := "https://api.ecdp.app" // never called: without a key deliveries are skipped
	if esURL != "" {
		key, base = "bench-key", esURL
	}
	cfg := fmt.Sprintf(`listen: %s
log: { level: error, format: json }
%s
order_id: { strip_prefix: "ORDER-" }
targets: { expertsender: { base_url: %q, api_key: %q, timeout: 5s } }
delivery: { concurrency: 16 }
mapping: { statuses: { yqdwrbka7kz69v8e: { name: Order Confirmed, expertsender: paid } } }
`, addr, st.configSection(store), base, key)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("config of %s: %w", name, err)
	}
	return startProcess(bin, []string{"serve", "--config", path}, addr)
}

// freeAddr is a free port on 127.0.0.1: every server of the bench listens
// on loopback and every request goes there.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free port on 127.0.0.1: %v", err))
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rss reads the anonymous and total resident set of a process, in MB.
func rss(pid int) (anon, total float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb / 1024
		case "VmRSS:":
			total = kb / 1024
		}
	}
	return anon, total
}

func machine() string {
	out, _ := exec.Command("nproc").Output()
	gv, _ := exec.Command("go", "version").Output()
	return strings.TrimSpace(string(out)) + " cores, " + strings.TrimSpace(string(gv))
}
