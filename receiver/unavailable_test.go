package receiver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/statusbridge/statusbridge/bridge"
)

// failing is an ingester whose store cannot be reached.
type failing struct{ err error }

func (f failing) Ingest(context.Context, bridge.Incoming, bridge.Decider) (bridge.IngestResult, error) {
	return bridge.IngestResult{}, f.err
}

// TestUnavailableStoreAnswers503NeverOK: whatever error the ingest returns
// (the database unreachable, an outcome unknown after COMMIT was sent, any
// other), the webhook gets 503 with Retry-After — never a 2xx — and /readyz
// says why, with the mapping version and the fields ReadyInfo adds.
func TestUnavailableStoreAnswers503NeverOK(t *testing.T) {
	for _, cause := range []error{
		fmt.Errorf("postgres: connect: %w: dial tcp 127.0.0.1:5432: connection refused", bridge.ErrUnavailable),
		fmt.Errorf("postgres: transaction: %w: connection lost", bridge.ErrUnavailable),
		errors.New("postgres: put event: some refusal"),
		context.DeadlineExceeded,
	} {
		e := newEnv(t, "", failing{cause}, func(o *Options) {
			o.Ready = func() error { return cause }
			o.ReadyInfo = func() map[string]any { return map[string]any{"sender": false} }
		})
		a := e.post(hookPath, payload("t1"), nil)
		if a.code != http.StatusServiceUnavailable || a.hdr.Get("Retry-After") == "" {
			t.Errorf("ingest error %q: %d %v (Retry-After %q), want 503 with Retry-After", cause, a.code, a.body, a.hdr.Get("Retry-After"))
		}
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/readyz", nil)
		r := e.do(req)
		if r.code != http.StatusServiceUnavailable || r.body["error"] != cause.Error() || r.body["status"] != "not ready" ||
			r.body["mapping_version"] == "" || r.body["mapping_version"] == nil || r.body["sender"] != false {
			t.Errorf("readyz with %q: %d %v", cause, r.code, r.body)
		}
	}
}

// TestReadyInfo: a ready answer carries the mapping version and ReadyInfo's
// fields.
func TestReadyInfo(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) {
		o.ReadyInfo = func() map[string]any { return map[string]any{"sender": true, "store": "postgres"} }
	})
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/readyz", nil)
	r := e.do(req)
	if r.code != 200 || r.body["status"] != "ready" || r.body["sender"] != true || r.body["store"] != "postgres" ||
		r.body["mapping_version"] != e.server.opt.Mapping().Version() {
		t.Errorf("readyz: %d %v", r.code, r.body)
	}
}
