package gpu

import (
	"context"
	"fmt"
)

// The lm+cm codec (coder/lmcm.go) on the GPU: the library runs the LM, cm,
// the lm+cm mixer and the arithmetic coder of every block (cm.cu), so only
// data and payloads cross to the host. Rule is the codec id whose mixing
// stage runs (coder.IDLMCM1 = 5, coder.IDLMCM2 = 6 or coder.IDLMCM = 7); params[i] is block i's cm parameter byte
// (predictor/cm's Params: the log2 of its hash-table slots).

// Rules: the codec ids of lm+cm whose mixing stage the library runs.
const (
	RuleLMCM1 = 5 // lm+cm.1 (coder/lmcm.go's 2-input mixer and APM)
	RuleLMCM2 = 6 // lm+cm.2 (predictor/lmmix's Mixer)
	RuleLMCM  = 7 // lm+cm (predictor/lmmix's Mixer7)
)

// LMCMBlockBytes returns the GPU memory one block of blockLen bytes with cm
// parameter byte params takes in an lm+cm call (encoding or decoding), the
// LM's state included; -1 for a parameter byte out of range.
func (m *Model) LMCMBlockBytes(blockLen int, params byte, encode bool) int64 {
	enc := int32(0)
	if encode {
		enc = 1
	}
	b := m.lib.lmcmBytes(int64(blockLen), int32(params), enc)
	if b < 0 {
		return -1
	}
	return b + m.BytesPerStream()
}

// lmcmReserve is GPU memory left free when a call's batch is sized.
const lmcmReserve = 1 << 30

// MaxLMCMBlocks returns how many blocks of blockLen bytes (cm parameter byte
// params) fit in one lm+cm call with the GPU memory free now, or -1 where the
// library cannot tell.
func (m *Model) MaxLMCMBlocks(blockLen int, params byte, encode bool) int64 {
	free := m.FreeMemory()
	per := m.LMCMBlockBytes(blockLen, params, encode)
	if free < 0 || per <= 0 {
		return -1
	}
	return max(0, free-lmcmReserve) / per
}

