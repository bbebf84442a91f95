package receiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// FuzzWebhook sends arbitrary bodies through the real handler and a real
// store: the answer is always a documented code, never a 500, and every 2xx
// names the stored event.
func FuzzWebhook(f *testing.F) {
	if sample, err := os.ReadFile("../digishare/testdata/ticket_updated.json"); err == nil {
		f.Add(sample)
	}
	f.Add([]byte(`{"event":"ticket.updated","data":{"id":5}}`))
	f.Add([]byte("not json"))
	f.Add([]byte{})
	e := newEnv(f, "", nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, hookPath, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		e.server.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted:
			if !bytes.Contains(rec.Body.Bytes(), []byte(`"event_id":"`)) {
				t.Fatalf("%d without event_id: %s", rec.Code, rec.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("undocumented answer %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}
