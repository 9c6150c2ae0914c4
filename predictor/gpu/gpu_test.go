package gpu_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/predictor"
	"github.com/lmfs/lmfs/predictor/gpu"
)

var (
	libOnce sync.Once
	libVal  *gpu.Lib
	libErr  error
	libDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if libDir != "" {
		os.RemoveAll(libDir)
	}
	os.Exit(code)
}

// testLib returns the library under test: $LMFS_CUDA_LIB (the CUDA build, on
// a machine with a GPU: make test-gpu), else the CPU emulation of lstm1.cu
// built here with g++ (the same source with -DLMFS_EMU), else it skips.
func testLib(t testing.TB) *gpu.Lib {
	t.Helper()
	libOnce.Do(func() {
		if p := os.Getenv(gpu.EnvLib); p != "" {
			libVal, libErr = gpu.Load(p)
			return
		}
		gxx, err := exec.LookPath("g++")
		if err != nil {
			libErr = errors.New("skip: no g++ to build the CPU emulation of lstm1.cu and no " + gpu.EnvLib)
			return
		}
		libDir, err = os.MkdirTemp("", "lmfs-emu-")
		if err != nil {
			libErr = err
			return
		}
		out := filepath.Join(libDir, "liblmfs_emu.so")
		cmd := exec.Command(gxx, "-x", "c++", "-std=c++17", "-O1", "-DLMFS_EMU", "-shared", "-fPIC", "-o", out, "lstm1.cu")
		if msg, err := cmd.CombinedOutput(); err != nil {
			libErr = errors.New("building the emulation: " + err.Error() + "\n" + string(msg))
			return
		}
		libVal, libErr = gpu.Load(out)
	})
	if libErr != nil {
		if strings.HasPrefix(libErr.Error(), "skip: ") {
			t.Skip(libErr.Error()[6:])
		}
		t.Fatal(libErr)
	}
	return libVal
}

func onGPU() bool { return os.Getenv(gpu.EnvLib) != "" }

// testBlocks returns blocks of varied content and length (including empty
// and one-byte blocks), n bytes at most each.
func testBlocks(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	text := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. Ça va? 日本語 ", 1+n/60))
	bin := make([]byte, n)
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	return [][]byte{
		text[:n], {}, {'x'}, bin, make([]byte, n/2), text[3 : 3+n/3], []byte("a\r\nb\r\n"), bin[:n/5],
	}
}

