package receiver

import (
	"net/http"
	"testing"
)

func TestConsoleMountedOnlyWithTheToken(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Console", r.URL.Path) })
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(e *env, path string) *http.Response {
		t.Helper()
		resp, err := noRedirect.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	on := newEnv(t, "", nil, withAdmin, func(o *Options) { o.Console = ui })
	if r := get(on, "/"); r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d %q, want a redirect to /ui/", r.StatusCode, r.Header.Get("Location"))
	}
	for _, p := range []string{"/ui", "/ui/", "/ui/events/x"} {
		if r := get(on, p); r.Header.Get("X-Console") != p {
			t.Errorf("GET %s did not reach the console: %d", p, r.StatusCode)
		}
	}
	off := newEnv(t, "", nil, func(o *Options) { o.Console = ui })
	if r := get(off, "/ui/"); r.StatusCode != http.StatusNotFound || r.Header.Get("X-Console") != "" {
		t.Errorf("without admin.token: %d", r.StatusCode)
	}
}
