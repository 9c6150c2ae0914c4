package mount

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFsx applies the same random writes, truncates, reads, reopens and
// fsyncs to a file in the mount and to one in a plain directory, and
// compares them after every read and at the end, dropping the kernel's page
// cache of the mounted file now and then so that reads reach lmfs.
func TestFsx(t *testing.T) {
	_, mnt := mountT(t, "")
	ops := 4000
	if testing.Short() {
		ops = 500
	}
	const maxSize = 300 << 10
	mp, pp := filepath.Join(mnt, "fsx"), filepath.Join(t.TempDir(), "fsx")
	open := func() (*os.File, *os.File) {
		m, err := os.OpenFile(mp, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		p, err := os.OpenFile(pp, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		return m, p
	}
	m, p := open()
	defer func() { m.Close(); p.Close() }()
	rng := rand.New(rand.NewSource(42))
	size := int64(0)
	compare := func(op int, off int64, n int) {
		a, b := make([]byte, n), make([]byte, n)
		na, ea := m.ReadAt(a, off)
		nb, eb := p.ReadAt(b, off)
		if na != nb || (ea == nil) != (eb == nil) || !bytes.Equal(a[:na], b[:nb]) {
			i := 0
			for i < min(na, nb) && a[i] == b[i] {
				i++
			}
			t.Fatalf("op %d: read %d bytes at %d: lmfs gave %d bytes (%v), plain %d (%v); first difference at %d", op, n, off, na, ea, nb, eb, off+int64(i))
		}
	}
	for op := 0; op < ops; op++ {
		switch k := rng.Intn(100); {
		case k < 45: // write
			off := rng.Int63n(maxSize)
			n := 1 + rng.Intn(20000)
			buf := make([]byte, n)
			if rng.Intn(4) == 0 {
				// leave zeros: holes and all-zero blocks
			} else {
				rng.Read(buf)
			}
			if _, err := m.WriteAt(buf, off); err != nil {
				t.Fatalf("op %d: write: %v", op, err)
			}
			p.WriteAt(buf, off)
			size = max(size, off+int64(n))
		case k < 55: // truncate
			ns := rng.Int63n(maxSize)
			if rng.Intn(2) == 0 {
				if err := m.Truncate(ns); err != nil {
					t.Fatalf("op %d: ftruncate: %v", op, err)
				}
			} else if err := os.Truncate(mp, ns); err != nil {
				t.Fatalf("op %d: truncate by path: %v", op, err)
			}
			p.Truncate(ns)
			size = ns
		case k < 85: // read
			off := rng.Int63n(maxSize + 10000)
			compare(op, off, 1+rng.Intn(40000))
		case k < 90:
			m.Close()
			p.Close()
			m, p = open()
		case k < 95:
			if err := m.Sync(); err != nil {
				t.Fatalf("op %d: fsync: %v", op, err)
			}
		default:
			if err := unix.Fadvise(int(m.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				t.Fatalf("op %d: fadvise: %v", op, err)
			}
		}
		if fi, err := os.Stat(mp); err != nil || fi.Size() != size {
			t.Fatalf("op %d: stat size %d (%v), want %d", op, fi.Size(), err, size)
		}
	}
	unix.Fadvise(int(m.Fd()), 0, 0, unix.FADV_DONTNEED)
	compare(ops, 0, int(size)+1)
}
