package receiver

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/mapping"
)

// TestSlowHeadersAreCutOff: a client sending its headers one byte at a time
// is disconnected by the read-header timeout and holds nothing: other
// clients are served meanwhile.
func TestSlowHeadersAreCutOff(t *testing.T) {
	e := newEnv(t, "", nil)
	table := e.server.opt.Mapping
	s := New(bridge.Store{Backend: e.db}, Options{WebhookPath: hookPath, MaxBody: 4096, ReadHeaderTimeout: 300 * time.Millisecond,
		Mapping: func() *mapping.Table { return table() }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(t.Context())

	slow := make([]net.Conn, 20)
	for i := range slow {
		if slow[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		defer slow[i].Close()
	}
	start := time.Now()
	closed := make(chan time.Duration, len(slow))
	for _, c := range slow {
		go func(c net.Conn) {
			header := "POST /webhooks/digishare HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n"
			for i := 0; i < len(header); i++ {
				if _, err := c.Write([]byte{header[i]}); err != nil {
					break
				}
				time.Sleep(50 * time.Millisecond) // the slow client's pace, not synchronisation
			}
			_, _ = io.ReadAll(c) // returns when the server closes the connection
			closed <- time.Since(start)
		}(c)
	}
	// Meanwhile a normal client is served at once.
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz during slow clients: %v %v", resp, err)
	}
	resp.Body.Close()
	for range slow {
		select {
		case d := <-closed:
			if d > 3*time.Second {
				t.Errorf("slow client cut off after %v, want about the 300ms read-header timeout", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a slow client was never cut off")
		}
	}
}
