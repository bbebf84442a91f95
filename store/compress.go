package store

import (
	"bytes"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Payloads are stored zstd-compressed (webhook JSON shrinks about 3×). A
// stored payload that does not start with the zstd magic is raw (written
// before compression, or too small to gain), so both read back the same.
var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	zenc, _   = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zdec, _   = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
)

// minCompress: smaller payloads are stored raw.
const minCompress = 256

func compress(raw []byte) []byte {
	if len(raw) < minCompress || bytes.HasPrefix(raw, zstdMagic) {
		return raw
	}
	return zenc.EncodeAll(raw, make([]byte, 0, len(raw)/2))
}

func decompress(stored []byte) ([]byte, error) {
	if !bytes.HasPrefix(stored, zstdMagic) {
		return append([]byte(nil), stored...), nil
	}
	out, err := zdec.DecodeAll(stored, nil)
	if err != nil {
		return nil, fmt.Errorf("store: decompress payload: %w", err)
	}
	return out, nil
}
