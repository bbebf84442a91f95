package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// expertSender is the no-op downstream: it answers 200 and records arrivals.
type expertSender struct {
	srv      *http.Server
	ln       net.Listener
	mu       sync.Mutex
	arrivals map[string]time.Time
}

func newExpertSender() (*expertSender, error) {
	es := &expertSender{arrivals: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("no-op ExpertSender: %w", err)
	}
	es.ln = ln
	es.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		var b struct {
			OrderID string `json:"orderId"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		es.mu.Lock()
		if _, seen := es.arrivals[b.OrderID]; !seen {
			es.arrivals[b.OrderID] = now
		}
		es.mu.Unlock()
		_, _ = io.WriteString(w, "{}")
	})}
	go es.srv.Serve(es.ln)
	return es, nil
}

func (es *expertSender) URL() string { return "http://" + es.ln.Addr().String() }
func (es *expertSender) Close()      { _ = es.srv.Close() }
func (es *expertSender) reset() {
	es.mu.Lock()
	es.arrivals = map[string]time.Time{}
	es.mu.Unlock()
}

// latencies waits (up to wait) for the phase's events to arrive and returns
// arrival − send time for each.
func (es *expertSender) latencies(sent *sync.Map, wait time.Duration) []time.Duration {
	deadline := time.Now().Add(wait)
	for {
		var out []time.Duration
		missing := 0
		es.mu.Lock()
		sent.Range(func(k, v any) bool {
			if at, ok := es.arrivals[k.(string)]; ok {
				out = append(out, at.Sub(v.(time.Time)))
			} else {
				missing++
			}
			return true
		})
		es.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}
