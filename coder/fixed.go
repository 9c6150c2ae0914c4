package coder

import (
	"context"
	"fmt"
)

// BlockEncoder turns a raw block into a complete block record. Chooser and
// Fixed implement it; implementations are safe for concurrent use.
type BlockEncoder interface {
	// Encode codes raw and appends its block record to dst.
	Encode(ctx context.Context, dst, raw []byte) ([]byte, error)
}

// Fixed codes every block with one codec, except that a block whose record
// would be larger than its raw record is stored raw: a record never exceeds
// the raw record. It is safe for concurrent use.
type Fixed struct {
	reg *Registry
	c   Codec
}

// NewFixed returns an encoder that codes with the codec registered as name.
func NewFixed(reg *Registry, name string) (*Fixed, error) {
	c, err := reg.ByName(name)
	if err != nil {
		return nil, err
	}
	return &Fixed{reg: reg, c: c}, nil
}

// Codec returns the codec f codes with.
func (f *Fixed) Codec() Codec { return f.c }

// RawRecordSize returns the size of the raw record of a block of n bytes: the
// largest record lmfs ever stores for it.
func RawRecordSize(n int) int {
	return len(AppendHeader(make([]byte, 0, MaxHeaderSize), Header{Codec: IDRaw, RawLen: n})) + n
}

// Encode implements BlockEncoder.
func (f *Fixed) Encode(ctx context.Context, dst, raw []byte) ([]byte, error) {
	start := len(dst)
	out, err := f.reg.EncodeWith(ctx, dst, f.c, raw)
	if err != nil {
		return dst[:start], err
	}
	if len(out)-start <= RawRecordSize(len(raw)) {
		return out, nil
	}
	out, err = f.reg.EncodeWith(ctx, out[:start], Raw{}, raw)
	if err != nil {
		return dst[:start], fmt.Errorf("raw fallback: %w", err)
	}
	return out, nil
}
