package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/coder/archive"
	"github.com/lmfs/lmfs/predictor/lm"
)

// sample is text with a random stretch, so that zstd and raw blocks mix.
func sample(n int) []byte {
	rng := rand.New(rand.NewPCG(11, uint64(n)))
	var b bytes.Buffer
	for b.Len() < n {
		if b.Len()%50000 < 300 {
			b.WriteByte(byte(rng.Uint32()))
			continue
		}
		b.WriteString("lmfs compresses every block on its own. ")
	}
	return b.Bytes()[:n]
}

func TestCompressDecompressFiles(t *testing.T) {
	dir := t.TempDir()
	raw := sample(300_001)
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		flags []string
		codec string // expected in the -v summary
	}{
		{"default policy (balanced picks cm for text)", nil, "cm"},
		{"policy fast", []string{"--policy", "fast"}, "zstd"},
		{"codec raw", []string{"--codec", "raw"}, "raw"},
		{"codec zstd odd block", []string{"--codec", "zstd", "--block-size", "12345"}, "zstd"},
		{"tiny blocks", []string{"--block-size", "1000", "--workers", "3"}, "cm"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			z := filepath.Join(dir, "z"+string(rune('a'+i)))
			out := z + ".out"
			args := append([]string{"compress", "-v"}, tc.flags...)
			code, _, errs := runCLI(t, "", append(args, in, z)...)
			if code != 0 {
				t.Fatalf("compress exit %d: %s", code, errs)
			}
			if !strings.Contains(errs, "300001 -> ") || !strings.Contains(errs, tc.codec) {
				t.Errorf("summary %q lacks sizes or codec %s", errs, tc.codec)
			}
			code, _, errs = runCLI(t, "", "decompress", z, out)
			if code != 0 {
				t.Fatalf("decompress exit %d: %s", code, errs)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Fatalf("round trip mismatch: %d bytes back", len(got))
			}
		})
	}
}

func TestCompressStdinStdout(t *testing.T) {
	for _, n := range []int{0, 1, 65535, 65536, 65537, 200_000} {
		raw := string(sample(n))
		code, z, errs := runCLI(t, raw, "compress", "--block-size", "64KiB", "-", "-")
		if code != 0 {
			t.Fatalf("n=%d: compress exit %d: %s", n, code, errs)
		}
		if errs != "" {
			t.Errorf("n=%d: unexpected stderr %q (no progress bar off a terminal)", n, errs)
		}
		code, out, errs := runCLI(t, z, "decompress", "-", "-")
		if code != 0 {
			t.Fatalf("n=%d: decompress exit %d: %s", n, code, errs)
		}
		if out != raw {
			t.Fatalf("n=%d: round trip mismatch: %d bytes back", n, len(out))
		}
	}
}

