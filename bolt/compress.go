package bolt

import "github.com/statusbridge/statusbridge/internal/payload"

// Payloads are stored in internal/payload's small form (statusbridge/5: S2
// with the webhook dictionary and a fixed Huffman table; zstd beyond 16
// KB); every form any build wrote reads back.
func compress(raw []byte) []byte { return payload.CompressSmall(raw) }

func decompress(stored []byte) ([]byte, error) { return payload.Decompress(stored) }
