package outbound

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/internal/fake"
)

const testPDF = "%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"

// invoiceHost is a hostile invoice host. Streamed bodies report how many
// bytes the handler managed to write once it gives up.
type invoiceHost struct {
	*httptest.Server
	hits    map[string]*atomic.Int64
	written chan int64 // bytes written by /stream and /declared, once done
}

func newInvoiceHost(t *testing.T) *invoiceHost {
	h := &invoiceHost{hits: map[string]*atomic.Int64{}, written: make(chan int64, 2)}
	mux := http.NewServeMux()
	handle := func(path string, f http.HandlerFunc) {
		n := &atomic.Int64{}
		h.hits[path] = n
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { n.Add(1); f(w, r) })
	}
	serve := func(ct, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			_, _ = w.Write([]byte(body))
		}
	}
	handle("/ok.pdf", serve("application/pdf", testPDF))
	handle("/octet", serve("application/octet-stream", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
	handle("/untyped.jpg", serve("", "\xff\xd8\xff\xe0\x00\x10JFIF\x00"))
	handle("/anim.gif", serve("application/octet-stream", "GIF89a\x01\x00\x01\x00"))
	handle("/pic.webp", serve("", "RIFF\x24\x00\x00\x00WEBPVP8 "))
	handle("/scan.tiff", serve("image/tiff", "II*\x00\x08\x00\x00\x00"))
	handle("/page.html", serve("text/html; charset=utf-8", "<!DOCTYPE html><html><body>Invoice portal: please log in</body></html>"))
	handle("/lying.pdf", serve("application/pdf", "<html><body>Session expired</body></html>"))
	handle("/data.json", serve("application/json", `{"invoice":"later"}`))
	handle("/empty.pdf", serve("application/pdf", ""))
	handle("/missing", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		_, _ = w.Write([]byte("<h1>Not Found</h1>"))
	})
	handle("/busy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(503)
	})
	handle("/broken", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	handle("/loop/a", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop/b", http.StatusFound) })
	handle("/loop/b", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop/a", http.StatusFound) })
	handle("/chain/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/chain/"))
		if n == 0 {
			w.Header().Set("Content-Type", "application/pdf")
			_, _ = w.Write([]byte(testPDF))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/chain/%d", n-1), http.StatusMovedPermanently)
	})
	handle("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, strings.Replace(h.URL, "127.0.0.1", "localhost", 1)+"/ok.pdf", http.StatusFound)
	})
	handle("/to-ftp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://127.0.0.1/x.pdf", http.StatusFound)
	})
	// 50 MiB: streamed (no length), or declared in Content-Length.
	stream := func(declare bool) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			const total = 50 << 20
			w.Header().Set("Content-Type", "application/pdf")
			if declare {
				w.Header().Set("Content-Length", strconv.Itoa(total))
			}
			chunk := []byte("%PDF-" + strings.Repeat("x", 32<<10-5))
			var n int64
			for n < total {
				m, err := w.Write(chunk)
				n += int64(m)
				if err != nil {
					break
				}
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
			h.written <- n
		}
	}
	handle("/stream", stream(false))
	handle("/declared", stream(true))
	// A byte every 10 ms, for ever (until the client goes away).
	handle("/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pdf")
		w.Header().Set("Content-Length", "1000000")
		_, _ = w.Write([]byte("%PDF-"))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	})
	h.Server = httptest.NewServer(mux)
	t.Cleanup(h.Close)
	return h
}

func invoiceAPI(t *testing.T, maxSize config.Size, allowed ...string) *DigishareAPI {
	t.Helper()
	cfg := digishareConfig(t, "http://digishare.invalid")
	cfg.Timeout = config.Duration(2 * time.Second)
	cfg.Ticket.Invoice.MaxSize = maxSize
	cfg.Ticket.Invoice.AllowedHosts = allowed
	return NewDigishareAPI(cfg, "MA", 1)
}

func TestFetchInvoiceAccepts(t *testing.T) {
	h := newInvoiceHost(t)
	api := invoiceAPI(t, 1<<20, "127.0.0.1")
	for _, tc := range []struct{ path, mime, ext string }{
		{"/ok.pdf", "application/pdf", "pdf"},
		{"/octet", "image/png", "png"},
		{"/untyped.jpg", "image/jpeg", "jpg"},
		{"/anim.gif", "image/gif", "gif"},
		{"/pic.webp", "image/webp", "webp"},
		{"/scan.tiff", "image/tiff", "tiff"},
		{"/chain/3", "application/pdf", "pdf"}, // three redirects are followed
	} {
		inv, resp, err := api.FetchInvoice(t.Context(), h.URL+tc.path)
		if err != nil {
			t.Errorf("FetchInvoice(%s) = %v", tc.path, err)
			continue
		}
		if inv.MIME != tc.mime || inv.Extension != tc.ext || len(inv.Data) == 0 || resp.StatusCode != 200 {
			t.Errorf("FetchInvoice(%s) = %s .%s (%d bytes), %d; want %s .%s", tc.path, inv.MIME, inv.Extension, len(inv.Data), resp.StatusCode, tc.mime, tc.ext)
		}
	}
}

