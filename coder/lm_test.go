package coder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/lm"
)

// defaultModel is the built-in LM, or the test stops.
func defaultModel(t testing.TB) *lm.Model {
	t.Helper()
	m, err := lm.Default()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func lmInputs(t testing.TB) map[string][]byte {
	t.Helper()
	code, err := os.ReadFile("bytecodec.go")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	bin := make([]byte, 3000)
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	text := []byte(strings.Repeat("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\r\n", 12))
	if testing.Short() {
		code = code[:2000]
	}
	return map[string][]byte{
		"empty":  {},
		"one":    {'x'},
		"two":    {0, 255},
		"text":   text,
		"code":   code,
		"binary": bin,
		"zeros":  make([]byte, 1500),
	}
}

func TestLMCodecsRoundTrip(t *testing.T) {
	m := defaultModel(t)
	reg := NewRegistry(NewLM(m), NewLMCM(m, 1<<20), NewLMCM2(m, 1<<20), NewLMCM1(m, 1<<20))
	ctx := context.Background()
	for _, name := range []string{"lm", "lm+cm", "lm+cm.2", "lm+cm.1"} {
		c, err := reg.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for in, raw := range lmInputs(t) {
			t.Run(name+"/"+in, func(t *testing.T) {
				rec, err := reg.EncodeWith(ctx, nil, c, raw)
				if err != nil {
					t.Fatal(err)
				}
				got, h, err := reg.Decode(ctx, nil, rec)
				if err != nil {
					t.Fatal(err)
				}
				if !h.HasModel || h.Model != ModelID(m.ID()) {
					t.Fatalf("header model %v %x, want the LM's id", h.HasModel, h.Model)
				}
				if !bytes.Equal(got, raw) {
					t.Fatal("round trip mismatch")
				}
				if in == "text" && len(rec) > len(raw)/3 {
					t.Errorf("%s codes repetitive English in %d bytes of %d: the model does not work", name, len(rec), len(raw))
				}
			})
		}
	}
}

func TestLMUnknownModel(t *testing.T) {
	m := defaultModel(t)
	ctx := context.Background()
	full := NewRegistry(NewLM(m), NewLMCM(m, 1<<20), NewLMCM1(m, 1<<20))
	bare := NewRegistry() // knows no model
	for _, name := range []string{"lm", "lm+cm", "lm+cm.1"} {
		c, _ := full.ByName(name)
		rec, err := full.EncodeWith(ctx, nil, c, []byte("hello, world"))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = bare.Decode(ctx, nil, rec)
		if err == nil || !strings.Contains(err.Error(), "needs model") {
			t.Fatalf("%s block decoded by a registry without its model: err %v", name, err)
		}
		// A damaged payload is an error, never a panic or wrong bytes.
		bad := append([]byte(nil), rec...)
		bad[len(bad)-1] ^= 0x55
		if got, _, err := full.Decode(ctx, nil, bad); err == nil && string(got) != "hello, world" {
			t.Fatalf("%s: damaged block decoded to %q without error", name, got)
		}
	}
}

func TestLMModelFileWithBadHash(t *testing.T) {
	m := defaultModel(t)
	file := lm.DefaultFile()
	if _, err := lm.LoadVerified(file, m.ID()); err != nil {
		t.Fatal(err)
	}
	file[len(file)/2] ^= 1
	_, err := lm.LoadVerified(file, m.ID())
	if !errors.Is(err, lm.ErrBadModel) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a model file with a bad hash gave %v", err)
	}
}

func FuzzLMDecode(f *testing.F) {
	m, err := lm.Default()
	if err != nil {
		f.Fatal(err)
	}
	reg := NewRegistry(NewLM(m), NewLMCM(m, 1<<16), NewLMCM2(m, 1<<16), NewLMCM1(m, 1<<16))
	ctx := context.Background()
	for _, name := range []string{"lm", "lm+cm", "lm+cm.2", "lm+cm.1"} {
		c, _ := reg.ByName(name)
		rec, _ := reg.EncodeWith(ctx, nil, c, []byte("some text to code, some text"))
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		// Bound the work per input: a fuzzed header may claim a block of
		// megabytes, which the LM would decode (slowly) until the payload runs out.
		if h, err := ParseHeader(rec, reg.UsesModel); err != nil || h.RawLen > 4096 {
			return
		}
		got, h, err := reg.Decode(ctx, nil, rec)
		if err != nil {
			return
		}
		if len(got) != h.RawLen || Checksum(got) != h.CRC {
			t.Fatalf("decoded without error but length/CRC disagree")
		}
	})
}

