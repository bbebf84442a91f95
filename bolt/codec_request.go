package bolt

import (
	"slices"

	"github.com/statusbridge/statusbridge/bridge"
)

// redacted is what a secret is replaced with in a stored request.
const redacted = "[redacted]"

// encodeSentRequest writes 0 for none, else 1 + the number of headers, then
// the method, URL, headers (name, value; sorted by name), body and the whole
// body's size when it was cut (0 otherwise). Common methods, header names
// and values are interned, so an ExpertSender request costs ~100 bytes.
func encodeSentRequest(e *encoder, r *bridge.SentRequest) {
	if r == nil {
		e.uint(0)
		return
	}
	names := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	e.uint(uint64(len(names)) + 1)
	e.str(r.Method)
	e.str(r.URL)
	for _, k := range names {
		e.str(k)
		e.str(r.Headers[k])
	}
	e.str(r.Body)
	e.uint(uint64(max(r.BodySize, 0)))
}

func decodeSentRequest(d *decoder) *bridge.SentRequest {
	n := d.uint()
	if n == 0 || d.err != nil {
		return nil
	}
	if n-1 > uint64(len(d.b)) {
		d.fail("header count")
		return nil
	}
	r := &bridge.SentRequest{Method: d.str(), URL: d.str()}
	if n > 1 {
		r.Headers = make(map[string]string, n-1)
		for range n - 1 {
			k := d.str()
			r.Headers[k] = d.str()
		}
	}
	r.Body = d.str()
	r.BodySize = int(min(d.uint(), 1<<40))
	return r
}