func TestFetchInvoiceRefuses(t *testing.T) {
	h := newInvoiceHost(t)
	api := invoiceAPI(t, 1<<20, "127.0.0.1")
	for _, tc := range []struct {
		path      string
		permanent bool
		says      []string
	}{
		{"/missing?X-Goog-Signature=SIGSECRET", true, []string{"HTTP 404", "text/html", `starting "<h1>Not Found</h1>"`}},
		{"/page.html", true, []string{"not a PDF or an image", "text/html; charset=utf-8", `starting "<!DOCTYPE html>`}},
		{"/lying.pdf", true, []string{"not a PDF or an image", "application/pdf", `starting "<html>`}},
		{"/data.json", true, []string{"not a PDF or an image", "application/json"}},
		{"/empty.pdf", true, []string{"is empty"}},
		{"/loop/a", true, []string{"redirect loop"}},
		{"/chain/4", true, []string{"more than 3 redirects"}},
		{"/elsewhere", true, []string{"host localhost is not in", "allowed_hosts"}},
		{"/to-ftp", true, []string{"not an http(s) URL"}},
		{"/busy", false, []string{"HTTP 503"}},
		{"/broken", false, []string{"HTTP 500"}},
	} {
		_, _, err := api.FetchInvoice(t.Context(), h.URL+tc.path)
		var oe *Error
		if !errors.As(err, &oe) || oe.Permanent != tc.permanent {
			t.Errorf("FetchInvoice(%s) = %v, want permanent=%v", tc.path, err, tc.permanent)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(oe.Msg, s) {
				t.Errorf("FetchInvoice(%s) = %q, want it to say %q", tc.path, oe.Msg, s)
			}
		}
		if strings.Contains(oe.Msg, "SIGSECRET") {
			t.Errorf("FetchInvoice(%s) shows the URL's query: %s", tc.path, oe.Msg)
		}
	}
	_, _, err := api.FetchInvoice(t.Context(), h.URL+"/busy")
	var oe *Error
	if errors.As(err, &oe) && oe.RetryAfter != 5*time.Second {
		t.Errorf("503 with Retry-After: 5 → RetryAfter %v", oe.RetryAfter)
	}
	if n := h.hits["/ok.pdf"].Load(); n != 0 {
		t.Errorf("the redirect to a host not allowed was followed (%d hits)", n)
	}
	// A host not allowed is never asked.
	_, _, err = api.FetchInvoice(t.Context(), strings.Replace(h.URL, "127.0.0.1", "localhost", 1)+"/ok.pdf")
	if !errors.As(err, &oe) || !oe.Permanent || !strings.Contains(oe.Msg, "host localhost is not in") || h.hits["/ok.pdf"].Load() != 0 {
		t.Errorf("invoice from a host not allowed = %v (%d hits)", err, h.hits["/ok.pdf"].Load())
	}
	for _, bad := range []string{"ftp://127.0.0.1/x.pdf", "file:///etc/passwd", "//no-scheme/x", "http://%zz"} {
		if _, _, err := api.FetchInvoice(t.Context(), bad); !errors.As(err, &oe) || !oe.Permanent {
			t.Errorf("FetchInvoice(%q) = %v, want permanent", bad, err)
		}
	}
	// Without allowed_hosts any host is fetched from.
	if _, _, err := invoiceAPI(t, 1<<20).FetchInvoice(t.Context(), h.URL+"/elsewhere"); err != nil {
		t.Errorf("without allowed_hosts: %v", err)
	}
}

