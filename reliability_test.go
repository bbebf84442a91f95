package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/internal/fake"
)

// post sends a raw request to the webhook and returns the status code.
func (s *server) post(body []byte, header map[string]string) int {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/webhooks/digishare", bytes.NewReader(body))
	if body == nil {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("post: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestHostileRequests: each hostile body gets its documented answer, nothing
// reaches a downstream, and the service stays healthy and keeps working.
func TestHostileRequests(t *testing.T) {
	es := fake.NewServer(t)
	s := startServer(t, fmt.Sprintf(adminConfig, es.URL, ""))
	keys := &strings.Builder{}
	keys.WriteString(`{"k0":0`)
	for i := 1; i < 100000; i++ { // base-36 keys keep the body under max_body (1 MiB)
		fmt.Fprintf(keys, `,"%s":0`, strconv.FormatInt(int64(i), 36))
	}
	keys.WriteString("}")
	if keys.Len() > 1<<20 {
		t.Fatalf("100,000-key body is %d bytes, over max_body", keys.Len())
	}
	deep := `{"event":"ticket.updated","data":{"id":"t","data":{"deep":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}}}`
	cases := []struct {
		name   string
		body   []byte
		header map[string]string
		want   int
	}{
		{"invalid UTF-8", []byte("{\"event\":\"ticket.updated\",\"data\":{\"id\":\"\xff\xfe\"}}"), nil, 400},
		{"nested 10,000 levels", []byte(deep), nil, 400},
		{"100,000 keys", []byte(keys.String()), nil, 202},
		{"number for data.id", []byte(`{"event":"ticket.updated","data":{"id":12345,"data":{}}}`), nil, 202},
		{"data as array", []byte(`{"event":"ticket.updated","data":[{"id":"t"}]}`), nil, 202},
		{"duplicate keys (last wins)", []byte(`{"event":"ticket.updated","event":"ticket.created","data":{"id":"t","data":{"external_id":"1"}}}`), nil, 200},
		{"NUL bytes", []byte("{\"event\":\x00\"ticket.updated\"}"), nil, 400},
		{"text/plain content type", []byte(`{"event":"third.updated","data":{"id":"x"}}`), map[string]string{"Content-Type": "text/plain"}, 200},
		{"missing body", nil, nil, 400},
		{"empty JSON object", []byte(`{}`), nil, 202},
	}
	for _, c := range cases {
		start := time.Now()
		if got := s.post(c.body, c.header); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v", c.name, d)
		}
	}
	// Nothing that was stored can send anything: no delivery exists.
	code, body := s.call("GET", "/admin/deliveries", nil)
	if code != 200 || len(body["deliveries"].([]any)) != 0 {
		t.Errorf("deliveries after hostile input: %d %v", code, body)
	}
	_, body = s.call("GET", "/admin/events?state=invalid", nil)
	if n := len(body["events"].([]any)); n != 4 {
		t.Errorf("%d invalid events quarantined, want 4", n)
	}
	// Still healthy, still working.
	if code, _ := s.call("GET", "/healthz", nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	if code := s.post(fake.Update{TicketID: "ok", OrderID: "1", StatusID: "yqdwrbka7kz69v8e", DateStatus: "2026-01-13 10:00:00"}.Payload(), nil); code != 200 {
		t.Errorf("a good webhook after hostile ones: %d", code)
	}
	if reqs := es.WaitRequests(1, 10*time.Second); len(reqs) != 1 || reqs[0].OrderID != "1" {
		t.Errorf("downstream got %+v, want only the good event", reqs)
	}
}

// TestHugeBodiesAreNotReadWhole: a declared 50 MiB body is refused from its
// Content-Length; an undeclared (chunked) one is cut off after max_body.
func TestHugeBodiesAreNotReadWhole(t *testing.T) {
	es := fake.NewServer(t)
	s := startServer(t, fmt.Sprintf(adminConfig, es.URL, ""))
	for _, chunked := range []bool{false, true} {
		conn, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		hdr := "POST /webhooks/digishare HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
		if chunked {
			hdr += "Transfer-Encoding: chunked\r\n\r\n"
		} else {
			hdr += fmt.Sprintf("Content-Length: %d\r\n\r\n", 50<<20)
		}
		if _, err := io.WriteString(conn, hdr); err != nil {
			t.Fatal(err)
		}
		// Write until the server answers or stops reading; count what it took.
		resp := make(chan int, 1)
		go func() {
			r, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				resp <- 0
				return
			}
			resp <- r.StatusCode
		}()
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		written := 0
		var code int
	loop:
		for written < 50<<20 {
			select {
			case code = <-resp:
				break loop
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			var err error
			if chunked {
				_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = conn.Write(chunk)
			}
			if err != nil {
				code = <-resp
				break
			}
			written += len(chunk)
		}
		conn.Close()
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked=%v: answer %d, want 413", chunked, code)
		}
		if written > 8<<20 {
			t.Errorf("chunked=%v: the server read %d MiB before refusing", chunked, written>>20)
		}
	}
	if code, _ := s.call("GET", "/healthz", nil); code != 200 {
		t.Errorf("healthz after huge bodies: %d", code)
	}
}

// TestNoSecretOrPersonalDataInLogs captures every log line of a full run —
// a webhook with a real-looking phone, email and token (in the query
// string too), a downstream that fails echoing the API key, admin calls —
// and fails if any secret, full phone number or full email appears.
func TestNoSecretOrPersonalDataInLogs(t *testing.T) {
	const apiKey = "k-1234567"
	es := fake.NewServer(t)
	es.Default = fake.Answer{Code: 401, Body: `{"title":"Unauthorized","detail":"x-api-key k-1234567 is not valid for +212612345678 / salma.bennani@example.org"}`}
	s := startServer(t, strings.Replace(fmt.Sprintf(adminConfig, es.URL, ""), "store:", "webhook: { token: Hook-Secret-31337 }\nstore:", 1))
	third := map[string]string{"name": "Salma Bennani", "email": "salma.bennani@example.org", "wa_id": "212612345678", "ext_ref": "CUSTOMER-1"}
	u := fake.Update{TicketID: "t1", OrderID: "ORDER-9", StatusID: "yqdwrbka7kz69v8e", DateStatus: "2026-01-13 10:00:00", Third: third}
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/webhooks/digishare?token=Hook-Secret-31337", bytes.NewReader(u.Payload()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", resp, err)
	}
	resp.Body.Close()
	// Wrong credentials are logged too, without the attempted token.
	req, _ = http.NewRequest(http.MethodPost, "http://"+s.addr+"/webhooks/digishare?token=Hook-Secret-31338", bytes.NewReader(u.Payload()))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	es.WaitRequests(1, 10*time.Second)
	s.deadDeliveries(1)
	s.call("GET", "/admin/events?limit=5", nil)
	s.cancel()
	<-s.exited
	logs := s.logs.String()
	if !strings.Contains(logs, "delivery attempt") || !strings.Contains(logs, "webhook received") {
		t.Fatalf("the run did not log what it should:\n%s", logs)
	}
	for _, leak := range []string{"Hook-Secret-31337", "Hook-Secret-31338", apiKey, adminTok, "212612345678", "+212612345678",
		"salma.bennani@example.org", "salma.bennani@", "Salma Bennani"} {
		if strings.Contains(logs, leak) {
			t.Errorf("logs contain %q", leak)
		}
	}
}
