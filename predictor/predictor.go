// Package predictor defines how lmfs models feed the arithmetic coder: a
// predictor gives, for every position of a block, the probability of what
// comes next given only the bytes before it in the same block. Blocks are
// independent: every block starts from a cold model, so any block decodes on
// its own.
//
// There are two kinds of predictor, matching the two ways the coder codes:
//
//   - Bit predictors (BitModel) give P(next bit = 1) for the bits of each
//     byte, most significant first, as a 16-bit integer. The context-mixing
//     model (package predictor/cm) is one.
//   - Byte predictors (ByteModel) give a 256-ary integer frequency table Dist
//     for the next byte. The neural LM is one. ByteModel is batch-first: a
//     GPU backend serves many blocks per call. Encoding knows every byte in
//     advance, so Score sees whole blocks at once (parallel over positions);
//     decoding is sequential, so a ByteStreams advances many blocks by one
//     byte per Predict/Push round.
//
// Determinism (DESIGN.md section 5): every number that shapes a probability
// is computed with integer arithmetic, so the encoder on one machine and the
// decoder on another compute the same bits. Floating point is not allowed
// anywhere on the path from bytes to probabilities. A predictor whose
// arithmetic changes in any way codes differently: it must get a new codec id
// (or, for model-file predictors, a new model id); old ids keep decoding with
// the old arithmetic.
package predictor

import (
	"context"
	"errors"
	"fmt"
)

// ProbBits is the precision of bit probabilities: P(1) is an integer in
// [1, 1<<ProbBits - 1].
const ProbBits = 16

// BitModel predicts one block bit by bit. The coder calls P, codes the bit,
// then calls Update with it; for byte b that is 8 rounds, bit 7 first. A
// BitModel is used by one goroutine.
type BitModel interface {
	// P returns P(next bit = 1) scaled by 1<<ProbBits, in [1, 1<<ProbBits-1].
	P() int
	// Update tells the model the bit that was coded (0 or 1).
	Update(bit int)
}

// BitPredictor makes cold BitModels, one per block. It is safe for
// concurrent use.
//
// A predictor may choose per block a parameter byte (for example the size of
// its hash tables, from the block length and its memory bound). The coder
// stores that byte in the payload, so a decoder builds the same model whatever
// its own configuration says.
type BitPredictor interface {
	// Params returns the parameter byte for a block of blockLen bytes.
	Params(blockLen int) byte
	// New returns a cold model for a block of blockLen bytes coded with
	// params. It returns an error when params is not one this predictor
	// could have chosen (a damaged payload) or needs more memory than the
	// predictor may use.
	New(blockLen int, params byte) (BitModel, error)
	// Release hands a model back for reuse once its block is coded; m must
	// not be used afterwards. Releasing is optional.
	Release(m BitModel)
}

// ErrBadParams is wrapped by BitPredictor.New's error when the parameter
// byte is not one the predictor could have chosen: the payload is damaged.
var ErrBadParams = errors.New("invalid predictor parameter byte")

// FreqTotal is the sum of every Dist.
const FreqTotal = 1 << 16

// Dist is the distribution of the next byte as integer frequencies: every
// entry is at least 1 and the entries sum to exactly FreqTotal, so every byte
// stays codable.
type Dist [256]uint32

// Check returns an error unless d follows the Dist rules.
func (d *Dist) Check() error {
	var s uint32
	for i, v := range d {
		if v == 0 {
			return fmt.Errorf("byte %d has frequency 0; every byte needs at least 1", i)
		}
		if v > FreqTotal {
			return fmt.Errorf("byte %d has frequency %d above the total %d", i, v, FreqTotal)
		}
		s += v
	}
	if s != FreqTotal {
		return fmt.Errorf("frequencies sum to %d, want %d", s, FreqTotal)
	}
	return nil
}

// ByteModel is a byte-level predictor served in batches. It is safe for
// concurrent use.
type ByteModel interface {
	// Score calls emit with the distribution of byte pos of blocks[b] given
	// blocks[b][:pos], for every block b and every position pos, in
	// increasing pos within a block (blocks may interleave). d is only valid
	// during the call. A non-nil error from emit stops Score and is
	// returned.
	Score(ctx context.Context, blocks [][]byte, emit func(b, pos int, d *Dist) error) error
	// Streams starts n cold block streams for sequential decoding.
	Streams(ctx context.Context, n int) (ByteStreams, error)
}

// ByteStreams is the decoding state of a batch of blocks. Each round,
// Predict gives the next distribution of a subset of the streams, the
// caller decodes one byte for each and Pushes them. Streams are used by one
// goroutine.
type ByteStreams interface {
	// Predict fills dst[i] with the distribution of the next byte of stream
	// ids[i]; len(dst) == len(ids).
	Predict(ctx context.Context, ids []int, dst []Dist) error
	// Push appends syms[i] to stream ids[i]; call it once after each
	// Predict with the same ids.
	Push(ids []int, syms []byte) error
	// Close releases the streams.
	Close() error
}
