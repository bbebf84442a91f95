// Package pgserver runs a throwaway PostgreSQL server from the installed
// binaries (the highest /usr/lib/postgresql/<version>/bin, else PATH): its
// own data directory in a temporary directory, a loopback TCP port and a
// unix socket, trust authentication for the "postgres" superuser. Tests use
// it through internal/pgtest; the bench (go run ./bench -store postgres)
// uses it directly.
//
// Run as root, the server runs as the "postgres" system user (PostgreSQL
// refuses to run as root). fsync and synchronous_commit stay on unless
// Options.NoSync is set.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Timeouts: how long a server may take to become ready, and to shut down
// before it is killed.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// Options change how a server is started.
type Options struct {
	// NoSync turns off fsync, synchronous_commit and full_page_writes:
	// faster, but committed data may be lost if the machine (not the
	// server) crashes.
	NoSync bool
	// Params are server parameters (postgres -c name=value), applied last.
	Params map[string]string
}

// ErrNotInstalled: no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("postgresql is not installed")

// Server is one PostgreSQL server with its own data directory. Its address
// (DSN) stays the same across Stop and Start.
type Server struct {
	base string // temporary directory: data/, the socket and server.log
	bin  string // directory of postgres and initdb
	port int
	cred *syscall.Credential // non-nil when running as the postgres user
	args []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	waitErr error         // set before exited is closed
}

// Start creates, initialises and starts a server and waits until it accepts
// connections. The caller stops it with Destroy. ErrNotInstalled when the
// binaries are missing.
func Start(o Options) (*Server, error) { return start(o) }

// Dir returns the server's temporary directory (data, socket, log).
func (s *Server) Dir() string { return s.base }

// PID returns the postmaster's process id (0 when it is not running): its
// backends are its children.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return 0
	}
	return s.cmd.Process.Pid
}

// DSN returns the URL of the server's "postgres" database as the superuser
// "postgres" (no password), over loopback TCP.
func (s *Server) DSN() string { return s.DSNFor("postgres") }

// SocketDSN is like DSN but connects over the server's unix socket.
func (s *Server) SocketDSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.base, s.port)
}

// Port returns the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// LogFile returns the path of the server's log (its stderr).
func (s *Server) LogFile() string { return filepath.Join(s.base, "server.log") }

// DSNFor returns the URL of database db on the server as "postgres".
func (s *Server) DSNFor(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Exec runs one statement on the postgres database.
func (s *Server) Exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running()
}

func (s *Server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Stop shuts the server down (fast shutdown: sessions are disconnected,
// committed data kept) and waits until it has exited. Stopping a stopped
// server does nothing.
func (s *Server) Stop() error { return s.signalAndWait(syscall.SIGINT) }

// Crash stops the server the way a crash would: immediate shutdown (SIGQUIT),
// no checkpoint, so the next Start runs crash recovery from the WAL.
func (s *Server) Crash() error { return s.signalAndWait(syscall.SIGQUIT) }

func (s *Server) signalAndWait(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal postgres: %w", err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	return fmt.Errorf("postgres did not stop within %s after %v and was killed (log: %s)", stopTimeout, sig, s.logTail())
}

// Start starts a stopped server again on the same port, socket and data
// directory and waits until it accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running() {
		return errors.New("postgres is already running")
	}
	return s.launch()
}

// launch starts postgres and waits for readiness; s.mu is held.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), s.args...)
	cmd.Dir = s.base
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.cred,
		Setpgid:    true, // a ^C to go test reaches the test, which stops the server in order
		// If the test binary dies (timeout panic, kill), the server goes too.
		Pdeathsig: syscall.SIGQUIT,
	}
	// Pdeathsig fires when the thread that started the child exits: keep
	// this goroutine on one thread while starting, and let the thread go
	// back to the runtime (which keeps it) afterwards.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		s.waitErr = err
		close(exited)
	}()
	return s.waitReady()
}