func TestFetchInvoiceOverMaxSizeIsNotReadWhole(t *testing.T) {
	h := newInvoiceHost(t)
	api := invoiceAPI(t, 1<<20)
	for _, tc := range []struct{ path, says string }{
		{"/stream", "larger than max_size (1048576 bytes); not read further"},
		{"/declared", "is 52428800 bytes, over max_size (1048576 bytes); not downloaded"},
	} {
		_, _, err := api.FetchInvoice(t.Context(), h.URL+tc.path)
		var oe *Error
		if !errors.As(err, &oe) || !oe.Permanent || !strings.Contains(oe.Msg, tc.says) {
			t.Errorf("FetchInvoice(%s) = %v, want permanent saying %q", tc.path, err, tc.says)
		}
		select {
		case n := <-h.written:
			// What the handler could write is what the client read plus the
			// sockets' buffers: far from 50 MiB.
			if n >= 20<<20 {
				t.Errorf("%s: the host wrote %d bytes before the client let go, want it stopped near max_size", tc.path, n)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the host is still writing: the client did not close the body", tc.path)
		}
	}
}

func TestFetchInvoiceTrickleIsBoundedByTimeout(t *testing.T) {
	h := newInvoiceHost(t)
	cfg := digishareConfig(t, "http://digishare.invalid")
	cfg.Timeout = config.Duration(300 * time.Millisecond)
	api := NewDigishareAPI(cfg, "MA", 1)
	start := time.Now()
	_, _, err := api.FetchInvoice(t.Context(), h.URL+"/trickle")
	var oe *Error
	if !errors.As(err, &oe) || oe.Permanent || !strings.Contains(oe.Msg, "timed out") {
		t.Errorf("trickling invoice = %v, want retryable timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("trickling invoice took %v, want bounded by the 300ms timeout", d)
	}
}

func TestPrepareInvoice(t *testing.T) {
	h := newInvoiceHost(t)
	ds := fake.NewServer(t)
	ds.Default = fake.Answer{Code: 201, Body: `{"data":{"id":"media-9"}}`}
	order := func(path string) string {
		return `{"orderId":"77","items":[{"sku":"a","invoiceUrl":"` + h.URL + path + `"}]}`
	}
	api := func(required bool) *DigishareAPI {
		cfg := digishareConfig(t, ds.URL)
		cfg.Ticket.Invoice.Required = required
		cfg.Ticket.Invoice.AllowedHosts = []string{"127.0.0.1"}
		return NewDigishareAPI(cfg, "MA", 1)
	}
	out, _, err := api(true).PrepareInvoice(t.Context(), decodeOrder(t, order("/ok.pdf")))
	if err != nil || out.MediaID != "media-9" || out.Note != "" {
		t.Fatalf("PrepareInvoice = %+v, %v; want media-9", out, err)
	}
	ups := ds.Requests()
	if len(ups) != 1 || ups[0].Path != "/messagesTemplates" || !strings.Contains(string(ups[0].Body), `"file_name":"invoice-77"`) {
		t.Errorf("uploads = %d (%s)", len(ups), ups[0].Body)
	}

	for _, tc := range []struct {
		name, order string
		required    bool
		from        *string
		note        string // "" = an error is expected
		permanent   bool
	}{
		{"no invoice URL in the order", `{"orderId":"77","items":[{"sku":"a"}]}`, true, nil, "no value for {order.items.0.invoiceUrl}", false},
		{"no items", `{"orderId":"77"}`, true, nil, "no value for", false},
		{"no invoice.from", order("/ok.pdf"), true, new(""), "invoice.from is empty", false},
		{"HTML, required", order("/page.html"), true, nil, "", true},
		{"HTML, not required", order("/page.html"), false, nil, "ticket created without its invoice (download failed: invoice at", false},
		{"404, not required", order("/missing"), false, nil, "HTTP 404", false},
		{"503, not required, still retried", order("/busy"), false, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := api(tc.required)
			if tc.from != nil {
				a.cfg.Ticket.Invoice.From = *tc.from
			}
			before := len(ds.Requests())
			out, _, err := a.PrepareInvoice(t.Context(), decodeOrder(t, tc.order))
			var oe *Error
			switch {
			case tc.note != "" && (err != nil || out.MediaID != "" || !strings.Contains(out.Note, tc.note)):
				t.Errorf("PrepareInvoice = %+v, %v; want no media id and a note saying %q", out, err, tc.note)
			case tc.note == "" && (!errors.As(err, &oe) || oe.Permanent != tc.permanent):
				t.Errorf("PrepareInvoice = %+v, %v; want an error, permanent=%v", out, err, tc.permanent)
			}
			if n := len(ds.Requests()) - before; n != 0 {
				t.Errorf("%d uploads for an invoice that was not had", n)
			}
		})
	}

	// An upload Digishare refuses (422) with required: false → no invoice, said why.
	ds.Default = fake.Answer{Code: 422, Body: `{"message":"The given data was invalid.","errors":{"file":["too large"]}}`}
	out, _, err = api(false).PrepareInvoice(t.Context(), decodeOrder(t, order("/ok.pdf")))
	if err != nil || out.MediaID != "" || !strings.Contains(out.Note, "upload failed: HTTP 422") || !strings.Contains(out.Note, "file: too large") {
		t.Errorf("PrepareInvoice with a refused upload = %+v, %v", out, err)
	}
	// …but a 401 is not the invoice's fault: it fails whatever required says.
	ds.Default = fake.Answer{Code: 401, Body: `{"message":"Unauthenticated."}`}
	_, _, err = api(false).PrepareInvoice(t.Context(), decodeOrder(t, order("/ok.pdf")))
	var oe *Error
	if !errors.As(err, &oe) || !oe.Permanent || oe.StatusCode != 401 {
		t.Errorf("PrepareInvoice with a refused token = %v, want the 401", err)
	}
}
