package floor

import (
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	for _, wal := range []bool{false, true} {
		r, err := Run(t.TempDir(), wal, 200, 250*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Acks) != 50 || r.Rate != 200 {
			t.Fatalf("wal %v: %d acks at %d/s, want 50 at 200/s", wal, len(r.Acks), r.Rate)
		}
		for i, a := range r.Acks {
			if a <= 0 {
				t.Fatalf("wal %v: ack %d took %v", wal, i, a)
			}
		}
		if r.P99ms() <= 0 || !strings.HasPrefix(r.String(), map[bool]string{false: "bbolt", true: "wal"}[wal]) {
			t.Errorf("wal %v: p99 %v, %q", wal, r.P99ms(), r.String())
		}
		if wal && len(r.Bolt) == 0 {
			t.Error("wal: bbolt was never updated behind the log")
		}
	}
	if _, err := Run(t.TempDir(), false, 0, time.Second); err == nil {
		t.Error("rate 0: no error")
	}
}
