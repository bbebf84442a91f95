package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxInvoiceRedirects is how many redirects an invoice download follows.
const maxInvoiceRedirects = 3

// invoiceRedirectError is a redirect the invoice download refused: a loop,
// one too many, or to a host or scheme it may not fetch from.
type invoiceRedirectError struct{ msg string }

func (e *invoiceRedirectError) Error() string { return e.msg }

// newInvoiceClient returns the client invoices are downloaded with: the
// whole download (redirects and body) bounded by timeout, at most
// maxInvoiceRedirects redirects, each hop checked against allowed (host
// names; empty = any host) and http(s).
func newInvoiceClient(timeout time.Duration, allowed []string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	hosts := allowedHosts(allowed)
	return &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			for _, v := range via {
				if v.URL.String() == req.URL.String() {
					return &invoiceRedirectError{fmt.Sprintf("redirect loop: %s redirects back to %s", safeURL(via[len(via)-1].URL), safeURL(req.URL))}
				}
			}
			if len(via) > maxInvoiceRedirects {
				return &invoiceRedirectError{fmt.Sprintf("more than %d redirects (the next to %s)", maxInvoiceRedirects, safeURL(req.URL))}
			}
			if err := checkInvoiceURL(req.URL, hosts); err != nil {
				return &invoiceRedirectError{"redirect refused: " + err.Error()}
			}
			return nil
		},
	}
}

func allowedHosts(list []string) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	m := make(map[string]bool, len(list))
	for _, h := range list {
		m[strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))] = true
	}
	return m
}

// checkInvoiceURL refuses a URL that is not http(s) or whose host is not
// allowed (hosts nil = any host).
func checkInvoiceURL(u *url.URL, hosts map[string]bool) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s is not an http(s) URL", safeURL(u))
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" {
		return fmt.Errorf("%s has no host", safeURL(u))
	}
	if hosts != nil && !hosts[host] {
		return fmt.Errorf("host %s is not in targets.digishare.ticket.invoice.allowed_hosts", host)
	}
	return nil
}

// safeURL shows a URL without its query, fragment or user info (signed
// invoice URLs carry their credentials in the query).
func safeURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	s := c.String()
	if u.RawQuery != "" {
		s += "?…"
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// FetchInvoice downloads an invoice: within the target's timeout (the
// redirects and the whole body included), at most invoice.max_size bytes
// (never read past it), following at most 3 redirects, from allowed hosts
// only (every hop), and only a PDF or an image (by magic bytes, else by
// Content-Type unless the body is HTML).
//
// Errors: permanent for what cannot be had — 404 or another 4xx, a body
// that is not a PDF or an image, over max_size, a redirect loop or too many,
// a host not allowed — saying what arrived; retryable for a 5xx, 408 or 429
// (honouring Retry-After), a timeout or a broken connection. The Response
// describes what the invoice host answered (never the document itself).
func (d *DigishareAPI) FetchInvoice(ctx context.Context, rawURL string) (*Invoice, Response, error) {
	limit := int64(d.cfg.Ticket.Invoice.MaxSize)
	if limit <= 0 {
		limit = 10 << 20
	}
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return nil, Response{}, &Error{Permanent: true, Msg: "invoice URL cannot be parsed"}
	}
	if err := checkInvoiceURL(u, allowedHosts(d.cfg.Ticket.Invoice.AllowedHosts)); err != nil {
		return nil, Response{}, &Error{Permanent: true, Msg: "invoice not downloaded: " + err.Error()}
	}
	where := safeURL(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, Response{}, &Error{Permanent: true, Msg: "invoice URL " + where + " cannot be requested"}
	}
	req.Header.Set("Accept", "application/pdf, image/*;q=0.9, */*;q=0.1")
	req.Header.Set("User-Agent", "statusbridge")
	resp, err := d.invoices.Do(req)
	if err != nil {
		var re *invoiceRedirectError
		if errors.As(err, &re) {
			return nil, Response{}, &Error{Permanent: true, Msg: "invoice not downloaded from " + where + ": " + re.msg}
		}
		return nil, Response{}, &Error{Msg: "invoice download from " + where + ": " + invoiceTransport(err, d.cfg.Timeout.D())}
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	code := resp.StatusCode
	if code < 200 || code >= 300 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		what := arrived(ct, head, resp.ContentLength)
		r := Response{StatusCode: code, Excerpt: what}
		msg := fmt.Sprintf("invoice host answered HTTP %d for %s (%s)", code, where, what)
		if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 {
			return nil, r, &Error{StatusCode: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), Msg: msg}
		}
		return nil, r, &Error{Permanent: true, StatusCode: code, Msg: msg}
	}
	if resp.ContentLength > limit {
		r := Response{StatusCode: code, Excerpt: arrived(ct, nil, resp.ContentLength)}
		return nil, r, &Error{Permanent: true, StatusCode: code,
			Msg: fmt.Sprintf("invoice at %s is %d bytes, over max_size (%d bytes); not downloaded", where, resp.ContentLength, limit)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		r := Response{StatusCode: code, Excerpt: arrived(ct, nil, int64(len(data)))}
		return nil, r, &Error{StatusCode: code, Msg: fmt.Sprintf("invoice download from %s: %s after %d bytes", where, invoiceTransport(err, d.cfg.Timeout.D()), len(data))}
	}
	if int64(len(data)) > limit {
		r := Response{StatusCode: code, Excerpt: arrived(ct, nil, -1)}
		return nil, r, &Error{Permanent: true, StatusCode: code,
			Msg: fmt.Sprintf("invoice at %s is larger than max_size (%d bytes); not read further", where, limit)}
	}
	r := Response{StatusCode: code, Excerpt: arrived(ct, data, int64(len(data)))}
	if len(data) == 0 {
		return nil, r, &Error{Permanent: true, StatusCode: code, Msg: "invoice at " + where + " is empty (" + r.Excerpt + ")"}
	}
	mt, ext, ok := invoiceType(ct, data)
	if !ok {
		return nil, r, &Error{Permanent: true, StatusCode: code, Msg: "invoice at " + where + " is not a PDF or an image: " + r.Excerpt + " arrived"}
	}
	return &Invoice{Data: data, MIME: mt, Extension: ext}, r, nil
}