// groups cuts n blocks into consecutive groups whose GPU memory (need(i) per
// block) fits the free memory, and calls f for each; with the free memory
// unknown, one group.
func (m *Model) groups(n int, need func(i int) int64, f func(start, end int) error) error {
	free := m.FreeMemory()
	if free < 0 {
		return f(0, n)
	}
	budget := max(free-lmcmReserve, free/2)
	for start := 0; start < n; {
		end, sum := start, int64(0)
		for end < n && (end == start || sum+need(end) <= budget) {
			sum += need(end)
			end++
		}
		if err := f(start, end); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// lmcmStreamCap is the room for the lm+cm stream of an n-byte block: a
// stream that outgrows it (data the model expands) is coded on the CPU.
func lmcmStreamCap(n int64) int64 { return n + n/4 + 16 }

// HasLMCMRule reports whether the library runs the mixing stage of lm+cm
// rule (codec id) rule: 5, 6 and 7. For other rules coder would run the LM
// here and cm and the mixer on the CPU.
func (m *Model) HasLMCMRule(rule int) bool { return checkRule(rule) == nil }

func checkRule(rule int) error {
	if rule != RuleLMCM1 && rule != RuleLMCM2 && rule != RuleLMCM {
		return fmt.Errorf("lm+cm rule %d is not in the CUDA library (it runs rules %d, %d and %d)", rule, RuleLMCM1, RuleLMCM2, RuleLMCM)
	}
	return nil
}

// EncodeLMCM codes every block (each at least one byte) with codec lm+cm of
// rule on the GPU and returns block i's arithmetic-coder stream (the payload
// without its parameter byte), or nil for a block whose stream outgrew the
// GPU's output buffer (5/4 of the block: code it another way). If sample is
// a block index, sampleProbs holds the LM's path probabilities of that block
// (8 per byte, as PathProbs), for checking the GPU against the Go reference.
func (m *Model) EncodeLMCM(ctx context.Context, rule int, blocks [][]byte, params []byte, sample int) (streams [][]byte, sampleProbs []uint16, err error) {
	if err := checkRule(rule); err != nil {
		return nil, nil, err
	}
	if len(params) != len(blocks) {
		return nil, nil, fmt.Errorf("%d blocks but %d parameter bytes", len(blocks), len(params))
	}
	for i, b := range blocks {
		if len(b) == 0 || len(b) > 1<<30 {
			return nil, nil, fmt.Errorf("block %d of %d bytes: lm+cm on the GPU codes blocks of 1 byte to 1 GiB", i, len(b))
		}
	}
	streams = make([][]byte, len(blocks))
	err = m.groups(len(blocks), func(i int) int64 { return m.LMCMBlockBytes(len(blocks[i]), params[i], true) }, func(start, end int) error {
		part := blocks[start:end]
		l, total := lens(part)
		data := concat(part, total)
		outoff := make([]int64, len(part)+1)
		room := lmcmStreamCap
		if m.lmcmCap != nil {
			room = m.lmcmCap
		}
		for i, n := range l {
			outoff[i+1] = outoff[i] + room(n)
		}
		out := make([]byte, outoff[len(part)]+1)
		outlen := make([]int64, len(part))
		s := int32(-1)
		var sp []uint16
		if sample >= start && sample < end {
			s = int32(sample - start)
			sp = make([]uint16, 8*len(blocks[sample]))
		}
		err := m.call(ctx, "lm+cm encode", func(token int64) int32 {
			return m.lib.lmcmEncode(m.h, int32(rule), int32(len(part)), ptr(data), ptr(l), ptr(params[start:end]), ptr(out),
				ptr(outoff), ptr(outlen), s, ptr(sp), token)
		})
		if err != nil {
			return err
		}
		for i := range part {
			if outlen[i] >= 0 {
				if outlen[i] > outoff[i+1]-outoff[i] {
					return fmt.Errorf("CUDA lm+cm encode on %s: block %d stream of %d bytes overran its buffer of %d", m.name, start+i, outlen[i], outoff[i+1]-outoff[i])
				}
				streams[start+i] = out[outoff[i] : outoff[i]+outlen[i] : outoff[i]+outlen[i]]
			}
		}
		if sp != nil {
			sampleProbs = sp
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return streams, sampleProbs, nil
}

// DecodeLMCM decodes blocks of codec lm+cm of rule on the GPU: streams[i]
// is block i's arithmetic-coder stream (the payload after its parameter byte
// params[i]), rawLens[i] >= 1 its length. bad[i] is set for a block whose
// stream did not decode as a valid one of its length (damaged); its out[i] is
// nil.
func (m *Model) DecodeLMCM(ctx context.Context, rule int, streams [][]byte, rawLens []int, params []byte) (out [][]byte, bad []bool, err error) {
	if err := checkRule(rule); err != nil {
		return nil, nil, err
	}
	if len(streams) != len(rawLens) || len(params) != len(rawLens) {
		return nil, nil, fmt.Errorf("%d streams, %d lengths, %d parameter bytes", len(streams), len(rawLens), len(params))
	}
	for i, n := range rawLens {
		if n < 1 || n > 1<<30 {
			return nil, nil, fmt.Errorf("block %d of %d bytes: lm+cm on the GPU decodes blocks of 1 byte to 1 GiB", i, n)
		}
	}
	out = make([][]byte, len(streams))
	bad = make([]bool, len(streams))
	err = m.groups(len(streams), func(i int) int64 {
		return m.LMCMBlockBytes(rawLens[i], params[i], false) + int64(len(streams[i]))
	}, func(start, end int) error {
		l := make([]int64, end-start)
		var total int64
		for i := range l {
			l[i] = int64(rawLens[start+i])
			total += l[i]
		}
		pl, ptotal := lens(streams[start:end])
		pay := concat(streams[start:end], ptotal)
		payoff := make([]int64, len(pl)+1)
		for i, n := range pl {
			payoff[i+1] = payoff[i] + n
		}
		buf := make([]byte, total+1)
		b := make([]int32, len(l))
		err := m.call(ctx, "lm+cm decode", func(token int64) int32 {
			return m.lib.lmcmDecode(m.h, int32(rule), int32(len(l)), ptr(pay), ptr(payoff), ptr(l), ptr(params[start:end]), ptr(buf), ptr(b), token)
		})
		if err != nil {
			return err
		}
		var off int64
		for i := range l {
			if b[i] >= 0 {
				bad[start+i] = true
			} else {
				out[start+i] = buf[off : off+l[i] : off+l[i]]
			}
			off += l[i]
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, bad, nil
}
