package gpu_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/gpu"
	"github.com/lmfs/lmfs/predictor/lm"
)

// TestTinyVectors checks the library against the test vectors that the
// Python integer simulation (predictor/train) computed with the tiny lstm1
// model of predictor/lm/testdata: the SHA-256 of the tables of every
// position of each input, and the whole first table. All inputs are scored
// in one batch (blocks of different lengths in flight together); the table
// after the last byte comes from the library's streams.
func TestTinyVectors(t *testing.T) {
	dir := filepath.Join(repoRoot(), "predictor", "lm")
	checkVectors(t, filepath.Join(dir, "testdata", "tiny_lstm.lmm"), filepath.Join(dir, "testdata", "vectors_lstm_tiny.json"))
}

// TestDefaultVectors does the same with the built-in model and the vectors
// of its architecture (vectors_lstm2.json for an lstm2 default,
// vectors_lstm.json for an lstm1 one), and with the retired lstm1 model m2d
// and vectors_lstm.json (on a GPU only: the emulation is too slow for these
// models).
func TestDefaultVectors(t *testing.T) {
	if !onGPU() {
		t.Skip("needs a GPU: set " + gpu.EnvLib)
	}
	dir := filepath.Join(repoRoot(), "predictor", "lm")
	def, err := lm.Default()
	if err != nil {
		t.Fatal(err)
	}
	vectors := map[int]string{lm.ArchLSTM1: "vectors_lstm.json", lm.ArchLSTM2: "vectors_lstm2.json"}
	cases := []struct{ name, model, vectors string }{
		{"default", filepath.Join(dir, "default.lmm"), vectors[def.Arch()]},
		{"m2d", filepath.Join(dir, "retired", "lstm1-m2d-a4a5c97e.lmm"), "vectors_lstm.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.vectors == "" {
				t.Fatalf("no vectors for the default model's architecture %d", def.Arch())
			}
			checkVectors(t, c.model, filepath.Join(dir, "testdata", c.vectors))
		})
	}
}

func checkVectors(t *testing.T, modelPath, vectorPath string) {
	l := testLib(t)
	model, err := os.ReadFile(modelPath)
	if err != nil {
		t.Skipf("no model: %v", err)
	}
	raw, err := os.ReadFile(vectorPath)
	if err != nil {
		t.Skipf("no vectors: %v", err)
	}
	var v struct {
		ModelSHA256 string `json:"model_sha256"`
		Cases       []struct {
			Name        string   `json:"name"`
			Input       string   `json:"input"`
			Positions   int      `json:"positions"`
			FreqsSHA256 string   `json:"freqs_sha256"`
			First       []uint32 `json:"first"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(model); hex.EncodeToString(sum[:]) != v.ModelSHA256 {
		t.Fatalf("model hashes to %x, the vectors were made with %s", sum, v.ModelSHA256)
	}
	m := openModel(t, l, model)
	ctx := context.Background()
	var inputs [][]byte
	for _, c := range v.Cases {
		in, err := base64.StdEncoding.DecodeString(c.Input)
		if err != nil {
			t.Fatal(err)
		}
		if c.Positions != len(in)+1 {
			t.Fatalf("%s: %d positions for %d bytes", c.Name, c.Positions, len(in))
		}
		inputs = append(inputs, in)
	}
	tabs, err := m.Tables(ctx, inputs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Streams(ctx, len(inputs))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Push every input's bytes, all streams advancing together while they
	// have bytes left.
	for pos := 0; ; pos++ {
		var ids []int
		var syms []byte
		for i, in := range inputs {
			if pos < len(in) {
				ids, syms = append(ids, i), append(syms, in[pos])
			}
		}
		if len(ids) == 0 {
			break
		}
		if err := st.Push(ids, syms); err != nil {
			t.Fatal(err)
		}
	}
	all := make([]int, len(inputs))
	for i := range all {
		all[i] = i
	}
	last := make([]predictor.Dist, len(inputs))
	if err := st.Predict(ctx, all, last); err != nil {
		t.Fatal(err)
	}
	for i, c := range v.Cases {
		first := last[i]
		if len(inputs[i]) > 0 {
			first = tabs[i][0]
		}
		for k := range first {
			if first[k] != c.First[k] {
				t.Fatalf("%s: position 0, byte %d: frequency %d, Python says %d", c.Name, k, first[k], c.First[k])
			}
		}
		h := sha256.New()
		var buf [4 * 256]byte
		put := func(d *predictor.Dist) {
			for k, f := range d {
				binary.LittleEndian.PutUint32(buf[4*k:], f)
			}
			h.Write(buf[:])
		}
		for p := range tabs[i] {
			put(&tabs[i][p])
		}
		put(&last[i])
		if got := hex.EncodeToString(h.Sum(nil)); got != c.FreqsSHA256 {
			t.Errorf("%s: tables of %d positions hash to %s, Python's to %s", c.Name, c.Positions, got, c.FreqsSHA256)
		}
	}
}
