package coder

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// fullBackend is an LMCMBackend that runs the whole lm+cm codec with the Go
// reference (as predictor/gpu runs it on a GPU), with faults to inject.
type fullBackend struct {
	refBackend
	memory   int64
	wrong    bool // every stream has one byte more than it should
	overflow int  // blocks shorter than this get no stream (as if they outgrew their room)
	damaged  bool // DecodeLMCM flags every block
	encodes  int
	decodes  int
}

func (b *fullBackend) EncodeLMCM(ctx context.Context, rule int, blocks [][]byte, params []byte, sample int) ([][]byte, []uint16, error) {
	b.encodes++
	if b.fail {
		return nil, nil, errLostDevice
	}
	if rule != int(IDLMCM) {
		return nil, nil, fmt.Errorf("rule %d", rule)
	}
	pays, err := NewLMCMModel(b.m, ModelID{}, b.memory).EncodeBatch(ctx, blocks)
	if err != nil {
		return nil, nil, err
	}
	streams := make([][]byte, len(blocks))
	for i, p := range pays {
		if p[0] != params[i] {
			return nil, nil, fmt.Errorf("block %d: parameter byte %d, the codec's %d", i, params[i], p[0])
		}
		if len(blocks[i]) < b.overflow {
			continue
		}
		streams[i] = p[1:]
		if b.wrong {
			streams[i] = append(streams[i], 0)
		}
	}
	probs, err := b.PathProbs(ctx, blocks[sample:sample+1])
	if err != nil {
		return nil, nil, err
	}
	return streams, probs[0], nil
}

func (b *fullBackend) DecodeLMCM(ctx context.Context, rule int, streams [][]byte, rawLens []int, params []byte) ([][]byte, []bool, error) {
	b.decodes++
	if b.fail {
		return nil, nil, errLostDevice
	}
	c := NewLMCMModel(b.m, ModelID{}, b.memory)
	out := make([][]byte, len(streams))
	bad := make([]bool, len(streams))
	for i, s := range streams {
		var err error
		out[i], err = c.Decode(ctx, nil, append([]byte{params[i]}, s...), rawLens[i])
		if err != nil || b.damaged {
			out[i], bad[i] = nil, true
		}
	}
	return out, bad, nil
}

// TestLMCMFullBackend checks the codec's use of a backend that runs all of
// lm+cm: payloads as the CPU's; blocks the backend cannot code or finds
// damaged coded and decoded on the CPU; a backend failure falls back to the
// CPU with a log line; a wrong payload in the checked sample disables the
// backend with an error line, and no wrong payload is stored.
func TestLMCMFullBackend(t *testing.T) {
	m := defaultModel(t)
	ctx := context.Background()
	srcs := accelInputs(t)
	lens := make([]int, len(srcs))
	for i, s := range srcs {
		lens[i] = len(s)
	}
	want, err := NewLMCM(m, 1<<20).EncodeBatch(ctx, srcs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                 string
		fail, wrong, damaged bool
		overflow             int
		logWant              string
		encodesWant, decWant int
	}{
		{name: "exact", encodesWant: 2, decWant: 2},
		{name: "overflow and damaged", overflow: 100, damaged: true, encodesWant: 2, decWant: 2},
		{name: "failing", fail: true, logWant: "accelerator failed", encodesWant: 2, decWant: 2},
		{name: "wrong", wrong: true, logWant: "differ from the Go model", encodesWant: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			be := &fullBackend{refBackend: refBackend{m: m, fail: tc.fail}, memory: 1 << 20, wrong: tc.wrong, overflow: tc.overflow, damaged: tc.damaged}
			c := NewLMCMAccel(m, ModelID(m.ID()), 1<<20, Accel{Backend: be, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
			for round := range 2 {
				got, err := c.EncodeBatch(ctx, srcs)
				if err != nil {
					t.Fatal(err)
				}
				for i := range srcs {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("round %d block %d: payload differs from the CPU's", round, i)
					}
				}
				dec, err := c.DecodeBatch(ctx, got, lens)
				if err != nil {
					t.Fatal(err)
				}
				for i := range srcs {
					if !bytes.Equal(dec[i], srcs[i]) {
						t.Fatalf("round %d block %d decoded wrong", round, i)
					}
				}
			}
			if be.encodes != tc.encodesWant || be.decodes != tc.decWant {
				t.Fatalf("backend called for %d encodes and %d decodes, want %d and %d", be.encodes, be.decodes, tc.encodesWant, tc.decWant)
			}
			if tc.logWant == "" && logBuf.Len() > 0 || tc.logWant != "" && !strings.Contains(logBuf.String(), tc.logWant) {
				t.Fatalf("log:\n%s\nwant %q", logBuf.String(), tc.logWant)
			}
			// A damaged payload is an error naming its block.
			bad := append([][]byte(nil), want...)
			bad[3] = bad[3][:len(bad[3])/2]
			if _, err := c.DecodeBatch(ctx, bad, lens); err == nil || !strings.Contains(err.Error(), "block 3 ") {
				t.Fatalf("truncated payload of block 3: %v", err)
			}
		})
	}
}
