package bolt

import "github.com/statusbridge/statusbridge/internal/payload"

// Payloads are stored as internal/payload writes them (zstd with the webhook
// dictionary), the same in every backend.
func compress(raw []byte) []byte { return payload.Compress(raw) }

func decompress(stored []byte) ([]byte, error) { return payload.Decompress(stored) }
