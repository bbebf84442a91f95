// Package payload compresses stored webhook bodies the same way in every
// store backend, so a payload written by one reads back in any other.
package payload

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Payloads are stored compressed: in the small form below (CompressSmall;
// bbolt's statusbridge/5) or as zstd frames (Compress). A stored payload that starts with neither is raw
// (written before compression, or too small to gain), so all read back the
// same.
//
// Both forms use a raw dictionary: the shape of a Digishare webhook as its
// fact sheet documents it (field names, fixed values, timestamp formats),
// with no customer's values. One webhook alone is too short for zstd to
// learn its own field names; with them given, a 1.3 KB update shrinks to
// ~460 bytes instead of ~790. The frame names the dictionary by id, so
// payloads written without it (id 0) still decode.
//
// Never edit payloadDict: stored payloads need it byte for byte. A better
// dictionary gets a new id, and the decoder keeps every old one.
var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	// A 64 KB window and the low-memory mode keep each encoder at ~0.75 MB
	// instead of ~5 MB (its history is sized from the window); webhooks are
	// a few KB, so they compress exactly as well. One encoder per core (up
	// to 4): EncodeAll waits for a free one, and webhooks compress in their
	// handlers, in parallel.
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(min(runtime.GOMAXPROCS(0), 4)),
		zstd.WithEncoderDictRaw(payloadDictID, []byte(payloadDict)),
		zstd.WithWindowSize(1<<16), zstd.WithLowerEncoderMem(true))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderDictRaw(payloadDictID, []byte(payloadDict)))
)

const payloadDictID = 1

const payloadDict = `{"event":"ticket.created"}{"event":"third.updated"}` +
	`"products":"[{\"product_name\":\"\",\"product_description\":\"\",\"product_sku\":\"\",\"product_quantity\":1,\"product_price\":\"0.00\"}]"` +
	`{"event":"ticket.updated","data":{"id":"","data":{"id":"","external_id":"ORDER-","subject":"Order Confirmation",` +
	`"ticket_number":"","type_ticket_id":"","third_id":"","ticket_status_id":"","priority_id":1,"channel_id":"","comment":null,` +
	`"tags":[],"company_id":"","source_id":"","conversation_id":"","handler_id":"","category":null,"closed_at":null,` +
	`"date_status":"2026-01-01 00:00:00","lang":"fr","created_at":"2026-01-01T00:00:00.000000Z",` +
	`"updated_at":"2026-01-01T00:00:00.000000Z","archived_at":null,` +
	`"information":{"third":{"name":"","email":"@gmail.com","wa_id":"212","mobile":"+212","ext_ref":"CUSTOMER-"},` +
	`"campaign_data":{"order_id":"","invoice_document":{"provider":"digishare","id":""},"items_count":"1","order_total":"0.00",` +
	`"products":"[{\"product_name\":\"\",\"product_quantity\":1,\"product_price\":\"0.00\"}]"}}},` +
	`"wasRecentlyCreated":false,"changes":{"date_demand":"2026-01-01 00:00:00","date_status":"2026-01-01 00:00:00",` +
	`"ticket_status_id":"","updated_at":"2026-01-01 00:00:00"}}}`

// minCompress: smaller payloads are stored raw.
const minCompress = 256

// Payloads of up to maxSmall bytes (every webhook Digishare documents is a
// few KB) are stored by CompressSmall in the small form: a zero byte (no
// stored JSON starts with one: bodies with NUL bytes are refused), a codec
// byte, then
//
//	smallS2Huff: the uvarint length of an S2 block, then that block
//	             Huffman-coded with huffTable (huff0, one stream);
//	smallS2:     the S2 block itself (when Huffman coding does not help).
//
// The S2 block is LZ-coded against s2Dict, the same documented shape as
// the zstd dictionary, and huffTable is a fixed Huffman table for such
// blocks (built from made-up webhooks of that shape, every byte value given
// a code: TestHuffTable), so no payload carries a table of its own. zstd
// with a dictionary reset a 256 KB match table for every payload (half of
// its ~25 µs per webhook); S2 reads its dictionary's table and clears a
// 64 KB one of its own, and the fixed table saves zstd's per-payload
// tables. Larger payloads still go to zstd, whose per-call cost is small
// beside them.
//
// Never change s2Dict, huffTable or the codec bytes' meaning: stored
// payloads need them as they are. A better scheme gets a new codec byte.
const (
	maxSmall    = 16 << 10
	smallMarker = 0x00
	smallS2Huff = 0x01
	smallS2     = 0x02
)

// s2Dict is payloadDict as an S2 dictionary, its repeat offset fixed at 0
// (MakeDict would choose one, and could choose differently some day).
var s2Dict = s2.NewDict(append([]byte{0}, payloadDict...))