func TestStandardHasLMCodecs(t *testing.T) {
	reg, err := NewStandard(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"lm", "lm+cm", "lm+cm.2", "lm+cm.1"} {
		c, err := reg.ByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Model(); !ok {
			t.Errorf("%s carries no model id", n)
		}
	}
	o := DefaultOptions()
	o.NoLM = true
	reg, err = NewStandard(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.ByName("lm"); err == nil {
		t.Error("NoLM registry has lm")
	}
}

// BenchmarkLMCodecs measures one core's encode and decode speed of lm and
// lm+cm on 16 KiB of Go source.
func BenchmarkLMCodecs(b *testing.B) {
	m, err := lm.Default()
	if err != nil {
		b.Fatal(err)
	}
	src, err := os.ReadFile("lmcm.go")
	if err != nil {
		b.Fatal(err)
	}
	for len(src) < 16<<10 {
		src = append(src, src...)
	}
	src = src[:16<<10]
	ctx := context.Background()
	for _, c := range []Codec{NewLM(m), NewLMCM(m, 64<<20), NewLMCM2(m, 64<<20), NewLMCM1(m, 64<<20), NewCM(64 << 20)} {
		payload, err := c.Encode(ctx, nil, src)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.Name()+"/encode", func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if _, err := c.Encode(ctx, nil, src); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.Name()+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if _, err := c.Decode(ctx, nil, payload, len(src)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(8*float64(len(payload))/float64(len(src)), "bits/byte")
		})
	}
}

// TestLMGolden pins the payloads of lm and lm+cm for a fixed input with the
// built-in model (lstm2), with the retired built-in models (lstm1) and with the first built-in model (wmlp1, kept in
// predictor/lm/testdata so its blocks stay readable): any change to the LM
// arithmetic, the mixer or cm shows up here and needs a new codec id (or, for
// a new model, a new model id).
func TestLMGolden(t *testing.T) {
	def := defaultModel(t)
	file, err := os.ReadFile("../predictor/lm/testdata/wmlp1.lmm")
	if err != nil {
		t.Fatal(err)
	}
	old, err := lm.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	prevFile, ok := lm.BuiltinFile(retiredM2)
	if !ok {
		t.Fatal("the retired default model (lstm1 m2 e63f60a7) is not built in")
	}
	prev, err := lm.Load(prevFile)
	if err != nil {
		t.Fatal(err)
	}
	m2dFile, ok := lm.BuiltinFile(retiredM2D)
	if !ok {
		t.Fatal("the retired default model (lstm1 m2d a4a5c97e) is not built in")
	}
	m2d, err := lm.Load(m2dFile)
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("Golden test input: the lmfs LM codes this sentence, twice. The lmfs LM codes this sentence, twice.\n")
	for _, tc := range []struct {
		name   string
		m      *lm.Model
		golden map[string]string
	}{
		{"lstm2 default", def, map[string]string{"lm": lmGolden, "lm+cm.1": lmcm1Golden, "lm+cm.2": lmcm2Golden, "lm+cm": lmcmGolden}},
		{"lstm1 retired m2d", m2d, map[string]string{"lm": lmGoldenM2D, "lm+cm.1": lmcm1GoldenM2D, "lm+cm.2": lmcm2GoldenM2D, "lm+cm": lmcmGoldenM2D}},
		{"lstm1 retired m2", prev, map[string]string{"lm": lmGoldenM2, "lm+cm.1": lmcm1GoldenM2, "lm+cm.2": lmcm2GoldenM2, "lm+cm": lmcmGoldenM2}},
		{"wmlp1", old, map[string]string{"lm": lmGoldenWMLP1, "lm+cm.1": lmcm1GoldenWMLP1, "lm+cm.2": lmcm2GoldenWMLP1, "lm+cm": lmcmGoldenWMLP1}},
	} {
		for _, c := range []Codec{NewLM(tc.m), NewLMCM1(tc.m, 64<<20), NewLMCM2(tc.m, 64<<20), NewLMCM(tc.m, 64<<20)} {
			p, err := c.Encode(context.Background(), nil, src)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%x", sha256.Sum256(p)); got != tc.golden[c.Name()] {
				t.Errorf("%s, %s payload (%d bytes) hashes to %s, golden %s", tc.name, c.Name(), len(p), got, tc.golden[c.Name()])
			}
			back, err := c.Decode(context.Background(), nil, p, len(src))
			if err != nil || !bytes.Equal(back, src) {
				t.Errorf("%s, %s: the golden payload does not decode back (%v)", tc.name, c.Name(), err)
			}
		}
	}
}

