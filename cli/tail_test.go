package cli

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/internal/fake"
	"github.com/statusbridge/statusbridge/receiver"
)

// waitFor waits until buf holds want, or fails after 10 s.
func waitFor(t *testing.T, buf *fake.LogBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("never printed %q; got:\n%s", want, buf.String())
		}
		time.Sleep(5 * time.Millisecond) // poll pace of a stream we read from outside
	}
}

// TestTailPrintsEventsAndResultsAsTheyHappen: events tail prints each event
// stored and each delivery result recorded after it started, until its
// context ends; deliveries tail prints only the results.
func TestTailPrintsEventsAndResultsAsTheyHappen(t *testing.T) {
	s := newSite(t)
	s.ingest("t0", "3000", "2026-01-13 09:00:00") // before the tail: not shown
	url := s.serve()
	start := func(cmd func([]string, Env) int, args ...string) (*fake.LogBuffer, *fake.LogBuffer, context.CancelFunc, chan int) {
		out, errb := &fake.LogBuffer{}, &fake.LogBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		code := make(chan int, 1)
		go func() {
			code <- cmd(append(args, "--config", s.cfg, "--server", url), Env{Getenv: tokenEnv, Stdout: out, Stderr: errb, Ctx: ctx})
		}()
		waitFor(t, errb, "tailing "+url)
		return out, errb, cancel, code
	}
	evOut, _, stopEvents, evCode := start(Events, "tail")
	dOut, _, stopDeliveries, dCode := start(Deliveries, "tail")
	res := s.ingest("t1", "3001", "2026-01-13 10:00:00")
	waitFor(t, evOut, "order 3001")
	if err := s.db.Record(context.Background(), res.Deliveries[0].ID, bridge.AttemptResult{State: bridge.Done,
		Attempt: &bridge.Attempt{At: time.Now(), StatusCode: 200, Duration: 12 * time.Millisecond}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, evOut, "expertsender  \"paid\"  done  attempt 1 HTTP 200 12ms")
	waitFor(t, dOut, "order 3001  expertsender  \"paid\"  done")
	stopEvents()
	stopDeliveries()
	if c := <-evCode; c != 0 {
		t.Errorf("events tail exit %d after Ctrl-C", c)
	}
	if c := <-dCode; c != 0 {
		t.Errorf("deliveries tail exit %d after Ctrl-C", c)
	}
	if strings.Contains(evOut.String(), "order 3000") {
		t.Errorf("events tail printed an event from before it started:\n%s", evOut)
	}
	if strings.Contains(dOut.String(), " event ") {
		t.Errorf("deliveries tail printed events:\n%s", dOut)
	}
}

// TestTailEndsWhenTheServerShutsDown: a connected tail does not hold the
// server's shutdown; it ends and says why.
func TestTailEndsWhenTheServerShutsDown(t *testing.T) {
	s := newSite(t)
	db := s.open()
	srv := receiver.New(bridge.Store{Backend: db}, s.adminOptions(db))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	errb := &fake.LogBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- Events([]string{"tail", "--config", s.cfg, "--server", "http://" + ln.Addr().String()},
			Env{Getenv: tokenEnv, Stdout: &fake.LogBuffer{}, Stderr: errb})
	}()
	waitFor(t, errb, "tailing")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a tail connected: %v after %v", err, time.Since(began))
	}
	if c := <-code; c != 1 || !strings.Contains(errb.String(), "ended the stream") {
		t.Errorf("tail after shutdown: exit %d, stderr %q", c, errb)
	}
}
