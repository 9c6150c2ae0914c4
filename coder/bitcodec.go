package coder

import (
	"context"
	"errors"
	"fmt"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/order2"
)

// BitCodec codes a block bit by bit with a bit predictor and the binary
// arithmetic coder: the payload is the predictor's parameter byte followed by
// the coder's stream (and empty for an empty block). It is safe for concurrent use when its predictor is.
type BitCodec struct {
	id   ID
	name string
	pred predictor.BitPredictor
}

// NewBitCodec returns a codec with the given id and name that codes with
// pred. The id must be reserved for exactly this predictor and its
// arithmetic (see FORMAT.md).
func NewBitCodec(id ID, name string, pred predictor.BitPredictor) *BitCodec {
	return &BitCodec{id: id, name: name, pred: pred}
}

// MinCMMemory is the smallest memory bound a cm model accepts.
const MinCMMemory = cm.MinMemory

// NewCM returns the context-mixing codec (id 3) with models bounded by
// memory bytes each.
func NewCM(memory int64) *BitCodec { return NewBitCodec(IDCM, "cm", cm.New(memory)) }

// NewOrder2 returns the order-2 reference codec (id 2).
func NewOrder2() *BitCodec { return NewBitCodec(IDOrder2, "order2", &order2.Predictor{}) }

// ID implements Codec.
func (c *BitCodec) ID() ID { return c.id }

// Name implements Codec.
func (c *BitCodec) Name() string { return c.name }

// Model implements Codec.
func (c *BitCodec) Model() (ModelID, bool) { return ModelID{}, false }

// ctxEvery is how many bytes are coded between checks for cancellation.
const ctxEvery = 1 << 12

// Encode implements Codec.
func (c *BitCodec) Encode(ctx context.Context, dst, src []byte) ([]byte, error) {
	if len(src) == 0 {
		return dst, nil
	}
	params := c.pred.Params(len(src))
	m, err := c.pred.New(len(src), params)
	if err != nil {
		return dst, err
	}
	defer c.pred.Release(m)
	e := Encoder{}
	e.Reset(append(dst, params))
	for len(src) > 0 {
		if err := ctx.Err(); err != nil {
			return dst, err
		}
		n := min(len(src), ctxEvery)
		encodeBits(&e, m, src[:n])
		src = src[n:]
	}
	return e.Finish(), nil
}

// encodeBits codes the bits of src, most significant first. The cm model is
// called directly rather than through the interface, which saves a few
// percent of its time.
func encodeBits(e *Encoder, m predictor.BitModel, src []byte) {
	if cm, ok := m.(*cm.Model); ok {
		for _, b := range src {
			for k := 7; k >= 0; k-- {
				bit := int(b>>uint(k)) & 1
				e.EncodeBit(bit, cm.P())
				cm.Update(bit)
			}
		}
		return
	}
	for _, b := range src {
		for k := 7; k >= 0; k-- {
			bit := int(b>>uint(k)) & 1
			e.EncodeBit(bit, m.P())
			m.Update(bit)
		}
	}
}

// decodeBits decodes len(out) bytes into out; see encodeBits.
func decodeBits(d *Decoder, m predictor.BitModel, out []byte) {
	if cm, ok := m.(*cm.Model); ok {
		for i := range out {
			b := 0
			for k := 0; k < 8; k++ {
				bit := d.DecodeBit(cm.P())
				cm.Update(bit)
				b = b<<1 | bit
			}
			out[i] = byte(b)
		}
		return
	}
	for i := range out {
		b := 0
		for k := 0; k < 8; k++ {
			bit := d.DecodeBit(m.P())
			m.Update(bit)
			b = b<<1 | bit
		}
		out[i] = byte(b)
	}
}

// Decode implements Codec.
func (c *BitCodec) Decode(ctx context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	if empty, err := checkPayloadShape(c.name, payload, rawLen); empty || err != nil {
		return dst, err
	}
	start := len(dst)
	m, err := c.pred.New(rawLen, payload[0])
	if errors.Is(err, predictor.ErrBadParams) {
		return dst, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if err != nil {
		return dst, err
	}
	defer c.pred.Release(m)
	d := Decoder{}
	d.Reset(payload[1:])
	dst = append(dst, make([]byte, rawLen)...)
	out := dst[start:]
	for i := 0; i < len(out); i += ctxEvery {
		if err := ctx.Err(); err != nil {
			return dst[:start], err
		}
		if d.Overrun() {
			return dst[:start], fmt.Errorf("%w: %s payload ends after %d of %d bytes", ErrCorrupt, c.name, i, rawLen)
		}
		decodeBits(&d, m, out[i:min(i+ctxEvery, len(out))])
	}
	if err := d.Finish(); err != nil {
		return dst[:start], fmt.Errorf("%s: %w", c.name, err)
	}
	return dst, nil
}

// checkPayloadShape checks what every arithmetic-coded payload must look like
// for a block of rawLen bytes: empty exactly when the block is. It returns
// empty=true for a valid empty block.
func checkPayloadShape(name string, payload []byte, rawLen int) (empty bool, err error) {
	if rawLen == 0 {
		if len(payload) != 0 {
			return false, fmt.Errorf("%w: %s payload of %d bytes for an empty block", ErrCorrupt, name, len(payload))
		}
		return true, nil
	}
	if len(payload) == 0 {
		return false, fmt.Errorf("%w: empty %s payload for a block of %d bytes", ErrCorrupt, name, rawLen)
	}
	if rawLen < 0 || rawLen > MaxBlockSize {
		return false, fmt.Errorf("%w: block length %d out of range", ErrCorrupt, rawLen)
	}
	return false, nil
}
