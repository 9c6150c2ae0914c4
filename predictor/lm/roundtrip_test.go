package lm_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor/lm"
	"github.com/lmfs/lmfs/predictor/lm/lmtest"
)

// TestLSTMCodecsRoundTrip codes blocks through the lm and lm+cm codecs of
// package coder with an lstm1 and an lstm2 model and decodes them back.
func TestLSTMCodecsRoundTrip(t *testing.T) {
	for _, p := range []*lmtest.LSTM{lmtest.RandomLSTM(7, 2, 32), lmtest.RandomLSTM2(7, 2, 32)} {
		m, err := lm.Load(p.Encode())
		if err != nil {
			t.Fatal(err)
		}
		t.Run(map[int]string{lm.ArchLSTM1: "lstm1", lm.ArchLSTM2: "lstm2"}[m.Arch()], func(t *testing.T) {
			codecsRoundTrip(t, m)
		})
	}
}

func codecsRoundTrip(t *testing.T, m *lm.Model) {
	reg := coder.NewRegistry(coder.NewLM(m), coder.NewLMCM(m, 1<<20))
	rng := rand.New(rand.NewPCG(8, 9))
	bin := make([]byte, 1000)
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	inputs := map[string][]byte{
		"empty":  {},
		"one":    {'x'},
		"two":    {0, 255},
		"short":  []byte("abcabca"),
		"code":   []byte(strings.Repeat("func (s *server) handle(w http.ResponseWriter, r *http.Request) {\n\tif err := s.check(r); err != nil {\n\t\thttp.Error(w, err.Error(), 400)\n\t\treturn\n\t}\n}\n", 4)),
		"text":   []byte(strings.Repeat("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\r\n", 6)),
		"binary": bin,
		"zeros":  make([]byte, 700),
	}
	ctx := context.Background()
	for _, name := range []string{"lm", "lm+cm"} {
		c, err := reg.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for in, raw := range inputs {
			t.Run(name+"/"+in, func(t *testing.T) {
				rec, err := reg.EncodeWith(ctx, nil, c, raw)
				if err != nil {
					t.Fatal(err)
				}
				got, h, err := reg.Decode(ctx, nil, rec)
				if err != nil {
					t.Fatal(err)
				}
				if !h.HasModel || h.Model != coder.ModelID(m.ID()) {
					t.Fatalf("header model %v %x, want the LSTM's id", h.HasModel, h.Model)
				}
				if !bytes.Equal(got, raw) {
					t.Fatal("round trip mismatch")
				}
				// A damaged payload is an error or the right bytes, never a
				// panic or wrong bytes.
				if len(rec) > 0 {
					bad := bytes.Clone(rec)
					bad[len(bad)-1] ^= 0x55
					if got, _, err := reg.Decode(ctx, nil, bad); err == nil && !bytes.Equal(got, raw) {
						t.Fatal("a damaged block decoded to other bytes without an error")
					}
				}
			})
		}
	}
}
