package bench

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/coder"
)

func testRegistry(t testing.TB) *coder.Registry {
	t.Helper()
	o := coder.DefaultOptions()
	o.NoLM = true // the format and the harness do not depend on the codec; the LM codes ~15 KB/s
	reg, err := coder.NewStandard(o)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func text(n int) []byte {
	rng := rand.New(rand.NewPCG(3, uint64(n)))
	words := []string{"alpha ", "beta ", "gamma ", "delta\n", "epsilon ", "zeta, "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func TestMeasure(t *testing.T) {
	reg := testRegistry(t)
	ms, err := Standard(reg, 1000, []string{"raw", "zstd", "policy:fast", "zstd-3", "zstd-19", "xz-9"})
	if err != nil {
		t.Fatal(err)
	}
	raw := text(5555)
	// A chunk smaller than the input makes Measure work in several chunks.
	res, err := Measure(context.Background(), bytes.NewReader(raw), ms, Options{BlockSize: 1000, Workers: 2, ChunkBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Result{}
	for _, r := range res {
		byName[r.Method] = r
		if r.RawBytes != 5555 || r.Blocks != 6 {
			t.Errorf("%s: %d bytes in %d blocks, want 5555 in 6", r.Method, r.RawBytes, r.Blocks)
		}
		if r.EncCPU <= 0 || r.DecCPU <= 0 || r.EncWall <= 0 || r.DecWall <= 0 {
			t.Errorf("%s: times not measured: %+v", r.Method, r)
		}
		if got := r.BitsPerByte(); got != float64(r.CompBytes)*8/5555 {
			t.Errorf("%s: bits per byte %v for %d bytes", r.Method, got, r.CompBytes)
		}
	}
	wantRaw := int64(5*coder.RawRecordSize(1000) + coder.RawRecordSize(555))
	if got := byName["raw"].CompBytes; got != wantRaw {
		t.Errorf("raw: %d compressed bytes, want %d", got, wantRaw)
	}
	for _, n := range []string{"zstd", "zstd-3", "zstd-19", "xz-9"} {
		if c := byName[n].CompBytes; c <= 0 || c >= 5555 {
			t.Errorf("%s: %d bytes for 5555 bytes of repetitive text", n, c)
		}
	}
	if u := byName["policy:fast"].CodecUse; u["zstd"] != 6 {
		t.Errorf("policy:fast codec use %v, want zstd on all 6 blocks", u)
	}
	// Starting from another method changes the order, not whose result is
	// whose.
	res2, err := Measure(context.Background(), bytes.NewReader(raw), ms, Options{BlockSize: 1000, Workers: 1, FirstMethod: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res2 {
		if r.Method != res[i].Method || r.CompBytes != res[i].CompBytes {
			t.Errorf("with FirstMethod 4, result %d is %s with %d bytes, want %s with %d", i, r.Method, r.CompBytes, res[i].Method, res[i].CompBytes)
		}
	}
}

func TestMeasureCatchesWrongDecode(t *testing.T) {
	reg := testRegistry(t)
	m, err := Codec(reg, "raw")
	if err != nil {
		t.Fatal(err)
	}
	dec := m.Decode
	m.Decode = func(ctx context.Context, dst, enc []byte, n int) ([]byte, error) {
		out, err := dec(ctx, dst, enc, n)
		if err == nil && n > 10 {
			out[len(out)-1] ^= 1
		}
		return out, err
	}
	_, err = Measure(context.Background(), bytes.NewReader(text(3000)), []Method{m}, Options{BlockSize: 1024})
	if err == nil || !strings.Contains(err.Error(), "different bytes") {
		t.Fatalf("wrong decode not caught: %v", err)
	}
}

func TestStandardNames(t *testing.T) {
	reg := testRegistry(t)
	all, err := Standard(reg, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range all {
		names = append(names, m.Name)
	}
	want := append(reg.Names(), "policy:fast", "policy:balanced", "policy:max", "zstd-3", "zstd-19", "xz-9")
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("methods %v, want %v", names, want)
	}
	if _, err := Standard(reg, 4096, []string{"zstd", "bogus"}); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("unknown method: %v", err)
	}
}

func writeCorpus(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"a.txt":        text(3000),
		"b.c":          text(1500),
		"sub/c.log":    text(700),
		"d.bin":        bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 250}, 100),
		"unlisted":     text(10),
		".hidden":      text(10),
		".git/ignored": text(10),
		ManifestName:   []byte("name\tbytes\tsha256\tkind\nsub/c.log\t700\tx\tlog\na.txt\t3000\tx\ttext\nb.c\t1500\tx\tcode\nd.bin\t800\tx\tbinary\ngone.txt\t1\tx\ttext\n"),
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCollectAndTotals(t *testing.T) {
	dir := writeCorpus(t)
	ins, err := Collect([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range ins {
		got = append(got, in.Name+"="+in.Kind)
	}
	want := "a.txt=text,b.c=code,d.bin=binary,sub/c.log=log,unlisted="
	if strings.Join(got, ",") != want {
		t.Fatalf("collected %v, want %s", got, want)
	}
	reg := testRegistry(t)
	ms, _ := Standard(reg, 512, []string{"raw", "zstd"})
	rep, err := Run(context.Background(), ins, ms, Options{BlockSize: 512, Workers: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]Group{}
	var order []string
	for _, g := range rep.Totals {
		groups[g.Name] = g
		order = append(order, g.Name)
	}
	if strings.Join(order, ",") != "kind:binary,kind:code,kind:log,kind:text,text-like,all" {
		t.Errorf("groups %v", order)
	}
	if g := groups["text-like"]; g.Files != 3 || g.Results[0].RawBytes != 3000+1500+700 {
		t.Errorf("text-like: %d files, %d bytes", g.Files, g.Results[0].RawBytes)
	}
	if g := groups["all"]; g.Files != 5 || g.Results[1].RawBytes != 3000+1500+700+800+10 {
		t.Errorf("all: %d files, %d bytes", g.Files, g.Results[1].RawBytes)
	}
}

func TestReadManifestErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":     "",
		"no kind":   "name\tbytes\na\t1\n",
		"short row": "name\tkind\nonly-name\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadManifest(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRunBatchAcrossFiles: a method that codes in batches (as the GPU codecs
// do) gets the blocks of every file in one call, and each file's sizes come
// out exactly as when its blocks are coded one by one.
func TestRunBatchAcrossFiles(t *testing.T) {
	reg := testRegistry(t)
	ms, err := Standard(reg, 1000, []string{"cm"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := reg.ByName("cm")
	if err != nil {
		t.Fatal(err)
	}
	batch := ms[0]
	batch.Name = "cm-batched"
	var calls []int // blocks per call; the first call is Run's untimed warm-up
	batch.EncodeBatch = func(ctx context.Context, raws [][]byte) ([][]byte, error) {
		calls = append(calls, len(raws))
		return reg.EncodeBatchWith(ctx, c, raws)
	}
	batch.DecodeBatch = func(ctx context.Context, encs [][]byte, _ []int) ([][]byte, error) {
		return reg.DecodeBatch(ctx, encs)
	}
	dir := t.TempDir()
	var ins []Input
	for i, n := range []int{2500, 0, 999, 4001} {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, text(n+i), 0o644); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, Input{Name: filepath.Base(p), Path: p, Kind: "text"})
	}
	rep, err := Run(context.Background(), ins, []Method{ms[0], batch}, Options{BlockSize: 1000, Workers: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[1] != 3+1+2+5 {
		t.Errorf("batch method called with %v blocks, want a warm-up and then one call with all 11", calls)
	}
	for _, f := range rep.Files {
		one, all := f.Results[0], f.Results[1]
		if one.Method != "cm" || all.Method != "cm-batched" {
			t.Fatalf("%s: results in the wrong order: %s, %s", f.Name, one.Method, all.Method)
		}
		if one.RawBytes != all.RawBytes || one.CompBytes != all.CompBytes || one.Blocks != all.Blocks {
			t.Errorf("%s: one by one %d -> %d in %d blocks, batched %d -> %d in %d", f.Name,
				one.RawBytes, one.CompBytes, one.Blocks, all.RawBytes, all.CompBytes, all.Blocks)
		}
		if all.RawBytes > 0 && (all.EncWall <= 0 || all.DecWall <= 0) {
			t.Errorf("%s: batched times not shared out: %+v", f.Name, all)
		}
	}
}

// TestStandardSkipsSuperseded: the default method list leaves out the
// superseded lm+cm codecs (ids 5 and 6), which still decode and can still be
// named.
func TestStandardSkipsSuperseded(t *testing.T) {
	reg, err := coder.NewStandard(coder.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	all, err := Standard(reg, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range all {
		got[m.Name] = true
	}
	for n, want := range map[string]bool{"lm": true, "lm+cm": true, "cm": true, "lm+cm.1": false, "lm+cm.2": false} {
		if got[n] != want {
			t.Errorf("default methods include %s: %v, want %v", n, got[n], want)
		}
	}
	named, err := Standard(reg, 4096, []string{"lm+cm.2"})
	if err != nil || len(named) != 1 || named[0].Name != "lm+cm.2" {
		t.Errorf("naming a superseded codec: %v, %v", named, err)
	}
}