// invoiceTransport describes a failed download without its URL (which may
// carry credentials in its query).
func invoiceTransport(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("timed out (timeout %s)", timeout)
	}
	return "connection failed: " + err.Error()
}

// invoiceType names a document by its magic bytes, else by its
// Content-Type (application/pdf or image/*) unless the body is HTML.
func invoiceType(contentType string, data []byte) (mimeType, ext string, ok bool) {
	switch {
	case bytes.HasPrefix(data, []byte("%PDF-")):
		return "application/pdf", "pdf", true
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png", "png", true
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return "image/jpeg", "jpg", true
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "image/gif", "gif", true
	case len(data) >= 12 && bytes.Equal(data[:4], []byte("RIFF")) && bytes.Equal(data[8:12], []byte("WEBP")):
		return "image/webp", "webp", true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", "", false
	}
	if strings.HasPrefix(http.DetectContentType(data), "text/html") {
		return "", "", false
	}
	switch {
	case mt == "application/pdf":
		return mt, "pdf", true
	case strings.HasPrefix(mt, "image/") && len(mt) > len("image/"):
		sub := strings.TrimPrefix(mt, "image/")
		sub, _, _ = strings.Cut(sub, "+") // svg+xml → svg
		sub = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return -1
		}, sub)
		if sub == "jpeg" {
			sub = "jpg"
		}
		if sub == "" {
			return "", "", false
		}
		return mt, sub, true
	}
	return "", "", false
}

// arrived describes a body for messages: its Content-Type (or what it looks
// like), its size and how it starts, printable characters only.
func arrived(contentType string, head []byte, size int64) string {
	ct := contentType
	if ct == "" && len(head) > 0 {
		ct = "no Content-Type, looks like " + http.DetectContentType(head)
	} else if ct == "" {
		ct = "no Content-Type"
	}
	var b strings.Builder
	b.WriteString(ct)
	switch {
	case size >= 0:
		b.WriteString(", " + strconv.FormatInt(size, 10) + " bytes")
	default:
		b.WriteString(", size unknown")
	}
	if len(head) > 0 {
		n := min(len(head), 40)
		start := strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || r == '\uFFFD' {
				return '.'
			}
			return r
		}, strings.ToValidUTF8(string(head[:n]), "."))
		b.WriteString(", starting " + strconv.Quote(start))
	}
	return b.String()
}
