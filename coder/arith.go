package coder

import (
	"fmt"

	"github.com/lmfs/lmfs/predictor"
)

// The arithmetic coder is a carry-less binary coder on a 32-bit interval
// [x1, x2], in the family of lpaq1's: each decision splits the interval in
// proportion to a 16-bit probability and the leading bytes that x1 and x2
// share are shifted out. It never carries, so it needs no output buffering,
// and the interval never becomes empty (both halves of a split hold at least
// one value for every probability in [1, 65535]), so every decision is
// decodable and round trips are exact by construction.
//
// Stream layout: the bytes shifted out while coding, then one final byte (the
// top byte of x1). The decoder primes itself with 4 bytes and reads one byte
// per byte the encoder shifted, treating bytes past the end as 0xFF; so after
// decoding a valid stream it has consumed exactly len(stream)+3 bytes, which
// Decoder.Finish checks. An empty input codes to an empty stream.
//
// 256-ary symbols (for byte-level models that give a frequency table) are
// coded as eight binary decisions along the bit tree of the byte, each with
// the exact ratio of the subtree frequencies rounded to 16 bits; see
// EncodeSymbol.

// ProbBits is the precision of the probabilities the coder takes: p is
// P(bit = 1) scaled by 1<<ProbBits and must lie in [1, 1<<ProbBits - 1].
const ProbBits = 16

const probMax = 1<<ProbBits - 1

// split returns the last value of the "1" half of [x1, x2] for probability p
// of a 1.
func split(x1, x2 uint32, p uint32) uint32 {
	r := x2 - x1
	return x1 + (r>>ProbBits)*p + ((r&probMax)*p)>>ProbBits
}

// Encoder codes binary decisions and symbols into a byte slice.
type Encoder struct {
	x1, x2 uint32
	out    []byte
}

// NewEncoder returns an encoder that appends its output to dst.
func NewEncoder(dst []byte) *Encoder {
	e := &Encoder{}
	e.Reset(dst)
	return e
}

// Reset starts a new stream appending to dst.
func (e *Encoder) Reset(dst []byte) {
	e.x1, e.x2, e.out = 0, 0xFFFFFFFF, dst
}

// EncodeBit codes bit (0 or 1) with probability p/65536 that it is 1. p is
// clamped to [1, 65535].
func (e *Encoder) EncodeBit(bit int, p int) {
	q := uint32(clampP(p))
	xmid := split(e.x1, e.x2, q)
	if bit != 0 {
		e.x2 = xmid
	} else {
		e.x1 = xmid + 1
	}
	for (e.x1^e.x2)&0xFF000000 == 0 {
		e.out = append(e.out, byte(e.x2>>24))
		e.x1 <<= 8
		e.x2 = e.x2<<8 | 0xFF
	}
}

// Finish flushes the coder and returns the stream (dst passed to Reset with
// the coded bytes appended). Call it once, after the last decision, and only
// if at least one decision was coded.
func (e *Encoder) Finish() []byte {
	e.out = append(e.out, byte(e.x1>>24))
	return e.out
}

// EncodeSymbol codes sym with the frequency table f (see predictor.Dist: every
// frequency at least 1, total predictor.FreqTotal). It returns an error if f
// breaks those rules, since a table the decoder might not reproduce cannot be
// coded safely.
func (e *Encoder) EncodeSymbol(f *predictor.Dist, sym byte) error {
	var cum [257]uint32
	if err := cumulate(f, &cum); err != nil {
		return err
	}
	lo, hi := 0, 256
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		bit := 0
		if int(sym) >= mid {
			bit = 1
		}
		e.EncodeBit(bit, symbolP(&cum, lo, mid, hi))
		if bit != 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return nil
}

// Decoder decodes what an Encoder wrote. It never reads outside its input and
// never fails on its own; Finish reports whether the stream was consumed
// exactly as a valid one would be.
type Decoder struct {
	x1, x2, x uint32
	in        []byte
	pos       int
}

