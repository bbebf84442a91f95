// Package payload compresses stored webhook bodies the same way in every
// store backend, so a payload written by one reads back in any other.
package payload

import (
	"bytes"
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// Payloads are stored zstd-compressed. A stored payload that does not start
// with the zstd magic is raw (written before compression, or too small to
// gain), so both read back the same.
//
// Compression uses a raw dictionary: the shape of a Digishare webhook as its
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

// Compress returns raw as stored: zstd with the webhook dictionary, or raw
// itself when it is small or compressed already.
func Compress(raw []byte) []byte {
	if len(raw) < minCompress || bytes.HasPrefix(raw, zstdMagic) {
		return raw
	}
	return zenc.EncodeAll(raw, make([]byte, 0, len(raw)/2))
}

// Decompress returns the body a stored payload holds (a copy: never stored
// itself).
func Decompress(stored []byte) ([]byte, error) {
	if !bytes.HasPrefix(stored, zstdMagic) {
		return append([]byte(nil), stored...), nil
	}
	out, err := zdec.DecodeAll(stored, nil)
	if err != nil {
		return nil, fmt.Errorf("payload: decompress: %w", err)
	}
	return out, nil
}