// retiredM2D is the model id of session 3's default model (lstm1 m2d),
// retired into predictor/lm/retired.
var retiredM2D = [32]byte{0xa4, 0xa5, 0xc9, 0x7e, 0xd5, 0x51, 0x8f, 0xe8, 0xbf, 0xd9, 0xb6, 0xd8, 0x2d, 0xe8, 0xd3, 0x76, 0x30, 0x16, 0x89, 0x45, 0x22, 0xd9, 0x86, 0xc4, 0x02, 0x43, 0x12, 0x77, 0x9f, 0x68, 0x7a, 0x5d}

// retiredM2 is the model id of session 2's default model, retired too.
var retiredM2 = [32]byte{0xe6, 0x3f, 0x60, 0xa7, 0xb4, 0x7b, 0x9f, 0xbb, 0x59, 0x9b, 0xb3, 0x8e, 0x5d, 0x43, 0xd4, 0x31, 0x0a, 0x21, 0x6c, 0x19, 0x5d, 0xe3, 0xe5, 0x11, 0xda, 0x68, 0x16, 0x5c, 0x28, 0x12, 0x6b, 0xc6}

const (
	lmGolden         = "5ee8035a0666d260225fca51cab49deff1fcbddf410619bab1e62b1c07820c05"
	lmcm1Golden      = "a16baeb564701146a5fd4d56417033683294693f5dc90c4a7e936adaa5b84cfb"
	lmcm2Golden      = "7bbaf05935fec29c74b6db48a57c77fdb929873fea287a8dc9d99b3ad1263066"
	lmcmGolden       = "e72d416c7709d2985d538cc345e89b4de34b7e91ae8dc90ada91470e66d71145"
	lmGoldenM2D      = "b9181b05c40633390d9b79ce2709fd5168f98c12d3e36b1cd2507c7a0d441bcc"
	lmcm1GoldenM2D   = "9d40954b5cfb68f36c9a7313cc1264a5f62eafeed017035ecd8c8bfe2abe4350"
	lmGoldenM2       = "8b14b693d94184e5655f89663eb9a9136b079faf1bdf7e0081ea69c5c347a651"
	lmcm1GoldenM2    = "ebcd7a6af13d2a65757f449df9229c950d23f8abcd11b9b2ca61ecb9088e5153"
	lmGoldenWMLP1    = "7ed368575a9b3bcee436cb05e816d4b49917e45d586f19ec34d7cf90b08d408f"
	lmcm1GoldenWMLP1 = "ee56d81cf35a55bfb7f50f41f3c58385fd216ea2c4cde488af5dd17570401d5c"
	lmcm2GoldenM2D   = "e9372a112dd00fffcb9a16bbd1b27b31f1e62946aeff8ff71675e7f8ecfc386f"
	lmcm2GoldenM2    = "8c36815543d0e943eeda4a7f9fcc222795bc854b133f562dcbe7a30645f826b9"
	lmcm2GoldenWMLP1 = "45bc5b12309f0faa2e24c87a6fc01527c336b8e2ca3c5c9fdc77fabffbbfc14c"
	lmcmGoldenM2D    = "46150670fee1b05aab75be9757aa9588b98bcbacb0c80c49fd960d3fd50f7e50"
	lmcmGoldenM2     = "d8eab1c1937cf9d744ca8470d323d65402ddf734eb649857a09f30c5765a888b"
	lmcmGoldenWMLP1  = "0776ca52542dfc34bfe6c5f16d875b84fd148e24611f5fa812cad37f4d4b15d2"
)

// TestRetiredModel: a block coded with a retired built-in model decodes with
// a standard registry without any model file, and registering another model
// (as a store's copy or `lmfs decompress --model` does) leaves encoding on the
// built-in default.
func TestRetiredModel(t *testing.T) {
	ctx := context.Background()
	prevFile, ok := lm.BuiltinFile(retiredM2)
	if !ok {
		t.Fatal("retired model not built in")
	}
	prev, err := lm.Load(prevFile)
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("A block written by an earlier lmfs, with the model it shipped.\n")
	old := NewRegistry(NewLMCM(prev, 64<<20))
	rec, err := old.EncodeWith(ctx, nil, NewLMCM(prev, 64<<20), src)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Device = "cpu"
	reg, err := NewStandard(o)
	if err != nil {
		t.Fatal(err)
	}
	if reg.HasModel(retiredM2) {
		t.Fatal("the retired model is loaded before any block needs it")
	}
	got, h, err := reg.Decode(ctx, nil, rec)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("decode with the retired model: %v (got %q)", err, got)
	}
	if h.Model != ModelID(retiredM2) {
		t.Fatalf("header names model %s", h.Model.Short())
	}
	// Another model registered for decoding does not take over encoding.
	if err := reg.RegisterModel(ModelID(retiredM2), prevFile, 64<<20); err != nil {
		t.Fatal(err)
	}
	def := defaultModel(t)
	for _, name := range []string{"lm", "lm+cm"} {
		c, err := reg.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := c.Model(); m != ModelID(def.ID()) {
			t.Errorf("%s encodes with model %s, not the built-in default %s", name, m.Short(), ModelID(def.ID()).Short())
		}
	}
	// An unknown model still gets the precise error.
	bad := bytes.Clone(rec)
	h2, err := ParseHeader(bad, reg.UsesModel)
	if err != nil {
		t.Fatal(err)
	}
	copy(bad[h2.Size-32:h2.Size], make([]byte, 32))
	if _, _, err := reg.Decode(ctx, nil, bad); err == nil || !strings.Contains(err.Error(), "--model") {
		t.Fatalf("unknown model: %v", err)
	}
}

