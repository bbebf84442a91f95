package backendtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/digishare"
	"github.com/statusbridge/statusbridge/internal/fake"
)

// BenchPayload returns the i-th benchmark webhook: ~1.5 KB as Digishare
// sends, the sample's fields plus 500 characters of text that compresses
// like prose, not like a run of x; each for an order of its own.
func BenchPayload(i int64) []byte {
	return fake.Update{TicketID: fmt.Sprint("t", i), OrderID: fmt.Sprint(i), StatusID: Confirmed,
		DateStatus: "2026-01-13 16:29:51", Campaign: map[string]any{"pad": benchPad}}.Payload()
}

var benchPad = func() string {
	words := strings.Fields("commande livraison adresse casablanca rabat client confirme paiement produit retour " +
		"colis suivi numero rue boulevard quartier appartement etage code postal telephone")
	var pb strings.Builder
	for i := 0; pb.Len() < 500; i++ {
		pb.WriteString(words[(i*7+i/3)%len(words)])
		pb.WriteByte(' ')
	}
	return pb.String()
}()

// BenchIngestAndDeliver measures what a webhook costs a backend from end
// to end, without the HTTP: with 64 concurrent callers, each op ingests one
// webhook (durably), then claims its delivery and records it done
// (RecordAsync) as the delivery worker does; the benchmark waits for the
// last record. Run it with each backend's BenchmarkIngest beside it.
func BenchIngestAndDeliver(b *testing.B, db bridge.Backend) {
	tb := Table(b, "k")
	ctx := context.Background()
	var n atomic.Int64
	var records sync.WaitGroup
	b.SetParallelism(32) // 2 cores × 32 = 64 concurrent callers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			raw := BenchPayload(n.Add(1))
			ev, err := digishare.Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			res, err := bridge.Ingest(ctx, db, bridge.Incoming{Raw: raw, Update: ev, ReceivedAt: time.Now()}, tb)
			if err != nil {
				b.Fatal(err)
			}
			d := res.Deliveries[0]
			if err := db.Claim(ctx, &d, false); err != nil {
				b.Fatal(err)
			}
			records.Add(1)
			now := time.Now()
			err = db.RecordAsync(ctx, d.ID, bridge.AttemptResult{State: bridge.Done, Attempt: &bridge.Attempt{At: now, StatusCode: 200}}, now,
				func(err error) {
					if err != nil {
						b.Error(err)
					}
					records.Done()
				})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	records.Wait()
}
