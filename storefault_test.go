package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/statusbridge/statusbridge/internal/fake"
)

// TestStoreFullAnswers503AndRecovers runs the binary, then makes its store
// file unable to grow (RLIMIT_FSIZE lowered to the file's size, as a full
// disk would): webhooks get 503, never 200, the service stays up; when the
// limit is lifted ("space returns") webhooks are stored again, without a
// restart, and every acknowledged event is in the store.
func TestStoreFullAnswers503AndRecovers(t *testing.T) {
	bin := buildBinary(t)
	es := fake.NewServer(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	dbPath := filepath.Join(dir, "sb.db")
	cfgPath := filepath.Join(dir, "config.yaml")
	yaml := strings.NewReplacer("ADDR", addr, "STORE", dbPath).Replace(fmt.Sprintf(adminConfig, es.URL, ""))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); <-exited }()
	waitHealthy(t, addr, exited)
	s := &server{t: t, addr: addr}

	fi, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Lower the soft limit only: the hard limit stays, so it can be raised back.
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: uint64(fi.Size()), Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	pad := strings.Repeat("x", 800)
	acked := []string{}
	refused := 0
	for i := range 200 {
		u := fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: "yqdwrbka7kz69v8e",
			DateStatus: "2026-01-13 10:00:00", Campaign: map[string]any{"pad": pad}}
		code, id := s.postID(u.Payload())
		switch code {
		case http.StatusOK:
			acked = append(acked, id)
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("event %d: %d, want 200 or 503", i, code)
		}
	}
	if refused < 150 {
		t.Fatalf("only %d of 200 webhooks refused with a full store", refused)
	}
	if code, _ := s.call("GET", "/healthz", nil); code != 200 {
		t.Fatalf("healthz with a full store: %d", code)
	}
	// Space returns: the next webhooks are stored without a restart.
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	for i := range 20 {
		u := fake.Update{TicketID: fmt.Sprint("after", i), OrderID: fmt.Sprint("a", i), StatusID: "yqdwrbka7kz69v8e", DateStatus: "2026-01-13 10:00:00"}
		code, id := s.postID(u.Payload())
		if code != http.StatusOK {
			t.Fatalf("after space returned: %d", code)
		}
		acked = append(acked, id)
	}
	for _, id := range acked {
		if code, _ := s.call("GET", "/admin/events/"+id, nil); code != 200 {
			t.Errorf("acknowledged event %s is not in the store (%d)", id, code)
		}
	}
	if reqs := es.WaitRequests(len(acked), 20*time.Second); len(reqs) < len(acked) {
		t.Errorf("%d of %d acknowledged events delivered", len(reqs), len(acked))
	}
	t.Logf("full store: %d acknowledged, %d refused with 503; then 20 acknowledged after recovery", len(acked)-20, refused)
}

// postID posts a webhook and returns the status code and event id.
func (s *server) postID(body []byte) (int, string) {
	s.t.Helper()
	resp, err := http.Post("http://"+s.addr+"/webhooks/digishare", "application/json", bytes.NewReader(body))
	if err != nil {
		s.t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		EventID string `json:"event_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.EventID
}

// TestCorruptStoreStopsStartup: a store whose meta pages are damaged stops
// start-up with a clear message and is left exactly as it was.
func TestCorruptStoreStopsStartup(t *testing.T) {
	es := fake.NewServer(t)
	s := startServer(t, fmt.Sprintf(adminConfig, es.URL, ""))
	s.post(fake.Update{TicketID: "t", OrderID: "1", StatusID: "yqdwrbka7kz69v8e"}.Payload(), nil)
	s.cancel()
	<-s.exited
	raw, _ := os.ReadFile(s.cfg)
	dbPath := between(string(raw), `path: "`, `"`)
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{16, 4096 + 16} { // both meta pages
		for i := range 64 {
			data[off+i] ^= 0xA5
		}
	}
	if err := os.WriteFile(dbPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "serve", "--config", s.cfg)
	if code != 1 || !strings.Contains(errOut, "not a statusbridge store (or it is corrupt)") {
		t.Errorf("corrupt store: exit %d, %q", code, errOut)
	}
	after, _ := os.ReadFile(dbPath)
	if !bytes.Equal(after, data) {
		t.Error("start-up modified the corrupt store file")
	}
}
