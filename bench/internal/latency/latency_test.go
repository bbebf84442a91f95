package latency

import (
	"testing"
	"time"
)

func TestMs(t *testing.T) {
	if got := Ms(nil, 0.99); got != 0 {
		t.Errorf("no samples: %v, want 0", got)
	}
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // 100 ms … 1 ms, unsorted
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct{ p, want float64 }{{0, 1}, {0.5, 51}, {0.99, 100}, {1, 100}} {
		if got := Ms(ds, c.p); got != c.want {
			t.Errorf("p%v: %v ms, want %v", c.p, got, c.want)
		}
	}
}