// NewDecoder returns a decoder reading stream.
func NewDecoder(stream []byte) *Decoder {
	d := &Decoder{}
	d.Reset(stream)
	return d
}

// Reset starts decoding stream.
func (d *Decoder) Reset(stream []byte) {
	d.x1, d.x2, d.x, d.in, d.pos = 0, 0xFFFFFFFF, 0, stream, 0
	for i := 0; i < 4; i++ {
		d.x = d.x<<8 | uint32(d.next())
	}
}

func (d *Decoder) next() byte {
	p := d.pos
	d.pos++
	if p < len(d.in) {
		return d.in[p]
	}
	return 0xFF
}

// DecodeBit decodes one decision coded with probability p (as EncodeBit).
func (d *Decoder) DecodeBit(p int) int {
	q := uint32(clampP(p))
	xmid := split(d.x1, d.x2, q)
	bit := 0
	if d.x <= xmid {
		bit = 1
		d.x2 = xmid
	} else {
		d.x1 = xmid + 1
	}
	for (d.x1^d.x2)&0xFF000000 == 0 {
		d.x1 <<= 8
		d.x2 = d.x2<<8 | 0xFF
		d.x = d.x<<8 | uint32(d.next())
	}
	return bit
}

// DecodeSymbol decodes a symbol coded by EncodeSymbol with the same table.
func (d *Decoder) DecodeSymbol(f *predictor.Dist) (byte, error) {
	var cum [257]uint32
	if err := cumulate(f, &cum); err != nil {
		return 0, err
	}
	lo, hi := 0, 256
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if d.DecodeBit(symbolP(&cum, lo, mid, hi)) != 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return byte(lo), nil
}

// Finish checks that the decoder consumed exactly the bytes a valid stream of
// this length holds; a mismatch means the payload is damaged or truncated.
func (d *Decoder) Finish() error {
	if d.pos != len(d.in)+3 {
		return fmt.Errorf("%w: arithmetic-coded stream of %d bytes ended after %d bytes", ErrCorrupt, len(d.in), d.pos-3)
	}
	return nil
}

// Overrun reports whether the decoder has read more than a valid stream's
// padding past the end of its input: decoding can stop early as corrupt.
func (d *Decoder) Overrun() bool { return d.pos > len(d.in)+3 }

func clampP(p int) int {
	if p < 1 {
		return 1
	}
	if p > probMax {
		return probMax
	}
	return p
}

func cumulate(f *predictor.Dist, cum *[257]uint32) error {
	var s uint32
	for i, v := range f {
		if v == 0 {
			return fmt.Errorf("frequency table gives symbol %d a frequency of 0: every symbol needs at least 1", i)
		}
		cum[i] = s
		s += uint32(v)
	}
	cum[256] = s
	if s != predictor.FreqTotal {
		return fmt.Errorf("frequency table sums to %d, want %d", s, predictor.FreqTotal)
	}
	return nil
}

// symbolP is the 16-bit probability that a symbol in [lo, hi) lies in
// [mid, hi): the ratio of the two cumulative frequencies, rounded down.
// pathProbs writes to out[0:8] the probability of a 1 (symbolP of the
// cumulative table cum) at each of the eight bit-tree nodes on byte x's path,
// most significant bit first: the probabilities EncodeSymbol codes x with.
func pathProbs(cum *[257]uint32, x byte, out []uint16) {
	lo, hi := 0, 256
	for k := range 8 {
		mid := (lo + hi) / 2
		out[k] = uint16(symbolP(cum, lo, mid, hi))
		if int(x) >= mid {
			lo = mid
		} else {
			hi = mid
		}
	}
}

func symbolP(cum *[257]uint32, lo, mid, hi int) int {
	all := uint64(cum[hi] - cum[lo])
	one := uint64(cum[hi] - cum[mid])
	return int(one << ProbBits / all)
}
