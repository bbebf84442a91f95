package payload

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/huff0"
)

// trainingWebhooks are made-up webhooks of Digishare's documented shape
// (digishare/testdata/ticket_updated.json), compacted as Digishare sends
// them, with values of every kind varied: the sample huffTable was built
// from. Seeded: the same every time.
func trainingWebhooks(n int) [][]byte {
	rng := rand.New(rand.NewPCG(15, 2026))
	alnum := func(k int) string {
		const a = "abcdefghijklmnopqrstuvwxyz0123456789"
		var b strings.Builder
		for range k {
			b.WriteByte(a[rng.IntN(len(a))])
		}
		return b.String()
	}
	digits := func(k int) string { return fmt.Sprint(rng.Int64N(int64(pow10(k)))) }
	names := []string{"Ahmed Alami", "Fatima Zahra Bennani", "Youssef El Amrani", "Salma Idrissi", "Omar Tazi", "Khadija Berrada"}
	cities := []string{"Casablanca, Bd Zerktouni", "Rabat, Avenue Mohammed V", "Marrakech, Gueliz", "Tanger, Rue de Fes", "Fes, Route d'Imouzzer"}
	notes := []string{"Livraison entre 9h et 18h, appeler avant de passer.", "Laisser au gardien si absent.", "", "Merci de verifier le colis avant paiement.",
		"Client prefere WhatsApp", "Commande urgente"}
	products := []string{"Roasted Makhanas", "Olive oil 1L", "Argan oil 250ml", "Dates Medjool 1kg", "Couscous 5kg", "The vert 500g"}
	when := func() string {
		return fmt.Sprintf("2026-%02d-%02d %02d:%02d:%02d", 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60))
	}
	var out [][]byte
	for range n {
		ticket, order := alnum(16), digits(4+rng.IntN(5))
		var items []map[string]any
		for range 1 + rng.IntN(4) {
			items = append(items, map[string]any{"product_name": products[rng.IntN(len(products))], "product_quantity": 1 + rng.IntN(5),
				"product_price": fmt.Sprintf("%d.00", 10*(1+rng.IntN(50)))})
		}
		pj, _ := json.Marshal(items)
		name := names[rng.IntN(len(names))]
		campaign := map[string]any{"order_id": order, "invoice_document": map[string]any{"provider": "digishare", "id": alnum(22)},
			"items_count": fmt.Sprint(1 + rng.IntN(9)), "order_total": fmt.Sprintf("%d.%02d", rng.IntN(3000), rng.IntN(100)),
			"delivery_address": cities[rng.IntN(len(cities))], "products": string(pj)}
		if note := notes[rng.IntN(len(notes))]; note != "" {
			campaign["note"] = note
		}
		at := when()
		body := map[string]any{"event": "ticket.updated", "data": map[string]any{
			"id": ticket,
			"data": map[string]any{"id": ticket, "external_id": "ORDER-" + order, "subject": "Order Confirmation", "ticket_number": digits(6),
				"type_ticket_id": alnum(16), "third_id": alnum(16), "ticket_status_id": alnum(16), "priority_id": 1 + rng.IntN(3),
				"channel_id": "wa", "tags": []string{"vip"}, "lang": "fr", "created_at": "2025-05-07T10:00:05.000000Z",
				"information": map[string]any{"third": map[string]any{"name": name,
					"email": strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.com", "wa_id": "2126" + digits(8),
					"ext_ref": "CUSTOMER-" + digits(5)}, "campaign_data": campaign}},
			"wasRecentlyCreated": false,
			"changes":            map[string]any{"date_demand": when(), "date_status": at, "ticket_status_id": alnum(16), "updated_at": at}}}
		raw, _ := json.Marshal(body)
		out = append(out, raw)
	}
	return out
}

func pow10(k int) int {
	n := 1
	for range k {
		n *= 10
	}
	return n
}

// TestHuffTable checks the static Huffman table against the training
// sample; STATUSBRIDGE_HUFF_TABLE=1 prints a table built from it (every
// byte value given a code, so any block can be coded). The table in the
// code must never change once payloads are stored with it: a new one needs
// a new codec byte.
func TestHuffTable(t *testing.T) {
	var count [256]uint32
	samples := trainingWebhooks(2000)
	for _, raw := range samples {
		for _, b := range s2Dict.Encode(nil, raw) {
			count[b]++
		}
	}
	if os.Getenv("STATUSBRIDGE_HUFF_TABLE") != "" {
		for i := range count {
			count[i] = count[i]/64 + 1
		}
		var s huff0.Scratch
		if err := s.BuildCTable(&count); err != nil {
			t.Fatal(err)
		}
		tbl, err := s.AppendTable(nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("huffTable (%d bytes):\n%s", len(tbl), hex.EncodeToString(tbl))
	}
	var total, raw int
	for _, p := range samples {
		stored := CompressSmall(p)
		if stored[0] != smallMarker || stored[1] != smallS2Huff {
			t.Fatalf("a training webhook stored as %x…, want the static Huffman form", stored[:2])
		}
		if back, err := Decompress(stored); err != nil || !bytes.Equal(back, p) {
			t.Fatalf("round trip: %v", err)
		}
		total += len(stored)
		raw += len(p)
	}
	t.Logf("training sample: %d webhooks, %d bytes on average, stored in %d", len(samples), raw/len(samples), total/len(samples))
}
