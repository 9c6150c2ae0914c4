package lm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/lm/lmtest"
)

type vectorFile struct {
	ModelSHA256 string `json:"model_sha256"`
	TotalBits   int    `json:"total_bits"`
	Cases       []struct {
		Name        string   `json:"name"`
		Input       string   `json:"input"`
		Positions   int      `json:"positions"`
		FreqsSHA256 string   `json:"freqs_sha256"`
		First       []uint32 `json:"first"`
		Bits        float64  `json:"bits"`
	} `json:"cases"`
}

func loadVectors(t *testing.T, path string) vectorFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// wmlp1File returns the first default model (architecture wmlp1), kept so
// that blocks coded with it stay readable and its code stays tested.
func wmlp1File(t testing.TB) []byte {
	t.Helper()
	file, err := os.ReadFile("testdata/wmlp1.lmm")
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// wmlp1Model loads wmlp1File.
func wmlp1Model(t testing.TB) *Model {
	t.Helper()
	m, err := Load(wmlp1File(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestVectors checks the Go reference against the frequency tables that the
// Python integer simulation (predictor/train/train.py) computed with the
// wmlp1 model: the tables of every position must be identical.
func TestVectors(t *testing.T) {
	checkVectors(t, wmlp1Model(t), loadVectors(t, "testdata/vectors.json"), "train.py export")
}

// TestVectorsDefault checks the built-in model (lstm1 or lstm2) against the
// tables that IntLSTM (predictor/train/lstm.py) computed when it exported
// the model on the GPU machine: vectors_lstm.json for an lstm1 default,
// vectors_lstm2.json for an lstm2 one.
func TestVectorsDefault(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	switch m.Arch() {
	case ArchLSTM1:
		checkVectors(t, m, loadVectors(t, "testdata/vectors_lstm.json"), "lstm.py export")
	case ArchLSTM2:
		checkVectors(t, m, loadVectors(t, "testdata/vectors_lstm2.json"), "lstm.py export")
	default:
		t.Fatalf("the default model has architecture %d, want lstm1 or lstm2", m.Arch())
	}
}

// TestVectorsLSTM checks the lstm1 code, on every matrix-vector kernel of
// this build, against the tables that the Python integer simulation IntLSTM
// (predictor/train/lstm.py) computed with the small model
// testdata/tiny_lstm.lmm.
func TestVectorsLSTM(t *testing.T) {
	file, err := os.ReadFile("testdata/tiny_lstm.lmm")
	if err != nil {
		t.Fatal(err)
	}
	v := loadVectors(t, "testdata/vectors_lstm_tiny.json")
	for _, k := range kernels() {
		t.Run(k.name, func(t *testing.T) {
			m, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			if m.Config().Arch != ArchLSTM1 {
				t.Fatalf("tiny_lstm.lmm has architecture %d", m.Config().Arch)
			}
			m.lstm.useKernel(&k)
			checkVectors(t, m, v, "lstm.py")
		})
	}
}

// TestVectorsLSTM2 checks the lstm2 code (the match model included), on
// every matrix-vector kernel of this build, against the tables that IntLSTM
// (predictor/train/lstm.py, with the features of match.c) computed with the
// small model testdata/tiny_lstm2.lmm. It is skipped while those files are
// not in the tree.
func TestVectorsLSTM2(t *testing.T) {
	file, err := os.ReadFile("testdata/tiny_lstm2.lmm")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("testdata/tiny_lstm2.lmm is not in the tree yet (lstm.py exports it with vectors_lstm2_tiny.json)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("testdata/vectors_lstm2_tiny.json"); errors.Is(err, os.ErrNotExist) {
		t.Skip("testdata/vectors_lstm2_tiny.json is not in the tree yet (lstm.py writes it with tiny_lstm2.lmm)")
	}
	v := loadVectors(t, "testdata/vectors_lstm2_tiny.json")
	for _, k := range kernels() {
		t.Run(k.name, func(t *testing.T) {
			m, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			if m.Arch() != ArchLSTM2 {
				t.Fatalf("tiny_lstm2.lmm has architecture %d", m.Arch())
			}
			m.lstm.useKernel(&k)
			checkVectors(t, m, v, "lstm.py")
		})
	}
}

// checkVectors recomputes the tables of every case of v with m (regen names
// the tool that makes the vector file).
func checkVectors(t *testing.T, m *Model, v vectorFile, regen string) {
	id := m.ID()
	if got := hex.EncodeToString(id[:]); got != v.ModelSHA256 {
		t.Fatalf("the model is %s, the vectors were made with %s: regenerate them with %s", got, v.ModelSHA256, regen)
	}
	if 1<<v.TotalBits != predictor.FreqTotal {
		t.Fatalf("vectors use total 2^%d, predictor.FreqTotal is %d", v.TotalBits, predictor.FreqTotal)
	}
	if len(v.Cases) < 5 {
		t.Fatalf("only %d cases in the vector file", len(v.Cases))
	}
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			in, err := base64.StdEncoding.DecodeString(c.Input)
			if err != nil {
				t.Fatal(err)
			}
			if c.Positions != len(in)+1 {
				t.Fatalf("case has %d positions for %d bytes", c.Positions, len(in))
			}
			// Score covers positions 0..len-1; the table after the last byte
			// comes from a stream, which also checks Streams against Score.
			h := sha256.New()
			var buf [4 * 256]byte
			var bits float64
			put := func(d *predictor.Dist) {
				for i, f := range d {
					binary.LittleEndian.PutUint32(buf[4*i:], f)
				}
				h.Write(buf[:])
			}
			n := 0
			err = m.Score(context.Background(), [][]byte{in}, func(b, pos int, d *predictor.Dist) error {
				if err := d.Check(); err != nil {
					t.Fatalf("position %d: %v", pos, err)
				}
				if pos == 0 {
					for i := range d {
						if d[i] != c.First[i] {
							t.Fatalf("position 0, byte %d: frequency %d, Python says %d", i, d[i], c.First[i])
						}
					}
				}
				bits += 16 - math.Log2(float64(d[in[pos]]))
				put(d)
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s, err := m.Streams(context.Background(), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			dst := make([]predictor.Dist, 1)
			for i := range in {
				if err := s.Push([]int{0}, in[i:i+1]); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Predict(context.Background(), []int{0}, dst); err != nil {
				t.Fatal(err)
			}
			if len(in) == 0 {
				for i := range dst[0] {
					if dst[0][i] != c.First[i] {
						t.Fatalf("empty input, byte %d: frequency %d, Python says %d", i, dst[0][i], c.First[i])
					}
				}
			}
			put(&dst[0])
			if got := hex.EncodeToString(h.Sum(nil)); got != c.FreqsSHA256 {
				t.Errorf("tables of %d positions hash to %s, Python's to %s", n+1, got, c.FreqsSHA256)
			}
			if math.Abs(bits-c.Bits) > 1e-6*math.Max(1, c.Bits) {
				t.Errorf("cost %.6f bits, Python says %.6f", bits, c.Bits)
			}
		})
	}
}

// TestStreamsMatchScore decodes several blocks stepwise, interleaved, and
// checks each table against Score's.
func TestStreamsMatchScore(t *testing.T) {
	m := wmlp1Model(t)
	blocks := [][]byte{
		[]byte("The quick brown fox jumps over the lazy dog. "),
		[]byte("func f(x int) int { return x * 2 }\n"),
		{0, 1, 2, 3, 255, 254, 253, 128, 127},
		[]byte("z"),
	}
	want := map[[2]int]predictor.Dist{}
	if err := m.Score(context.Background(), blocks, func(b, pos int, d *predictor.Dist) error {
		want[[2]int{b, pos}] = *d
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s, err := m.Streams(context.Background(), len(blocks))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for pos := 0; ; pos++ {
		var ids []int
		var syms []byte
		for b, blk := range blocks {
			if pos < len(blk) {
				ids = append(ids, b)
				syms = append(syms, blk[pos])
			}
		}
		if len(ids) == 0 {
			break
		}
		dst := make([]predictor.Dist, len(ids))
		if err := s.Predict(context.Background(), ids, dst); err != nil {
			t.Fatal(err)
		}
		for i, b := range ids {
			if dst[i] != want[[2]int{b, pos}] {
				t.Fatalf("block %d position %d: stream table differs from Score's", b, pos)
			}
		}
		if err := s.Push(ids, syms); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Predict(context.Background(), []int{len(blocks)}, make([]predictor.Dist, 1)); err == nil {
		t.Error("Predict on a stream that does not exist gave no error")
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	good := wmlp1File(t)
	if _, err := Load(good); err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic", mut(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"version", mut(func(b []byte) []byte { b[8] = 9; return b })},
		{"arch", mut(func(b []byte) []byte { b[12] = 9; return b })},
		{"window", mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 1000); return b })},
		{"truncated", good[:len(good)/2]},
		{"no end marker", good[:len(good)-1]},
		{"trailing bytes", append(append([]byte(nil), good...), 0)},
		{"exp grows", mut(func(b []byte) []byte {
			// the last exp entry (before the end marker) made larger than its predecessor
			binary.LittleEndian.PutUint32(b[len(b)-8-4:], 1<<24)
			return b
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.data)
			if !errors.Is(err, ErrBadModel) {
				t.Fatalf("Load gave %v, want an error wrapping ErrBadModel", err)
			}
		})
	}
}

// FuzzLoad grafts fuzzed bytes over the start of a good model file of
// either architecture (lstm selects a small lstm1 file, else the default
// wmlp1 model, testdata/wmlp1.lmm): Load must give an error or a working model, never a panic.
func FuzzLoad(f *testing.F) {
	good := wmlp1File(f)
	goodLSTM := lmtest.RandomLSTM(1, 2, 16).Encode()
	f.Add(false, good[:200])
	f.Add(false, []byte(fileMagic))
	f.Add(true, goodLSTM[:200])
	f.Add(true, goodLSTM[:40])
	// The inputs overwrite the start of a valid file. One working copy of
	// each base is kept and its start restored after every input, so that an
	// input does not copy the 10.7 MB wmlp1 file (Load does not modify it, and
	// each model is dropped before the next input).
	work := map[bool][]byte{false: bytes.Clone(good), true: bytes.Clone(goodLSTM)}
	f.Fuzz(func(t *testing.T, lstm bool, data []byte) {
		base, b := good, work[lstm]
		if lstm {
			base = goodLSTM
		}
		n := copy(b, data)
		defer copy(b[:n], base[:n])
		m, err := Load(b)
		if err != nil {
			if !errors.Is(err, ErrBadModel) {
				t.Fatalf("error %v does not wrap ErrBadModel", err)
			}
			return
		}
		err = m.Score(context.Background(), [][]byte{[]byte("abc\x00\xff")}, func(_, _ int, d *predictor.Dist) error {
			return d.Check()
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkPredict measures the tables per second on one core for the
// default model, or for the model file named by $LMFS_LM_MODEL (to compare
// sizes).
func BenchmarkPredict(b *testing.B) {
	m, err := Default()
	if path := os.Getenv("LMFS_LM_MODEL"); path != "" {
		var data []byte
		if data, err = os.ReadFile(path); err == nil {
			m, err = Load(data)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	text, err := os.ReadFile("SPEC.md")
	if err != nil {
		b.Fatal(err)
	}
	text = text[:min(len(text), 4096)]
	b.SetBytes(int64(len(text)))
	b.ReportMetric(float64(m.MACs()), "MACs/byte")
	for b.Loop() {
		if err := m.Score(context.Background(), [][]byte{text}, func(_, _ int, _ *predictor.Dist) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
