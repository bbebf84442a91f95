// Package outbound owns the world outside: one client per downstream system,
// the classification of answers into done / retry / permanent failure, the
// backoff policy, and the delivery worker that sends queued deliveries,
// outside any transaction, and records each attempt.
package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/statusbridge/statusbridge/bridge"
)

// MaxRetryAfter caps a downstream's Retry-After.
const MaxRetryAfter = time.Hour

// excerptLimit bounds the response body kept with an attempt.
const excerptLimit = 512

// Error is a failed send. Permanent failures end the delivery dead at once;
// others are retried with backoff, waiting at least RetryAfter.
type Error struct {
	Permanent  bool
	StatusCode int           // 0: no HTTP answer (network error, timeout)
	RetryAfter time.Duration // from the Retry-After header, capped at MaxRetryAfter
	Msg        string
}

func (e *Error) Error() string { return e.Msg }

// Response is what a send got back, kept with the attempt.
type Response struct {
	StatusCode int
	Excerpt    string
	// Request is the (last) request sent, secrets redacted; nil when none
	// went out.
	Request *bridge.SentRequest
	// Result names a success that sent nothing new (already_active,
	// already_triggered), or says what it made (a ticket); empty for an
	// ordinary success.
	Result string
	// Done, on a success, is what it made, recorded with the attempt in the
	// same transaction (a ticket, a fetched order: see bridge.RecordWith).
	Done *bridge.Outcome
}

// newHTTPClient returns a client that does not follow redirects (a 3xx is a
// permanent failure: the configured URL is wrong) and keeps enough idle
// connections for the worker's parallelism.
func newHTTPClient(timeout time.Duration, conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(conns, 2)
	tr.MaxIdleConns = max(conns*2, 100)
	return &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// call is one HTTP request with a JSON body. failKey, when set, is a property
// whose presence in a 2xx (or other non-retryable) JSON body means failure.
type call struct {
	client  *http.Client
	method  string
	url     string
	headers map[string]string
	body    any    // encoded as JSON
	rawBody []byte // already-encoded JSON (used when body is nil)
	failKey string
	secrets []string // redacted (by value) from the stored request, excerpts and messages
	// secretHeaders names headers (besides secretHeaderNames) whose values
	// are secrets: redacted from the stored request by name.
	secretHeaders []string
}

// secretHeaderNames are the headers that carry credentials: a stored
// request never shows their values.
var secretHeaderNames = map[string]bool{"authorization": true, "x-api-key": true, "x-ev-store-hash": true, "x-ev-customer-hash": true}

// redactedValue replaces a secret header's value in a stored request.
const redactedValue = "[redacted]"

// redaction is what every client of a deployment redacts besides its own
// credentials: all the configured secrets (Build sets it).
type redaction struct {
	values  []string
	headers []string
}

// redactor is implemented by the clients Build hands the deployment's
// secrets to.
type redactor interface{ setRedaction(redaction) }

// sentRequest is the request as it goes out, for the attempt's record:
// secret headers redacted by name, every secret redacted by value (URL,
// header values and body), the body cut at bridge.SentRequestBodyLimit.
func (c call) sentRequest(req *http.Request, body []byte) *bridge.SentRequest {
	r := &bridge.SentRequest{Method: req.Method, URL: c.redact(req.URL.String()), Headers: make(map[string]string, len(req.Header))}
	for k, vs := range req.Header {
		v := strings.Join(vs, ", ")
		if secretHeaderNames[strings.ToLower(k)] || credentialName(k) ||
			slices.ContainsFunc(c.secretHeaders, func(h string) bool { return strings.EqualFold(h, k) }) {
			v = redactedValue
		} else {
			v = c.redact(v)
		}
		r.Headers[k] = v
	}
	b := c.redact(strings.ToValidUTF8(string(body), "\uFFFD"))
	if len(b) > bridge.SentRequestBodyLimit {
		r.BodySize = len(body)
		b = b[:bridge.SentRequestBodyLimit]
		for len(b) > 0 && !utf8.ValidString(b) {
			b = b[:len(b)-1]
		}
	}
	r.Body = b
	return r
}

// do sends the request and classifies the answer: a nil error means success.
func (c call) do(ctx context.Context) (Response, error) {
	r, _, err := c.doBody(ctx)
	return r, err
}

// doBody is do that also returns the response body (up to 64 KiB).
func (c call) doBody(ctx context.Context) (Response, []byte, error) {
	raw := c.rawBody
	if c.body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(c.body); err != nil {
			return Response{}, nil, &Error{Permanent: true, Msg: "encode request: " + err.Error()}
		}
		raw = bytes.TrimRight(buf.Bytes(), "\n")
	}
	var body io.Reader
	if raw != nil {
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		return Response{}, nil, &Error{Permanent: true, Msg: c.redact("build request: " + err.Error())}
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "statusbridge")
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	sent := c.sentRequest(req, raw)
	resp, err := c.client.Do(req)
	if err != nil {
		return Response{Request: sent}, nil, &Error{Msg: c.redact(transportMessage(err))}
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	r := Response{StatusCode: resp.StatusCode, Excerpt: c.redact(excerpt(respBody)), Request: sent}
	err = classify(resp, respBody, c.failKey, r.Excerpt)
	var oe *Error
	if errors.As(err, &oe) {
		oe.Msg = c.redact(oe.Msg)
	}
	return r, respBody, err
}

// classify turns an HTTP answer into nil (success) or an *Error.
// 408, 429 and 5xx are retried (honouring Retry-After); 3xx and other 4xx are
// permanent; a failKey property in the body is a permanent failure unless the
// status is itself retryable.
func classify(resp *http.Response, body []byte, failKey, excerpt string) error {
	code := resp.StatusCode
	retryable := code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
	switch {
	case retryable:
		return &Error{StatusCode: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
			Msg: fmt.Sprintf("HTTP %d: %s", code, excerpt)}
	case code >= 300 && code < 400:
		return &Error{Permanent: true, StatusCode: code,
			Msg: fmt.Sprintf("HTTP %d redirect to %q not followed", code, resp.Header.Get("Location"))}
	case code >= 400:
		return &Error{Permanent: true, StatusCode: code, Msg: fmt.Sprintf("HTTP %d: %s", code, excerpt)}
	case code < 200:
		return &Error{StatusCode: code, Msg: fmt.Sprintf("unexpected HTTP %d", code)}
	}
	if failKey != "" {
		if val, ok := bodyKey(body, failKey); ok {
			msg := fmt.Sprintf("HTTP %d with %q in the body", code, failKey)
			if val != "" {
				msg += ": " + val
			}
			if reason, ok := bodyKey(body, "reason"); ok && reason != "" {
				msg += " (reason: " + reason + ")"
			}
			return &Error{Permanent: true, StatusCode: code, Msg: msg}
		}
	}
	return nil
}

// bodyKey reports whether body is a JSON object with the given property, and
// its value as short text (a string's value, else its JSON).
func bodyKey(body []byte, key string) (string, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return "", false
	}
	raw, ok := m[key]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = excerpt(raw)
	}
	return s, true
}

// retryAfter reads a Retry-After header (seconds or HTTP date).
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

func transportMessage(err error) string {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout: " + err.Error()
	}
	return "network: " + err.Error()
}

func excerpt(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > excerptLimit {
		b = b[:excerptLimit]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
		return string(b) + "…"
	}
	return strings.ToValidUTF8(string(b), "�")
}

func (c call) redact(s string) string {
	for _, sec := range c.secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "***")
		}
	}
	return s
}
