package digishare

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: no input panics or hangs the decoder; every error is one of
// the two documented kinds; a success has what the pipeline relies on; the
// dedup key is deterministic. Seeds: testdata/fuzz/FuzzDecode (real shapes
// and every broken case known), run by every go test.
func FuzzDecode(f *testing.F) {
	if sample, err := os.ReadFile("testdata/ticket_updated.json"); err == nil {
		f.Add(sample)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Decode(raw)
		var se *ShapeError
		switch {
		case err == nil:
			if ev == nil || ev.Name == "" || ev.TicketID == "" {
				t.Fatalf("success without name or ticket id: %+v", ev)
			}
			if ev.Name == EventTicketUpdated {
				if _, _, ok := ev.ChangedAt(); !ok {
					for _, k := range []string{"date_status", "updated_at"} {
						if s, present := ev.ChangeString(k); present && s != "" {
							t.Fatalf("%s %q present but ChangedAt failed", k, s)
						}
					}
				}
			}
		case errors.Is(err, ErrNotJSON):
			if ev != nil {
				t.Fatal("ErrNotJSON with an event")
			}
			if utf8.Valid(raw) && len(bytes.TrimSpace(raw)) > 0 && json.Valid(raw) {
				t.Fatalf("valid JSON reported as not JSON: %v", err)
			}
		case errors.As(err, &se):
			if ev == nil {
				t.Fatal("shape error without the partial event")
			}
		default:
			t.Fatalf("undocumented error %T: %v", err, err)
		}
		agree(t, raw)
		if ev != nil {
			again, _ := Decode(raw)
			if again.DedupKey != ev.DedupKey {
				t.Fatal("dedup key not deterministic")
			}
		}
	})
}

// agree checks that the one-pass fast path, when it vouches for raw,
// decodes it exactly as the precise decoder does; it says whether it did.
func agree(t *testing.T, raw []byte) bool {
	t.Helper()
	fast, ok := fastDecode(raw)
	if !ok {
		return false
	}
	slow, err := slowDecode(raw)
	if err != nil {
		t.Fatalf("fast path accepted what the precise decoder refuses (%v): %s", err, raw)
	}
	if !reflect.DeepEqual(normal(fast), normal(slow)) {
		t.Fatalf("fast and precise decoders disagree on %s:\n fast %+v\n slow %+v", raw, normal(fast), normal(slow))
	}
	return true
}

// normal makes empty and nil maps compare equal.
func normal(ev *Update) Update {
	e := *ev
	if len(e.Changes) == 0 {
		e.Changes = nil
	}
	if len(e.Ticket.Third) == 0 {
		e.Ticket.Third = nil
	}
	if len(e.Ticket.CampaignData) == 0 {
		e.Ticket.CampaignData = nil
	}
	return e
}
