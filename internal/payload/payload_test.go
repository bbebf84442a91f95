package payload

import (
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// sample is Digishare's documented shape, compacted, with some prose.
var sample = []byte(`{"event":"ticket.updated","data":{"id":"hashed_ticket_id","data":{"id":"hashed_ticket_id","external_id":"ORDER-12345",` +
	`"subject":"Order Confirmation","ticket_number":"342106","type_ticket_id":"npvrxamq9l94y8dz","third_id":"hashed_third_id",` +
	`"ticket_status_id":"yqdwrbka7kz69v8e","information":{"third":{"name":"Ahmed Alami","email":"ahmed.alami@example.com",` +
	`"wa_id":"212600000000","ext_ref":"CUSTOMER-67890"},"campaign_data":{"order_id":"12345","invoice_document":{"provider":"digishare",` +
	`"id":"PRE_UPLOADED_HASHED_ID"},"items_count":"5","order_total":"500.00","delivery_address":"Casablanca, Bd Zerktouni",` +
	`"note":"` + strings.Repeat("livraison rapide ", 20) + `"}},"priority_id":2,"tags":["vip"],"created_at":"2025-05-07T10:00:05.000000Z"},` +
	`"wasRecentlyCreated":false,"changes":{"date_demand":"2026-01-13 17:27:00","date_status":"2026-01-13 16:29:51",` +
	`"ticket_status_id":"yqdwrbka7kz69v8e","updated_at":"2026-01-13 16:29:51"}}}`)

// Payloads of any size come back byte for byte from either form, whether
// or not they are compressed, and bodies that would read as a stored form
// are never stored raw.
func TestRoundTrip(t *testing.T) {
	big := make([]byte, 300_000)
	for i := range big {
		big[i] = byte('a' + (i*7+i/1000)%26)
	}
	noise := make([]byte, 5000)
	for i := range noise {
		noise[i] = byte(uint32(i) * 2654435761 >> 24)
	}
	inputs := [][]byte{[]byte(`{}`), sample, big, noise, big[:maxSmall], big[:maxSmall+1], big[:minCompress], big[:minCompress-1],
		append([]byte{0}, sample...), append(append([]byte(nil), zstdMagic...), sample...), {0}, nil}
	for _, compress := range []func([]byte) []byte{Compress, CompressSmall} {
		for _, raw := range inputs {
			stored := compress(raw)
			back, err := Decompress(stored)
			if err != nil || string(back) != string(raw) {
				t.Fatalf("%d bytes: round trip failed (%v)", len(raw), err)
			}
			if len(raw) > 1000 && len(stored) >= len(raw) && &raw[0] != &noise[0] {
				t.Errorf("%d bytes stored as %d: not compressed", len(raw), len(stored))
			}
		}
	}
	if stored := CompressSmall(sample); stored[0] != smallMarker || stored[1] != smallS2Huff {
		t.Errorf("the sample stored as %x…, want the small form", stored[:2])
	}
	if stored := Compress(sample); string(stored[:4]) != string(zstdMagic) {
		t.Errorf("Compress wrote %x…, want zstd (every build reads it)", stored[:4])
	}
	// Payloads stored by earlier builds still read: zstd with the
	// dictionary, zstd without, raw.
	plain, _ := zstd.NewWriter(nil)
	for _, stored := range [][]byte{zenc.EncodeAll(sample, nil), plain.EncodeAll(sample, nil), sample} {
		if back, err := Decompress(stored); err != nil || string(back) != string(sample) {
			t.Errorf("old stored form %x…: %v", stored[:4], err)
		}
	}
	// A damaged small form is an error, never a panic.
	stored := CompressSmall(sample)
	for cut := 2; cut < len(stored); cut += 7 {
		_, _ = Decompress(stored[:cut])
	}
	for _, bad := range [][]byte{{smallMarker, 0x7f, 1, 2}, {smallMarker, smallS2Huff, 0xff, 0xff, 0xff, 0xff, 0x0f}, {smallMarker, smallS2, 0x80}} {
		if _, err := Decompress(bad); err == nil {
			t.Errorf("%x: decoded", bad)
		}
	}
}

// FuzzPayload: every body comes back byte for byte from its stored forms,
// and any stored bytes either decode or are an error, never a panic.
func FuzzPayload(f *testing.F) {
	f.Add(sample)
	f.Add(CompressSmall(sample))
	f.Add([]byte{smallMarker, smallS2, 0x05, 0x10, 'h', 'e', 'l', 'l', 'o'})
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, compress := range []func([]byte) []byte{Compress, CompressSmall} {
			if back, err := Decompress(compress(raw)); err != nil || string(back) != string(raw) {
				t.Fatalf("%d bytes: round trip failed (%v)", len(raw), err)
			}
		}
		_, _ = Decompress(raw)
	})
}

// BenchmarkCompress: a webhook's stored payload in each form, the time to
// make it (in the handler), its size, and the time to read it back.
func BenchmarkCompress(b *testing.B) {
	for _, c := range []struct {
		name     string
		compress func([]byte) []byte
	}{{"zstd", Compress}, {"small", CompressSmall}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var out []byte
			for b.Loop() {
				out = c.compress(sample)
			}
			b.ReportMetric(float64(len(out)), "stored-B")
		})
		b.Run(c.name+"/decompress", func(b *testing.B) {
			stored := c.compress(sample)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decompress(stored); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
