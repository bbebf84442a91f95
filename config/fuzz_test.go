package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse: no YAML panics the loader; it returns a config or a *Error
// whose problems all have a message. Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../config.example.yaml"); err == nil {
		f.Add(example)
	}
	env := func(k string) (string, bool) {
		if k == "SET" {
			return "value#with:chars", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, env)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) == 0 {
			t.Fatalf("error %T %v, want *Error with problems", err, err)
		}
		for _, p := range ce.Problems {
			if p.Message == "" {
				t.Fatalf("problem without message: %+v", p)
			}
		}
	})
}
