package orders

import (
	"errors"
	"testing"
)

// FuzzDecode: no body panics Decode; an error is either ErrNotJSON (400) or
// an *InvalidError (422); an accepted order has an id, and its canonical form
// decodes to the same id and content key. Seeds: testdata/fuzz/FuzzDecode
// and the order of the fact sheet.
func FuzzDecode(f *testing.F) {
	f.Add(seedOrder(f))
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := Decode(raw)
		if err != nil {
			var ie *InvalidError
			isInvalid := errors.As(err, &ie)
			if errors.Is(err, ErrNotJSON) == isInvalid {
				t.Fatalf("Decode(%q) = %v: want exactly one of ErrNotJSON and *InvalidError", raw, err)
			}
			if isInvalid && ie.Reason == "" {
				t.Fatalf("InvalidError without a reason for %q", raw)
			}
			return
		}
		if o.ID == "" {
			t.Fatalf("Decode(%q) accepted an empty id", raw)
		}
		c, err := Canonical(raw)
		if err != nil {
			t.Fatalf("Canonical of an accepted body: %v", err)
		}
		o2, err := Decode(c)
		if err != nil {
			t.Fatalf("Decode(canonical %q) = %v", c, err)
		}
		if o2.ID != o.ID || o2.Key != o.Key || o2.IDOnly != o.IDOnly {
			t.Fatalf("canonical form %q decodes to another order (%q, %v) than %q (%q, %v)", c, o2.ID, o2.IDOnly, raw, o.ID, o.IDOnly)
		}
		_, _ = o.ItemsCount()
		_, _ = o.WhatsAppID("MA")
		_, _ = o.Date(nil)
		_ = o.Email()
	})
}
