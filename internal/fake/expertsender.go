// Package fake provides downstream systems for tests: real HTTP servers on
// loopback (httptest) that record what they receive and answer as scripted.
package fake

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Request is one request a fake received.
type Request struct {
	At      time.Time
	Method  string
	Path    string
	Header  http.Header
	Body    []byte
	OrderID string // orderId of an ExpertSender status body
	Status  string // orderStatus of an ExpertSender status body
}

// Answer is a scripted response.
type Answer struct {
	Code   int
	Body   string
	Header map[string]string
}

// Server is a scripted downstream. Answers are used in order; when they run
// out, Default answers (200 {} unless set).
type Server struct {
	*httptest.Server

	mu      sync.Mutex
	reqs    []Request
	script  []Answer
	Default Answer
	notify  chan struct{}
	// Respond, when set, chooses the answer for each request instead of the script.
	Respond func(r Request) Answer
}

// NewServer starts a fake on loopback; it is closed when the test ends.
func NewServer(t interface{ Cleanup(func()) }, script ...Answer) *Server {
	s := &Server{script: script, Default: Answer{Code: 200, Body: "{}"}, notify: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := Request{At: time.Now(), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	var es struct {
		OrderID     string `json:"orderId"`
		OrderStatus string `json:"orderStatus"`
	}
	if json.Unmarshal(body, &es) == nil {
		req.OrderID, req.Status = es.OrderID, es.OrderStatus
	}
	s.mu.Lock()
	var a Answer
	switch {
	case s.Respond != nil:
		a = s.Respond(req)
	case len(s.script) > 0:
		a, s.script = s.script[0], s.script[1:]
	default:
		a = s.Default
	}
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	for k, v := range a.Header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	if a.Code == 0 {
		a.Code = 200
	}
	w.WriteHeader(a.Code)
	_, _ = io.WriteString(w, a.Body)
}

// Requests returns a copy of what was received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// WaitRequests blocks until at least n requests arrived or the timeout passes,
// and returns what arrived. It wakes on each request rather than polling.
func (s *Server) WaitRequests(n int, timeout time.Duration) []Request {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if r := s.Requests(); len(r) >= n {
			return r
		}
		select {
		case <-s.notify:
		case <-deadline.C:
			return s.Requests()
		}
	}
}