func openModel(t testing.TB, l *gpu.Lib, data []byte) *gpu.Model {
	t.Helper()
	m, err := l.Open(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestTablesMatchSpec(t *testing.T) {
	l := testLib(t)
	for _, tc := range []struct {
		name string
		nl   int
		h    int
		hot  bool
		n    int
	}{
		{"nl1_h8", 1, 8, false, 300},
		{"nl2_h16", 2, 16, false, 300},
		{"nl3_h24_hot", 3, 24, true, 200},
		{"nl2_h64_hot", 2, 64, true, 120},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, ref := genModel(uint64(tc.h*10+tc.nl), tc.nl, tc.h, tc.hot)
			m := openModel(t, l, data)
			blocks := testBlocks(tc.n)
			got, err := m.Tables(context.Background(), blocks)
			if err != nil {
				t.Fatal(err)
			}
			probs, err := m.PathProbs(context.Background(), blocks)
			if err != nil {
				t.Fatal(err)
			}
			checked := 0
			err = ref.Score(context.Background(), blocks, func(b, pos int, d *predictor.Dist) error {
				if got[b][pos] != *d {
					for v := range d {
						if got[b][pos][v] != d[v] {
							t.Fatalf("block %d position %d: frequency of byte %d is %d on the library, %d in the spec", b, pos, v, got[b][pos][v], d[v])
						}
					}
				}
				want := symbolPath(d, blocks[b][pos])
				if [8]uint16(probs[b][8*pos:8*pos+8]) != want {
					t.Fatalf("block %d position %d: path probabilities %v, spec %v", b, pos, probs[b][8*pos:8*pos+8], want)
				}
				checked++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if checked == 0 {
				t.Fatal("nothing compared")
			}
		})
	}
}

func TestDecodeLM(t *testing.T) {
	l := testLib(t)
	data, ref := genModel(5, 2, 16, false)
	m := openModel(t, l, data)
	blocks := testBlocks(400)
	streams, err := coder.EncodeBytes(context.Background(), ref, blocks)
	if err != nil {
		t.Fatal(err)
	}
	lens := lensOf(blocks)
	got, err := m.DecodeLM(context.Background(), streams, lens)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blocks {
		if !bytes.Equal(got[i], blocks[i]) {
			t.Fatalf("block %d decoded wrong", i)
		}
	}
	// A damaged stream is reported, not decoded to wrong bytes silently.
	for _, damage := range []struct {
		name string
		f    func([]byte) []byte
	}{
		{"truncated", func(s []byte) []byte { return s[:len(s)/2] }},
		{"extended", func(s []byte) []byte { return append(append([]byte(nil), s...), 1, 2, 3) }},
	} {
		bad := append([][]byte(nil), streams...)
		bad[0] = damage.f(streams[0])
		_, err := m.DecodeLM(context.Background(), bad, lens)
		if !errors.Is(err, gpu.ErrBadStream) {
			t.Errorf("%s stream: error %v, want ErrBadStream", damage.name, err)
		}
	}
}

func TestStreams(t *testing.T) {
	l := testLib(t)
	data, ref := genModel(9, 2, 16, false)
	m := openModel(t, l, data)
	blocks := testBlocks(150)
	streams, err := coder.EncodeBytes(context.Background(), ref, blocks)
	if err != nil {
		t.Fatal(err)
	}
	lens := lensOf(blocks)
	got, err := coder.DecodeBytes(context.Background(), m, streams, lens)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blocks {
		if !bytes.Equal(got[i], blocks[i]) {
			t.Fatalf("block %d decoded wrong through the library's streams", i)
		}
	}
	// The reverse direction: encoded with the library's tables, decoded by the spec.
	enc, err := coder.EncodeBytes(context.Background(), m, blocks)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		if !bytes.Equal(enc[i], streams[i]) {
			t.Fatalf("block %d: the library's tables code differently from the spec's", i)
		}
	}
}

func TestOpenRejectsBadModels(t *testing.T) {
	l := testLib(t)
	good, _ := genModel(1, 1, 8, false)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not a model", []byte("hello world, not a model file at all"), "magic"},
		{"truncated", good[:len(good)-100], "truncated"},
		{"trailing", append(append([]byte(nil), good...), 0), "unexpected bytes"},
		{"wmlp1", append([]byte("LMFSLM\x00\x01\x01\x00\x00\x00\x01\x00\x00\x00"), make([]byte, 64)...), "architecture 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.Open(tc.data, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	l := testLib(t)
	data, _ := genModel(3, 1, 8, false)
	m := openModel(t, l, data)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.PathProbs(ctx, [][]byte{[]byte("abc")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PathProbs with a cancelled context: %v", err)
	}
}

func TestLoadFailures(t *testing.T) {
	dir := t.TempDir()
	notLib := filepath.Join(dir, "liblmfs_cuda.so")
	if err := os.WriteFile(notLib, []byte("this is not an ELF shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		libc = ""
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.so"), "no such file"},
		{"not a library", notLib, "not a loadable shared library"},
		{"no symbols", libc, "has no symbol lmfs_cuda_abi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path == "" {
				t.Skip("no libc.so.6 at a known path")
			}
			_, err := gpu.Load(tc.path)
			if !errors.Is(err, gpu.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load(%s): %v, want ErrUnavailable with %q", tc.path, err, tc.want)
			}
		})
	}
}

// lensOf returns the length of every block.
func lensOf(blocks [][]byte) []int {
	lens := make([]int, len(blocks))
	for i, b := range blocks {
		lens[i] = len(b)
	}
	return lens
}
