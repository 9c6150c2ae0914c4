package coder

import (
	"context"
	"fmt"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/lm"
)

// ByteCodec codes a block byte by byte with a byte predictor (a 256-ary
// frequency table per position) and the arithmetic coder's symbol coding.
// The payload is the coder's stream (empty for an empty block). Its blocks
// carry the id of the model they were coded with.
type ByteCodec struct {
	id    ID
	name  string
	model ModelID
	pred  predictor.ByteModel
	acc   *accel    // nil: the model runs on the CPU (pred)
	grp   *gatherer // without acc: groups concurrent Decode calls
}

// NewByteCodec returns a codec with the given id and name that codes with
// pred, whose model file has the SHA-256 model.
func NewByteCodec(id ID, name string, model ModelID, pred predictor.ByteModel) *ByteCodec {
	c := &ByteCodec{id: id, name: name, model: model, pred: pred}
	c.grp = &gatherer{run: c.decodeGroup}
	return c
}

// NewLM returns the neural LM codec (id 4) for model m.
func NewLM(m *lm.Model) *ByteCodec { return NewByteCodec(IDLM, "lm", ModelID(m.ID()), m) }

// ID implements Codec.
func (c *ByteCodec) ID() ID { return c.id }

// Name implements Codec.
func (c *ByteCodec) Name() string { return c.name }

// Model implements Codec.
func (c *ByteCodec) Model() (ModelID, bool) { return c.model, true }

// Encode implements Codec. With an accelerator, concurrent calls are coded
// together in batches.
func (c *ByteCodec) Encode(ctx context.Context, dst, src []byte) ([]byte, error) {
	if c.acc != nil && len(src) > 0 {
		return c.acc.encodeBatched(ctx, dst, src, func(ctx context.Context, srcs [][]byte) ([][]byte, []error) {
			return batchRun(len(srcs), func(out [][]byte, errs []error) { encodeRun(ctx, c.acc, c, srcs, out, errs) })
		})
	}
	return c.encodeCPU(ctx, dst, src)
}

// encodeCPU codes src with the Go model.
func (c *ByteCodec) encodeCPU(ctx context.Context, dst, src []byte) ([]byte, error) {
	if len(src) == 0 {
		return dst, nil
	}
	e := Encoder{}
	e.Reset(dst)
	err := c.pred.Score(ctx, [][]byte{src}, func(_, pos int, d *predictor.Dist) error {
		return e.EncodeSymbol(d, src[pos])
	})
	if err != nil {
		return dst, err
	}
	return e.Finish(), nil
}

// Decode implements Codec. Concurrent calls are decoded together: in
// batches on an accelerator, else in lockstep groups on the CPU cores
// (gatherer).
func (c *ByteCodec) Decode(ctx context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	if c.acc != nil && rawLen > 0 && len(payload) > 0 {
		return c.acc.decodeBatched(ctx, dst, payload, rawLen, func(ctx context.Context, pays [][]byte, lens []int) ([][]byte, []error) {
			return batchRun(len(pays), func(out [][]byte, errs []error) { decodeRun(ctx, c.acc, c, pays, lens, out, errs) })
		})
	}
	return c.grp.decode(ctx, dst, payload, rawLen)
}

// decodeCPU decodes with the Go model.
func (c *ByteCodec) decodeCPU(ctx context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	if empty, err := checkPayloadShape(c.name, payload, rawLen); empty || err != nil {
		return dst, err
	}
	s, err := c.pred.Streams(ctx, 1)
	if err != nil {
		return dst, err
	}
	defer s.Close()
	start := len(dst)
	d := Decoder{}
	d.Reset(payload)
	ids := []int{0}
	dist := make([]predictor.Dist, 1)
	sym := []byte{0}
	for i := range rawLen {
		if i%ctxEvery == 0 && d.Overrun() {
			return dst[:start], fmt.Errorf("%w: %s payload ends after %d of %d bytes", ErrCorrupt, c.name, i, rawLen)
		}
		if err := s.Predict(ctx, ids, dist); err != nil {
			return dst[:start], err
		}
		b, err := d.DecodeSymbol(&dist[0])
		if err != nil {
			return dst[:start], err
		}
		sym[0] = b
		if err := s.Push(ids, sym); err != nil {
			return dst[:start], err
		}
		dst = append(dst, b)
	}
	if err := d.Finish(); err != nil {
		return dst[:start], fmt.Errorf("%s: %w", c.name, err)
	}
	return dst, nil
}
