package coder

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/cm"
	"github.com/lmfs/lmfs/predictor/lm"
	"github.com/lmfs/lmfs/predictor/lmmix"
	"github.com/lmfs/lmfs/predictor/mix"
)

// LMCM is the lm+cm codec: id 7 ("lm+cm", predictor/lmmix's Mixer7) or the
// superseded ids 6 ("lm+cm.2", predictor/lmmix's Mixer) and 5 ("lm+cm.1"),
// kept so their blocks decode. The payload is cm's parameter byte (see
// predictor.BitPredictor) and then the arithmetic coder's stream. Every byte
// is coded as eight binary
// decisions, most significant bit first; for each, the LM's probability (the
// ratio of its frequency table over the two halves of the current bit-tree
// node, as EncodeSymbol codes it) and the context-mixing model's are mixed.
// Id 6 feeds the LM's stretched probability into mixers next to cm's own
// inputs (predictor/lmmix, SPEC.md there); id 7 adds inputs from contexts
// of its own (word pairs, column, byte above, indirect, sparse, order 12).
// Id 5 mixes the LM's probability and cm's final one by a 2-input adaptive integer mixer (predictor/mix) whose
// weights start anew in every block, refined by an APM keyed by the partial
// byte and the LM's confidence. Blocks carry the LM's model id.
type LMCM struct {
	id    ID
	name  string
	model ModelID
	lm    predictor.ByteModel
	cm    *cm.Predictor
	acc   *accel    // nil: the LM runs on the CPU (lm)
	grp   *gatherer // without acc: groups concurrent Decode calls
	// mixers pools the mixers of id 6 (*lmmix.Mixer, about 110 KiB each)
	// or id 7 (*lmmix.Mixer7).
	mixers sync.Pool
}

// Mixer settings of lm+cm.1 (id 5). Changing any of them changes the coded bits and
// needs a new codec id. The rate was chosen on the LM's validation split
// (52 blocks of 64 KiB, audio left out): 1.2888 bits per byte at 2^-11
// against 1.2911 at 2^-10, 1.2998 at 2^-9 and 1.2904 at 2^-12 (cm alone:
// 1.5848). The APM stage (output = (mix + 3 apm) / 4) took it to 1.2841.
const (
	lmcmSets      = 8 * 4 // bit position x LM-confidence bucket
	lmcmRateShift = 11
	lmcmAPMRate   = 7
)

var lmcmInit = []int32{32768, 32768} // weights of LM and cm, 16.16: one half each

// NewLMCM returns the lm+cm codec (id 7) for LM m with cm models bounded by
// cmMemory bytes each.
func NewLMCM(m *lm.Model, cmMemory int64) *LMCM {
	return newLMCM(IDLMCM, m, ModelID(m.ID()), cmMemory)
}

// NewLMCMModel returns the lm+cm codec (id 7) for any byte model m (whose
// model id is model), with cm models bounded by cmMemory bytes.
func NewLMCMModel(m predictor.ByteModel, model ModelID, cmMemory int64) *LMCM {
	return newLMCM(IDLMCM, m, model, cmMemory)
}

// NewLMCM2 returns the superseded lm+cm.2 codec (id 6) for LM m with cm
// models bounded by cmMemory bytes each.
func NewLMCM2(m *lm.Model, cmMemory int64) *LMCM {
	return newLMCM(IDLMCM2, m, ModelID(m.ID()), cmMemory)
}

// NewLMCM2Model returns the superseded lm+cm.2 codec (id 6) for any byte
// model m (whose model id is model), with cm models bounded by cmMemory
// bytes.
func NewLMCM2Model(m predictor.ByteModel, model ModelID, cmMemory int64) *LMCM {
	return newLMCM(IDLMCM2, m, model, cmMemory)
}

// NewLMCM1 returns the superseded lm+cm.1 codec (id 5) for LM m with cm
// models bounded by cmMemory bytes each.
func NewLMCM1(m *lm.Model, cmMemory int64) *LMCM {
	return newLMCM(IDLMCM1, m, ModelID(m.ID()), cmMemory)
}

// NewLMCM1Model returns the superseded lm+cm.1 codec (id 5) for any byte
// model m (whose model id is model), with cm models bounded by cmMemory
// bytes.
func NewLMCM1Model(m predictor.ByteModel, model ModelID, cmMemory int64) *LMCM {
	return newLMCM(IDLMCM1, m, model, cmMemory)
}

