package coder

import (
	"context"
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// Zstd codes blocks as single zstd frames.
type Zstd struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// NewZstd returns a zstd codec at the given level (1..22, as the zstd command
// line counts them). The encoder and decoder are shared and safe for
// concurrent use.
func NewZstd(level int) (*Zstd, error) {
	if level < 1 || level > 22 {
		return nil, fmt.Errorf("zstd level %d out of range 1..22", level)
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithZeroFrames(true),
		zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxBlockSize*2),
		zstd.WithDecoderMaxWindow(MaxBlockSize*2))
	if err != nil {
		return nil, err
	}
	return &Zstd{enc: enc, dec: dec}, nil
}

// ID implements Codec.
func (*Zstd) ID() ID { return IDZstd }

// Name implements Codec.
func (*Zstd) Name() string { return "zstd" }

// Model implements Codec.
func (*Zstd) Model() (ModelID, bool) { return ModelID{}, false }

// Encode implements Codec.
func (z *Zstd) Encode(_ context.Context, dst, src []byte) ([]byte, error) {
	return z.enc.EncodeAll(src, dst), nil
}

// Decode implements Codec.
func (z *Zstd) Decode(_ context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	start := len(dst)
	// Refuse a frame whose declared size disagrees with the header before
	// allocating for it, so garbage cannot make us allocate MaxBlockSize.
	var fh zstd.Header
	if err := fh.Decode(payload); err != nil {
		return dst, fmt.Errorf("%w: zstd frame header: %v", ErrCorrupt, err)
	}
	if fh.HasFCS && fh.FrameContentSize != uint64(rawLen) {
		return dst, fmt.Errorf("%w: zstd frame declares %d bytes, header says %d", ErrCorrupt, fh.FrameContentSize, rawLen)
	}
	if fh.HasFCS && cap(dst)-start < rawLen {
		nd := make([]byte, start, start+rawLen)
		copy(nd, dst)
		dst = nd
	}
	out, err := z.dec.DecodeAll(payload, dst)
	if err != nil {
		return dst[:start], fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(out)-start != rawLen {
		return dst[:start], fmt.Errorf("%w: zstd produced %d bytes, header says %d", ErrCorrupt, len(out)-start, rawLen)
	}
	return out, nil
}
