package digishare

import (
	"os"
	"testing"
)

func BenchmarkDecode(b *testing.B) {
	raw, err := os.ReadFile("testdata/ticket_updated.json")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