// BenchmarkLMCMMixing measures cm and the mixer of lm+cm (id 7), lm+cm.2
// (id 6) and lm+cm.1 (id 5) without the LM: the LM's bit probabilities of 32 KiB of Go
// source are computed once and the blocks are coded from them, as with an
// accelerator. cm alone is the baseline.
func BenchmarkLMCMMixing(b *testing.B) {
	m, err := lm.Default()
	if err != nil {
		b.Fatal(err)
	}
	var src []byte
	for _, f := range []string{"lmcm.go", "accel.go", "arith.go", "choose.go"} {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		src = append(src, d...)
	}
	src = src[:min(len(src), 32<<10)]
	probs := make([]uint16, 0, 8*len(src))
	var cum [257]uint32
	err = m.Score(context.Background(), [][]byte{src}, func(_, pos int, d *predictor.Dist) error {
		if err := cumulate(d, &cum); err != nil {
			return err
		}
		probs = probs[:8*pos+8]
		pathProbs(&cum, src[pos], probs[8*pos:])
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cmc := NewCM(64 << 20)
	b.Run("cm", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			if _, err := cmc.Encode(ctx, nil, src); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []*LMCM{NewLMCM(m, 64<<20), NewLMCM2(m, 64<<20), NewLMCM1(m, 64<<20)} {
		b.Run(c.Name(), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			var out []byte
			for b.Loop() {
				if out, err = c.encodeProbs(nil, src, probs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(8*float64(len(out))/float64(len(src)), "bits/byte")
		})
	}
}

// TestMaxUsesLMCM7: policy max tries lm+cm (id 7), not the superseded
// lm+cm.2 and lm+cm.1, which still decode and can be picked by name.
func TestMaxUsesLMCM7(t *testing.T) {
	o := DefaultOptions()
	o.Device = "cpu"
	reg, err := NewStandard(o)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := NewChooser(reg, PolicyMax)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Join(ch.Codecs(), ",")
	if !slices.Contains(ch.Codecs(), "lm+cm") || slices.Contains(ch.Codecs(), "lm+cm.1") || slices.Contains(ch.Codecs(), "lm+cm.2") {
		t.Fatalf("policy max uses %s: want lm+cm and not lm+cm.1 or lm+cm.2", names)
	}
	for name, id := range map[string]ID{"lm+cm": IDLMCM, "lm+cm.2": IDLMCM2, "lm+cm.1": IDLMCM1} {
		c, err := reg.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if c.ID() != id || reg.NameOf(id) != name {
			t.Errorf("%s has id %d (NameOf(%d) = %s)", name, c.ID(), id, reg.NameOf(id))
		}
	}
}

// TestLMCMTruncated: a truncated lm+cm payload (either id), or one with a
// bad parameter byte, is an ErrCorrupt error. (Flipped bits are caught by the
// block record's CRC: TestLMUnknownModel.)
func TestLMCMTruncated(t *testing.T) {
	m := defaultModel(t)
	ctx := context.Background()
	src := []byte(strings.Repeat("Truncated payloads must fail cleanly. ", 20))
	for _, c := range []Codec{NewLMCM(m, 1<<20), NewLMCM2(m, 1<<20), NewLMCM1(m, 1<<20)} {
		p, err := c.Encode(ctx, nil, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 2, len(p) / 2, len(p) - 1} {
			_, err := c.Decode(ctx, nil, p[:n], len(src))
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s payload cut to %d of %d bytes: err %v, want ErrCorrupt", c.Name(), n, len(p), err)
			}
		}
		bad := bytes.Clone(p)
		bad[0] = 40 // cm's parameter byte out of range
		if _, err := c.Decode(ctx, nil, bad, len(src)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s with a bad parameter byte: err %v, want ErrCorrupt", c.Name(), err)
		}
	}
}
