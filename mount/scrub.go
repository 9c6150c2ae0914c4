package mount

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ScrubProblem is a part of a mounted lmfs filesystem that could not be read.
type ScrubProblem struct {
	// Path is the file's path inside the mount ("/dir/file").
	Path string
	// Offset and Len give the unreadable byte range; Offset is -1 when the
	// entry itself could not be opened, listed or read.
	Offset, Len int64
	// Err is the error the read returned (EIO for a damaged block).
	Err error
}

// String formats the problem for a report line.
func (p ScrubProblem) String() string {
	if p.Offset < 0 {
		return fmt.Sprintf("%s: %v", p.Path, p.Err)
	}
	return fmt.Sprintf("%s bytes %d-%d: %v", p.Path, p.Offset, p.Offset+p.Len-1, p.Err)
}

// ScrubReport is the result of Scrub.
type ScrubReport struct {
	Files, Dirs, Symlinks uint64
	Bytes                 uint64 // file bytes read successfully
	Problems              []ScrubProblem
}

// scrubChunk is how much Scrub reads at once; a failing chunk is read again
// one block at a time to pin the damage down.
const scrubChunk = 1 << 20

// Scrub reads every directory, symlink and file of the lmfs filesystem
// mounted at mountpoint, so that the daemon decodes and CRC-checks every
// stored block, and reports the ranges that fail (by path and byte offset).
// It works while the store is mounted (the daemon holds the store). Before
// reading a file it asks the kernel to drop its cached pages, so the data
// comes from the daemon; blocks the daemon holds in its own decoded-block
// cache were checked when they were decoded.
func Scrub(ctx context.Context, mountpoint string) (*ScrubReport, error) {
	mountpoint, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	if _, ok := storeOf(mountpoint); !ok {
		return nil, fmt.Errorf("%s is not an lmfs mount (see /proc/self/mountinfo); for an unmounted store run lmfs fsck --store DIR", mountpoint)
	}
	r := &ScrubReport{}
	rel := func(p string) string {
		s, err := filepath.Rel(mountpoint, p)
		if err != nil || s == "." {
			return "/"
		}
		return "/" + s
	}
	err = filepath.WalkDir(mountpoint, func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			r.Problems = append(r.Problems, ScrubProblem{Path: rel(p), Offset: -1, Err: err})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			r.Dirs++
		case d.Type()&fs.ModeSymlink != 0:
			r.Symlinks++
			if _, err := os.Readlink(p); err != nil {
				r.Problems = append(r.Problems, ScrubProblem{Path: rel(p), Offset: -1, Err: err})
			}
		case d.Type().IsRegular():
			r.Files++
			n, probs := scrubFile(ctx, p)
			r.Bytes += n
			for _, pr := range probs {
				pr.Path = rel(p)
				r.Problems = append(r.Problems, pr)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ctx.Err()) {
		return r, fmt.Errorf("scrub %s: %w", mountpoint, err)
	}
	return r, err
}

// scrubFile reads the file at p and returns the bytes read and the ranges
// that failed, with adjacent failing blocks merged.
func scrubFile(ctx context.Context, p string) (uint64, []ScrubProblem) {
	f, err := os.Open(p)
	if err != nil {
		return 0, []ScrubProblem{{Offset: -1, Err: err}}
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return 0, []ScrubProblem{{Offset: -1, Err: err}}
	}
	dropPageCache(f)
	bs := int64(st.Blksize)
	if bs <= 0 || bs > scrubChunk {
		bs = 4096
	}
	var probs []ScrubProblem
	bad := func(off, n int64, err error) {
		if k := len(probs); k > 0 && probs[k-1].Offset+probs[k-1].Len == off && probs[k-1].Err.Error() == err.Error() {
			probs[k-1].Len += n
			return
		}
		probs = append(probs, ScrubProblem{Offset: off, Len: n, Err: err})
	}
	var good uint64
	buf := make([]byte, scrubChunk)
	for off := int64(0); off < st.Size; off += scrubChunk {
		if ctx.Err() != nil {
			break
		}
		n := min(scrubChunk, st.Size-off)
		k, err := f.ReadAt(buf[:n], off)
		if err == nil || (errors.Is(err, io.EOF) && int64(k) == n) {
			good += uint64(k)
			continue
		}
		// Read the chunk again block by block to find the damaged ones.
		for b := off; b < off+n; b += bs {
			m := min(bs, off+n-b)
			k, err := f.ReadAt(buf[:m], b)
			switch {
			case err == nil, errors.Is(err, io.EOF) && int64(k) == m:
				good += uint64(k)
			case errors.Is(err, io.EOF):
				good += uint64(k) // the file shrank meanwhile
			default:
				bad(b, m, err)
			}
		}
	}
	return good, probs
}

// dropPageCache asks the kernel to forget f's cached pages
// (posix_fadvise POSIX_FADV_DONTNEED), so reads reach the filesystem.
func dropPageCache(f *os.File) {
	const fadvDontneed = 4
	_, _, _ = syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontneed, 0, 0)
}
