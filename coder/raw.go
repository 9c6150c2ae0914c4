package coder

import (
	"context"
	"fmt"
)

// Raw stores bytes as they are. It is always registered and is the fallback
// that bounds every block at raw size plus header.
type Raw struct{}

// ID implements Codec.
func (Raw) ID() ID { return IDRaw }

// Name implements Codec.
func (Raw) Name() string { return "raw" }

// Model implements Codec.
func (Raw) Model() (ModelID, bool) { return ModelID{}, false }

// Encode implements Codec.
func (Raw) Encode(_ context.Context, dst, src []byte) ([]byte, error) {
	return append(dst, src...), nil
}

// Decode implements Codec.
func (Raw) Decode(_ context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	if len(payload) != rawLen {
		return dst, fmt.Errorf("%w: raw payload is %d bytes, header says %d", ErrCorrupt, len(payload), rawLen)
	}
	return append(dst, payload...), nil
}
