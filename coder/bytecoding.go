package coder

import (
	"context"
	"fmt"

	"github.com/lmfs/lmfs/predictor"
)

// EncodeBytes codes each block with a byte model and 256-ary arithmetic
// coding, scoring all blocks in one batched call, and returns one stream per
// block (empty for an empty block). It is the encoding half of a byte-model
// codec such as the neural LM.
func EncodeBytes(ctx context.Context, m predictor.ByteModel, blocks [][]byte) ([][]byte, error) {
	enc := make([]Encoder, len(blocks))
	next := make([]int, len(blocks))
	for i := range enc {
		enc[i].Reset(nil)
	}
	err := m.Score(ctx, blocks, func(b, pos int, d *predictor.Dist) error {
		if b < 0 || b >= len(blocks) || pos != next[b] {
			return fmt.Errorf("byte model scored block %d position %d out of order", b, pos)
		}
		next[b]++
		return enc[b].EncodeSymbol(d, blocks[b][pos])
	})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(blocks))
	for i, blk := range blocks {
		if next[i] != len(blk) {
			return nil, fmt.Errorf("byte model scored %d of the %d bytes of block %d", next[i], len(blk), i)
		}
		if len(blk) > 0 {
			out[i] = enc[i].Finish()
		}
	}
	return out, nil
}

// DecodeBytes decodes streams[i] into rawLens[i] bytes for every i, advancing
// all blocks one byte per batched Predict call. A damaged stream gives an
// error wrapping ErrCorrupt (or wrong bytes, for the block CRC to catch).
func DecodeBytes(ctx context.Context, m predictor.ByteModel, streams [][]byte, rawLens []int) ([][]byte, error) {
	if len(streams) != len(rawLens) {
		return nil, fmt.Errorf("%d streams but %d lengths", len(streams), len(rawLens))
	}
	dec := make([]Decoder, len(streams))
	out := make([][]byte, len(streams))
	longest := 0
	for i, s := range streams {
		if rawLens[i] < 0 || rawLens[i] > MaxBlockSize {
			return nil, fmt.Errorf("%w: block length %d out of range", ErrCorrupt, rawLens[i])
		}
		if (rawLens[i] == 0) != (len(s) == 0) {
			return nil, fmt.Errorf("%w: stream of %d bytes for a block of %d", ErrCorrupt, len(s), rawLens[i])
		}
		dec[i].Reset(s)
		out[i] = make([]byte, 0, rawLens[i])
		longest = max(longest, rawLens[i])
	}
	st, err := m.Streams(ctx, len(streams))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ids := make([]int, 0, len(streams))
	dists := make([]predictor.Dist, len(streams))
	syms := make([]byte, len(streams))
	for pos := 0; pos < longest; pos++ {
		ids = ids[:0]
		for i := range streams {
			if pos < rawLens[i] {
				ids = append(ids, i)
			}
		}
		if err := st.Predict(ctx, ids, dists[:len(ids)]); err != nil {
			return nil, err
		}
		for k, i := range ids {
			s, err := dec[i].DecodeSymbol(&dists[k])
			if err != nil {
				return nil, fmt.Errorf("byte model gave an invalid distribution: %w", err)
			}
			if dec[i].Overrun() {
				return nil, fmt.Errorf("%w: stream %d ends after %d of %d bytes", ErrCorrupt, i, pos, rawLens[i])
			}
			syms[k] = s
			out[i] = append(out[i], s)
		}
		if err := st.Push(ids, syms[:len(ids)]); err != nil {
			return nil, err
		}
	}
	for i := range dec {
		if rawLens[i] > 0 {
			if err := dec[i].Finish(); err != nil {
				return nil, fmt.Errorf("stream %d: %w", i, err)
			}
		}
	}
	return out, nil
}