func newLMCM(id ID, m predictor.ByteModel, model ModelID, cmMemory int64) *LMCM {
	c := &LMCM{id: id, name: builtinNames[id], model: model, lm: m, cm: cm.New(cmMemory)}
	c.grp = &gatherer{run: c.decodeGroup}
	return c
}

// ID implements Codec.
func (c *LMCM) ID() ID { return c.id }

// Name implements Codec.
func (c *LMCM) Name() string { return c.name }

// Superseded reports whether a newer codec replaces this one (ids 5 and
// 6): it still decodes and can be chosen by name, but policy max skips it.
func (c *LMCM) Superseded() bool { return c.id == IDLMCM1 || c.id == IDLMCM2 }

// Model implements Codec.
func (c *LMCM) Model() (ModelID, bool) { return c.model, true }

// lmcmState codes the bits of one block.
type lmcmState struct {
	cm  predictor.BitModel
	cmm *cm.Model     // ids 6, 7: cm's model, whose inputs the mixer reads
	m2  *lmmix.Mixer  // id 6
	m7  *lmmix.Mixer7 // id 7
	mx  *mix.Mixer    // id 5
	ap  *mix.APM      // id 5
	in  [2]int32
	cum [257]uint32
}

func (c *LMCM) newState(n int, params byte) (*lmcmState, error) {
	m, err := c.cm.New(n, params)
	if errors.Is(err, predictor.ErrBadParams) {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if err != nil {
		return nil, err
	}
	if c.id == IDLMCM1 {
		return &lmcmState{
			cm: m,
			mx: mix.New(2, lmcmSets, lmcmInit, lmcmRateShift),
			ap: mix.NewAPM(256*4, lmcmAPMRate),
		}, nil
	}
	cmm, ok := m.(*cm.Model)
	if !ok {
		c.cm.Release(m)
		return nil, fmt.Errorf("lm+cm: cm predictor gave a %T, not a *cm.Model", m)
	}
	if c.id == IDLMCM {
		m7, _ := c.mixers.Get().(*lmmix.Mixer7)
		if m7 == nil {
			m7 = lmmix.New7(n)
		} else {
			m7.Reset(n)
		}
		return &lmcmState{cm: m, cmm: cmm, m7: m7}, nil
	}
	m2, _ := c.mixers.Get().(*lmmix.Mixer)
	if m2 == nil {
		m2 = lmmix.New()
	} else {
		m2.Reset()
	}
	return &lmcmState{cm: m, cmm: cmm, m2: m2}, nil
}

// release gives the tables of a block's state back to their pools.
func (c *LMCM) release(s *lmcmState) {
	c.cm.Release(s.cm)
	if s.m2 != nil {
		c.mixers.Put(s.m2)
	}
	if s.m7 != nil {
		c.mixers.Put(s.m7)
	}
}

// p returns the mixed P(next bit = 1) for bit k (0 = most significant) of
// the bit-tree node that starts at symbol lo, given the LM's probability pl
// (symbolP of the node).
func (s *lmcmState) p(k, lo int, pl int32) int {
	if s.m7 != nil {
		return s.m7.P(pl, s.cmm)
	}
	if s.m2 != nil {
		return s.m2.P(pl, s.cmm)
	}
	s.in[0] = pl
	s.in[1] = int32(s.cm.P())
	conf := mix.Confidence(pl)
	p := s.mx.P(s.in[:], k*4+conf)
	c0 := 1<<k | lo>>(8-k) // the bits of the byte so far, after a leading 1
	return (p + 3*s.ap.Refine(p, c0*4+conf)) / 4
}

func (s *lmcmState) update(bit int) {
	if s.m7 != nil {
		s.m7.Update(bit)
		s.cmm.Update(bit)
		return
	}
	if s.m2 != nil {
		s.m2.Update(bit)
		s.cmm.Update(bit)
		return
	}
	s.mx.Update(bit)
	s.ap.Update(bit)
	s.cm.Update(bit)
}

// Encode implements Codec. With an accelerator, concurrent calls are coded
// together in batches.
func (c *LMCM) Encode(ctx context.Context, dst, src []byte) ([]byte, error) {
	if c.acc != nil && len(src) > 0 {
		return c.acc.encodeBatched(ctx, dst, src, func(ctx context.Context, srcs [][]byte) ([][]byte, []error) {
			return batchRun(len(srcs), func(out [][]byte, errs []error) { encodeRun(ctx, c.acc, c, srcs, out, errs) })
		})
	}
	return c.encodeCPU(ctx, dst, src)
}

// encodeCPU codes src with the Go LM.
func (c *LMCM) encodeCPU(ctx context.Context, dst, src []byte) ([]byte, error) {
	if len(src) == 0 {
		return dst, nil
	}
	return c.encodeWith(dst, src, func(s *lmcmState, code func(pos int, pl []uint16)) error {
		pl := make([]uint16, 8)
		return c.lm.Score(ctx, [][]byte{src}, func(_, pos int, d *predictor.Dist) error {
			if err := cumulate(d, &s.cum); err != nil {
				return err
			}
			pathProbs(&s.cum, src[pos], pl)
			code(pos, pl)
			return nil
		})
	})
}

// encodeWith codes the non-empty src after cm's parameter byte. drive calls
// code for every position in order, with pl the LM's probabilities of a 1 at
// the eight bit-tree nodes on the byte's path (pathProbs).
func (c *LMCM) encodeWith(dst, src []byte, drive func(s *lmcmState, code func(pos int, pl []uint16)) error) ([]byte, error) {
	params := c.cm.Params(len(src))
	s, err := c.newState(len(src), params)
	if err != nil {
		return dst, err
	}
	defer c.release(s)
	e := Encoder{}
	e.Reset(append(dst, params))
	err = drive(s, func(pos int, pl []uint16) { s.encodeByte(&e, src[pos], pl) })
	if err != nil {
		return dst, err
	}
	return e.Finish(), nil
}

// encodeByte codes byte x with e, pl the LM's probabilities of a 1 at the
// eight bit-tree nodes on its path (pathProbs).
func (s *lmcmState) encodeByte(e *Encoder, x byte, pl []uint16) {
	lo := 0 // the first symbol of the current node
	for k := range 8 {
		bit := int(x>>(7-k)) & 1
		e.EncodeBit(bit, s.p(k, lo, int32(pl[k])))
		s.update(bit)
		if bit != 0 {
			lo += 128 >> k
		}
	}
}

// decodeByte decodes a byte from d with the LM's table in s.cum.
func (s *lmcmState) decodeByte(d *Decoder) byte {
	lo, hi := 0, 256
	for k := range 8 {
		mid := (lo + hi) / 2
		bit := d.DecodeBit(s.p(k, lo, int32(symbolP(&s.cum, lo, mid, hi))))
		s.update(bit)
		if bit != 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return byte(lo)
}

// Decode implements Codec. Concurrent calls are decoded together: in
// batches on an accelerator, else in lockstep groups on the CPU cores
// (gatherer).
func (c *LMCM) Decode(ctx context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	if c.acc != nil && rawLen > 0 && len(payload) > 0 {
		return c.acc.decodeBatched(ctx, dst, payload, rawLen, func(ctx context.Context, pays [][]byte, lens []int) ([][]byte, []error) {
			return batchRun(len(pays), func(out [][]byte, errs []error) { decodeRun(ctx, c.acc, c, pays, lens, out, errs) })
		})
	}
	return c.grp.decode(ctx, dst, payload, rawLen)
}

// decodeCPU decodes with the Go LM.
func (c *LMCM) decodeCPU(ctx context.Context, dst, payload []byte, rawLen int) ([]byte, error) {
	if empty, err := checkPayloadShape(c.name, payload, rawLen); empty || err != nil {
		return dst, err
	}
	st, err := c.lm.Streams(ctx, 1)
	if err != nil {
		return dst, err
	}
	defer st.Close()
	s, err := c.newState(rawLen, payload[0])
	if err != nil {
		return dst, err
	}
	defer c.release(s)
	start := len(dst)
	d := Decoder{}
	d.Reset(payload[1:])
	ids := []int{0}
	dist := make([]predictor.Dist, 1)
	sym := []byte{0}
	for i := range rawLen {
		if i%ctxEvery == 0 && d.Overrun() {
			return dst[:start], fmt.Errorf("%w: %s payload ends after %d of %d bytes", ErrCorrupt, c.name, i, rawLen)
		}
		if err := st.Predict(ctx, ids, dist); err != nil {
			return dst[:start], err
		}
		if err := cumulate(&dist[0], &s.cum); err != nil {
			return dst[:start], err
		}
		sym[0] = s.decodeByte(&d)
		if err := st.Push(ids, sym); err != nil {
			return dst[:start], err
		}
		dst = append(dst, sym[0])
	}
	if err := d.Finish(); err != nil {
		return dst[:start], fmt.Errorf("%s: %w", c.name, err)
	}
	return dst, nil
}
