package receiver

import (
	"bytes"
	"strings"
	"testing"
)

// TestReadBody: the declared length sizes the buffer (one allocation for an
// honest Content-Length), and a body longer or shorter than declared, or of
// unknown length, is still read whole.
func TestReadBody(t *testing.T) {
	body := []byte(strings.Repeat("x", 1500))
	for _, declared := range []int64{1500, -1, 10, 4000} {
		got, err := readBody(bytes.NewReader(body), declared)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("declared %d: %d bytes, %v", declared, len(got), err)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = readBody(bytes.NewReader(body), int64(len(body)))
	})
	if allocs > 2 { // the buffer, and the bytes.Reader
		t.Errorf("%.0f allocations for a body of its declared length, want the buffer's one", allocs)
	}
}