// waitReady polls a connection until the server answers, it exits, or the
// deadline passes; s.mu is held.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.DSN())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited before accepting connections (%v); log: %s", s.waitErr, s.logTail())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			_ = s.cmd.Process.Kill()
			<-s.exited
			return fmt.Errorf("postgres not ready within %s (last error: %v); log: %s", readyTimeout, last, s.logTail())
		}
	}
}

// logTail returns the end of the server log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.LogFile())
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// Destroy stops the server and removes its files.
func (s *Server) Destroy() error {
	err := s.Stop()
	if rmErr := os.RemoveAll(s.base); rmErr != nil && err == nil {
		err = fmt.Errorf("remove %s: %w", s.base, rmErr)
	}
	return err
}

// BinGlob is where Debian-style packages put the server binaries (a
// variable so tests can pretend PostgreSQL is missing).
var BinGlob = "/usr/lib/postgresql/*/bin"

// start creates, initialises and starts a server.
func start(o Options) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	parent := os.TempDir()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, the server must run as the postgres system user, which does not exist (%w); the postgresql package creates it", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		parent = "/tmp" // reachable by the postgres user, unlike a root-only TMPDIR
	}
	// The socket path (<base>/.s.PGSQL.<port>) must stay under 107 bytes.
	if len(parent) > 60 {
		parent = "/tmp"
	}
	if s.base, err = os.MkdirTemp(parent, "pgtest-"); err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	if err := s.initdb(); err != nil {
		os.RemoveAll(s.base)
		return nil, err
	}
	params := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": s.base,
		"shared_buffers":          "32MB",
		"max_connections":         "300",
		"max_wal_size":            "256MB",
		"wal_level":               "minimal",
		"max_wal_senders":         "0",
		"log_min_messages":        "warning",
		"log_checkpoints":         "off",
		"timezone":                "UTC",
	}
	if o.NoSync {
		params["fsync"] = "off"
		params["synchronous_commit"] = "off"
		params["full_page_writes"] = "off"
	}
	for k, v := range o.Params {
		params[k] = v
	}
	// A free port can be taken by someone else before postgres binds it:
	// try a few.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			os.RemoveAll(s.base)
			return nil, err
		}
		params["port"] = strconv.Itoa(s.port)
		s.args = []string{"-D", filepath.Join(s.base, "data")}
		for _, k := range sortedKeys(params) {
			s.args = append(s.args, "-c", k+"="+params[k])
		}
		s.mu.Lock()
		err = s.launch()
		s.mu.Unlock()
		if err == nil {
			return s, nil
		}
		if attempt == 2 || !strings.Contains(err.Error(), "could not bind") {
			os.RemoveAll(s.base)
			return nil, err
		}
	}
}

func (s *Server) initdb() error {
	if s.cred != nil {
		if err := os.Chmod(s.base, 0o700); err != nil {
			return fmt.Errorf("chmod %s: %w", s.base, err)
		}
		if err := os.Chown(s.base, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("chown %s to postgres: %w", s.base, err)
		}
	}
	cmd := exec.Command(filepath.Join(s.bin, "initdb"), "-D", filepath.Join(s.base, "data"),
		"-U", "postgres", "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync", "--no-instructions")
	cmd.Dir = s.base
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// childEnv is the environment without PG* variables, which could point the
// tools elsewhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

// freePort returns a loopback TCP port that is free now, below the usual
// ephemeral range so outgoing connections do not take it while the server
// is stopped.
func freePort() (int, error) {
	for i := 0; i < 100; i++ {
		p := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			ln.Close()
			return p, nil
		}
	}
	return 0, errors.New("no free TCP port on 127.0.0.1 between 20000 and 32000")
}

// findBin returns the directory holding postgres and initdb: the highest
// /usr/lib/postgresql/<version>/bin, else the one in PATH.
func findBin() (string, error) {
	dirs, _ := filepath.Glob(BinGlob)
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "postgres")) && executable(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		d := filepath.Dir(p)
		if executable(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

// version reads the number in /usr/lib/postgresql/<version>/bin.
func version(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
