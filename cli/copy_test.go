package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestCopyProgress: a bar redrawn in place on a terminal, one line per
// bucket otherwise.
func TestCopyProgress(t *testing.T) {
	var tty bytes.Buffer
	p := &copyProgress{w: &tty, tty: true}
	p.update("events", 50, 100)
	p.update("events", 100, 100)
	p.finish()
	if out := tty.String(); !strings.Contains(out, "\r[###############...............]  50%  50/100 records  events") ||
		!strings.Contains(out, "\r[##############################] 100%") || !strings.HasSuffix(out, "\n") {
		t.Errorf("terminal progress: %q", out)
	}
	var plain bytes.Buffer
	p = &copyProgress{w: &plain}
	p.update("events", 40, 100)
	p.update("events", 60, 100)
	p.update("deliveries", 100, 100)
	p.finish()
	if want := "copied events                 60 records (60 of 100 in all)\ncopied deliveries             40 records (100 of 100 in all)\n"; plain.String() != want {
		t.Errorf("plain progress:\n%q\nwant\n%q", plain.String(), want)
	}
}
