package mount

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// fsxConfig drives runFSX: a randomized sequence of file operations applied to
// the same file in two directories (the filesystem under test and a plain
// reference directory), in the style of xfstests' fsx.
type fsxConfig struct {
	Ops     int   // number of operations
	MaxLen  int64 // largest file size the ops aim for
	MaxIO   int   // largest single write/read
	Seed    uint64
	Handles int // open handles per side, used in turn (exercises shared state)
}

// fsxSide is one directory's view of the file.
type fsxSide struct {
	path    string
	handles []*os.File
}

func (s *fsxSide) open(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatalf("open %s: %v", s.path, err)
		}
		s.handles = append(s.handles, f)
	}
}

func (s *fsxSide) closeAll(t *testing.T) {
	t.Helper()
	for _, f := range s.handles {
		if err := f.Close(); err != nil {
			t.Fatalf("close %s: %v", s.path, err)
		}
	}
	s.handles = nil
}

// runFSX runs cfg.Ops random operations on dir/name and ref/name and fails
// at the first difference, printing the operation log tail.
func runFSX(t *testing.T, dir, ref string, cfg fsxConfig) {
	t.Helper()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	a := &fsxSide{path: filepath.Join(dir, "fsx.dat")}
	b := &fsxSide{path: filepath.Join(ref, "fsx.dat")}
	a.open(t, cfg.Handles)
	b.open(t, cfg.Handles)
	defer func() { a.closeAll(t); b.closeAll(t) }()

	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		start := max(0, len(log)-20)
		t.Fatalf("fsx seed %d op %d: %s\nlast ops:\n%s", cfg.Seed, len(log), fmt.Sprintf(format, args...), joinLines(log[start:]))
	}
	size := int64(0)
	buf := make([]byte, cfg.MaxIO)
	for op := 0; op < cfg.Ops; op++ {
		h := rng.IntN(cfg.Handles)
		fa, fb := a.handles[h], b.handles[h]
		switch k := rng.IntN(100); {
		case k < 40: // write, sometimes past EOF to make holes
			off := rng.Int64N(cfg.MaxLen)
			if rng.IntN(4) == 0 && size > 0 {
				off = size // append
			}
			n := 1 + rng.IntN(cfg.MaxIO)
			data := buf[:n]
			fillPattern(rng, data)
			log = append(log, fmt.Sprintf("write h%d off=%d len=%d", h, off, n))
			if _, err := fa.WriteAt(data, off); err != nil {
				fail("write: %v", err)
			}
			if _, err := fb.WriteAt(data, off); err != nil {
				fail("ref write: %v", err)
			}
			size = max(size, off+int64(n))
		case k < 70: // read and compare
			off := rng.Int64N(size + 1)
			n := 1 + rng.IntN(cfg.MaxIO)
			log = append(log, fmt.Sprintf("read h%d off=%d len=%d", h, off, n))
			ga, ea := readAt(fa, off, n)
			gb, eb := readAt(fb, off, n)
			if (ea == nil) != (eb == nil) {
				fail("read errors differ: %v vs ref %v", ea, eb)
			}
			if !bytes.Equal(ga, gb) {
				fail("read mismatch at %d: got %d bytes, ref %d bytes, first diff at %d", off, len(ga), len(gb), firstDiff(ga, gb))
			}
		case k < 80: // truncate through a handle or by path
			nsz := rng.Int64N(cfg.MaxLen)
			byPath := rng.IntN(2) == 0
			log = append(log, fmt.Sprintf("truncate h%d size=%d byPath=%v", h, nsz, byPath))
			var ea, eb error
			if byPath {
				ea, eb = os.Truncate(a.path, nsz), os.Truncate(b.path, nsz)
			} else {
				ea, eb = fa.Truncate(nsz), fb.Truncate(nsz)
			}
			if ea != nil || eb != nil {
				fail("truncate: %v / ref %v", ea, eb)
			}
			size = nsz
		case k < 88: // stat size through another handle
			log = append(log, fmt.Sprintf("fstat h%d", h))
			sa, ea := fa.Stat()
			sb, eb := fb.Stat()
			if ea != nil || eb != nil {
				fail("stat: %v / ref %v", ea, eb)
			}
			if sa.Size() != sb.Size() {
				fail("size %d, ref %d", sa.Size(), sb.Size())
			}
		case k < 93: // fsync
			log = append(log, fmt.Sprintf("fsync h%d", h))
			if err := fa.Sync(); err != nil {
				fail("fsync: %v", err)
			}
		case k < 97: // close everything and reopen
			log = append(log, "reopen")
			a.closeAll(t)
			b.closeAll(t)
			a.open(t, cfg.Handles)
			b.open(t, cfg.Handles)
		default: // whole-file compare through mmap
			log = append(log, "mmap compare")
			ma, ea := mmapRead(a.path)
			mb, eb := mmapRead(b.path)
			if ea != nil || eb != nil {
				fail("mmap: %v / ref %v", ea, eb)
			}
			if !bytes.Equal(ma, mb) {
				fail("mmap contents differ (len %d vs %d, first diff %d)", len(ma), len(mb), firstDiff(ma, mb))
			}
		}
	}
	// Final whole-file check.
	ga, _ := os.ReadFile(a.path)
	gb, _ := os.ReadFile(b.path)
	if !bytes.Equal(ga, gb) {
		fail("final contents differ (len %d vs %d, first diff %d)", len(ga), len(gb), firstDiff(ga, gb))
	}
}

// fillPattern fills b with data that is sometimes compressible (text-like or
// zeros) and sometimes random, so every codec path is exercised.
func fillPattern(rng *rand.Rand, b []byte) {
	switch rng.IntN(3) {
	case 0:
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	case 1:
		clear(b)
	default:
		const words = "lorem ipsum dolor sit amet consectetur adipiscing elit "
		o := rng.IntN(len(words))
		for i := range b {
			b[i] = words[(o+i)%len(words)]
		}
	}
}

func readAt(f *os.File, off int64, n int) ([]byte, error) {
	b := make([]byte, n)
	k, err := f.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return b[:k], err
}

func mmapRead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return []byte{}, nil
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	defer syscall.Munmap(m)
	return bytes.Clone(m), nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func joinLines(l []string) string {
	var s string
	for _, x := range l {
		s += "  " + x + "\n"
	}
	return s
}

// TestFSXHarnessPlain runs the harness on two plain directories: any failure
// there is a bug in the harness's own bookkeeping, not in lmfs.
func TestFSXHarnessPlain(t *testing.T) {
	runFSX(t, t.TempDir(), t.TempDir(), fsxConfig{Ops: 500, MaxLen: 300 << 10, MaxIO: 100 << 10, Seed: 1, Handles: 2})
}