func TestCompressBadArguments(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.WriteFile(in, []byte("hello"), 0o644)
	exists := filepath.Join(dir, "exists")
	os.WriteFile(exists, []byte("keep me"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no args", []string{"compress"}, "accepts 2 arg"},
		{"unknown codec", []string{"compress", "--codec", "nope", in, filepath.Join(dir, "o1")}, `unknown codec "nope"`},
		{"codec and policy", []string{"compress", "--codec", "zstd", "--policy", "max", in, filepath.Join(dir, "o2")}, "not both"},
		{"bad policy", []string{"compress", "--policy", "slow", in, filepath.Join(dir, "o3")}, "codec.policy"},
		{"block size 0", []string{"compress", "--block-size", "0", in, filepath.Join(dir, "o4")}, "--block-size 0"},
		{"block size too big", []string{"compress", "--block-size", "32MiB", in, filepath.Join(dir, "o5")}, "16MiB"},
		{"block size garbage", []string{"compress", "--block-size", "big", in, filepath.Join(dir, "o6")}, "not a size"},
		{"missing input", []string{"compress", filepath.Join(dir, "nope"), filepath.Join(dir, "o7")}, "no such file"},
		{"input is dir", []string{"compress", dir, filepath.Join(dir, "o8")}, "is a directory"},
		{"output exists", []string{"compress", in, exists}, "--force"},
		{"same file", []string{"compress", "-f", exists, exists}, "same file"},
		{"decompress not an archive", []string{"decompress", in, filepath.Join(dir, "o9")}, "not an lmfs compressed file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, "", tc.args...)
			if code == 0 {
				t.Fatal("exit 0")
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q lacks %q", errs, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep me" {
		t.Errorf("existing output was changed: %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "o*"))
	tmp, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left)+len(tmp) > 0 {
		t.Errorf("failed commands left files: %v %v", left, tmp)
	}
}

func TestDecompressCorrupt(t *testing.T) {
	dir := t.TempDir()
	raw := sample(5 * 4096)
	in, z, out := filepath.Join(dir, "in"), filepath.Join(dir, "z"), filepath.Join(dir, "out")
	os.WriteFile(in, raw, 0o644)
	if code, _, errs := runCLI(t, "", "compress", "--codec", "raw", "--block-size", "4096", in, z); code != 0 {
		t.Fatalf("compress: %s", errs)
	}
	file, _ := os.ReadFile(z)
	// Frames of the raw codec are 8 (frame) + 8 (record header with a 2-byte
	// varint) + 4096 bytes, after the 20-byte file header.
	off := 20 + 3*(8+8+4096)
	bad := bytes.Clone(file)
	bad[off+500] ^= 0x40
	os.WriteFile(z, bad, 0o644)
	code, _, errs := runCLI(t, "", "decompress", z, out)
	if code == 0 {
		t.Fatal("corrupt file decompressed with exit 0")
	}
	if want := "block 3 (file offset " + strconv.Itoa(off) + ")"; !strings.Contains(errs, want) {
		t.Errorf("stderr %q does not name %q", errs, want)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output file created despite the error")
	}
	// Through stdout the blocks before the bad one come out, then the error.
	code, stdout, errs := runCLI(t, string(bad), "decompress", "-", "-")
	if code == 0 || !strings.Contains(errs, "block 3") || stdout != string(raw[:3*4096]) {
		t.Fatalf("stdout: exit %d, %d bytes, stderr %q", code, len(stdout), errs)
	}
	code, _, errs = runCLI(t, string(file[:len(file)-10]), "decompress", "-", "-")
	if code == 0 || !strings.Contains(errs, "truncated") {
		t.Fatalf("truncated: exit %d, stderr %q", code, errs)
	}
}

func TestOutputKeepsInputMode(t *testing.T) {
	dir := t.TempDir()
	in, z, out := filepath.Join(dir, "in"), filepath.Join(dir, "z"), filepath.Join(dir, "out")
	os.WriteFile(in, sample(1000), 0o600)
	os.Chmod(in, 0o640)
	if code, _, errs := runCLI(t, "", "compress", in, z); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := runCLI(t, "", "decompress", z, out); code != 0 {
		t.Fatal(errs)
	}
	for _, p := range []string{z, out} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s has mode %v, want the input's 0640", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// TestDecompressWithModel: a file coded with an LM model the binary does not
// embed (here the tiny test model) is refused with a message naming
// --model, and decodes with --model FILE.
func TestDecompressWithModel(t *testing.T) {
	dir := t.TempDir()
	modelPath := filepath.Join("..", "..", "predictor", "lm", "testdata", "tiny_lstm.lmm")
	file, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lm.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	reg := coder.NewRegistry(coder.NewLM(m))
	enc, err := coder.NewFixed(reg, "lm")
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(strings.Repeat("an archive coded with a model lmfs does not embed. ", 40))
	var z bytes.Buffer
	if _, err := archive.Compress(context.Background(), &z, bytes.NewReader(raw), enc, archive.Options{BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	zpath, out := filepath.Join(dir, "z"), filepath.Join(dir, "out")
	os.WriteFile(zpath, z.Bytes(), 0o644)
	code, _, errs := runCLI(t, "", "decompress", zpath, out)
	if code == 0 || !strings.Contains(errs, "--model FILE") {
		t.Fatalf("without --model: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI(t, "", "decompress", "--model", modelPath, zpath, out)
	if code != 0 {
		t.Fatalf("with --model: exit %d, stderr %q", code, errs)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, raw) {
		t.Fatal("decoded bytes differ from the input")
	}
	code, _, errs = runCLI(t, "", "decompress", "-f", "--model", zpath, zpath, out)
	if code == 0 || !strings.Contains(errs, "--model "+zpath) {
		t.Fatalf("a file that is not a model: exit %d, stderr %q", code, errs)
	}
}