// huffTable is the Huffman table of smallS2Huff, as zstd writes one (RFC
// 8878 §4.2.1).
const huffTable = "4c1080456305fcd4ffffff7f3e2230fdffa95f4d9072734ab42e105340013370852aa408d2c0dac48aa2fa743f0ea740a6d8796ecd20833c5c21a524a9e51af3cb4af630896524c068a852d50e"

var (
	// huffCoder holds huffTable for encoding (copied into each call's
	// scratch) and huffDecoder decodes with it (safe for concurrent use).
	huffCoder, huffDecoder = func() (*huff0.Scratch, *huff0.Decoder) {
		tbl, err := hex.DecodeString(huffTable)
		if err != nil {
			panic(err)
		}
		s, rest, err := huff0.ReadTable(tbl, nil)
		if err != nil || len(rest) != 0 {
			panic(fmt.Sprintf("huffTable: %v (%d bytes left)", err, len(rest)))
		}
		return s, s.Decoder()
	}()
	// huffScratch holds huff0's per-call state (not safe for concurrent use).
	huffScratch = sync.Pool{New: func() any {
		s := new(huff0.Scratch)
		s.TransferCTable(huffCoder)
		s.Reuse = huff0.ReusePolicyMust
		return s
	}}
)

// blockBufs holds buffers for S2 blocks of up to maxSmall bytes.
var blockBufs = sync.Pool{New: func() any { b := make([]byte, s2.MaxEncodedLen(maxSmall)); return &b }}

// Compress returns raw as stored: zstd with the webhook dictionary, or raw
// itself when it is small. Every build reads it.
func Compress(raw []byte) []byte {
	if len(raw) < minCompress && !readsAsStored(raw) {
		return raw
	}
	return zenc.EncodeAll(raw, make([]byte, 0, len(raw)/2))
}

// readsAsStored reports whether raw, stored as it is, would read as a
// stored form (no JSON body starts so: those are never stored raw).
func readsAsStored(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == smallMarker || bytes.HasPrefix(raw, zstdMagic))
}

// CompressSmall returns raw as stored in the small form (up to maxSmall
// bytes; zstd beyond, raw when small), at a fifth of zstd's CPU. Only
// builds that know the form read it (Decompress since bbolt's
// statusbridge/5): a store writes it only under a format version its older
// builds refuse.
func CompressSmall(raw []byte) []byte {
	switch {
	case readsAsStored(raw):
		return zenc.EncodeAll(raw, make([]byte, 0, len(raw)/2))
	case len(raw) < minCompress:
		return raw
	case len(raw) > maxSmall:
		return zenc.EncodeAll(raw, make([]byte, 0, len(raw)/2))
	}
	bp := blockBufs.Get().(*[]byte)
	defer blockBufs.Put(bp)
	block := s2Dict.Encode(*bp, raw)
	s := huffScratch.Get().(*huff0.Scratch)
	defer huffScratch.Put(s)
	if coded, reused, err := huff0.Compress1X(block, s); err == nil && reused && len(coded)+binary.MaxVarintLen32 < len(block) {
		out := make([]byte, 0, 2+binary.MaxVarintLen32+len(coded))
		out = append(out, smallMarker, smallS2Huff)
		out = binary.AppendUvarint(out, uint64(len(block)))
		return append(out, coded...)
	}
	out := make([]byte, 0, 2+len(block))
	return append(append(out, smallMarker, smallS2), block...)
}

// Decompress returns the body a stored payload holds, whichever form it is
// in (a copy: never stored itself).
func Decompress(stored []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(stored, zstdMagic):
		out, err := zdec.DecodeAll(stored, nil)
		if err != nil {
			return nil, fmt.Errorf("payload: decompress: %w", err)
		}
		return out, nil
	case len(stored) >= 2 && stored[0] == smallMarker:
		out, err := decodeSmall(stored[1], stored[2:])
		if err != nil {
			return nil, fmt.Errorf("payload: decompress: %w", err)
		}
		return out, nil
	}
	return append([]byte(nil), stored...), nil
}

func decodeSmall(codec byte, in []byte) ([]byte, error) {
	switch codec {
	case smallS2:
		return s2Dict.Decode(nil, in)
	case smallS2Huff:
		n, k := binary.Uvarint(in)
		if k <= 0 || n > uint64(s2.MaxEncodedLen(maxSmall)) {
			return nil, errors.New("bad block length")
		}
		bp := blockBufs.Get().(*[]byte)
		defer blockBufs.Put(bp)
		block, err := huffDecoder.Decompress1X((*bp)[:0:n], in[k:])
		if err != nil {
			return nil, err
		}
		if len(block) != int(n) {
			return nil, errors.New("bad block length")
		}
		return s2Dict.Decode(nil, block) // copies out of the pooled buffer
	}
	return nil, fmt.Errorf("unknown codec %#x", codec)
}
