package archive

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/lmfs/lmfs/coder"
)

// File gives random access to the blocks of a seekable lmfs compressed file
// through its index. It is safe for concurrent use if ra is.
type File struct {
	ra      io.ReaderAt
	bs      int
	t       trailer
	offsets []int64
}

// Open reads and checks the header, trailer and index of the size-byte file
// in ra. Blocks are checked when read.
func Open(ra io.ReaderAt, size int64) (*File, error) {
	h := make([]byte, HeaderSize)
	n, err := ra.ReadAt(h, 0)
	if n < HeaderSize && err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read compressed file: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: the input is empty", ErrNotArchive)
	}
	bs, err := parseFileHeader(h[:n])
	if err != nil {
		return nil, err
	}
	if size < EmptySize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the smallest file (%d)", ErrTruncated, size, EmptySize)
	}
	tb := make([]byte, TrailerSize)
	if err := readAt(ra, tb, size-TrailerSize); err != nil {
		return nil, err
	}
	t, err := parseTrailer(tb)
	if err != nil {
		return nil, err
	}
	idxLen := size - TrailerSize - t.indexOff - endMarkerSize
	if t.indexOff < HeaderSize || t.blocks > size/8 || idxLen != t.blocks*8 {
		return nil, fmt.Errorf("%w: trailer places %d index entries at offset %d in a file of %d bytes", ErrCorrupt, t.blocks, t.indexOff, size)
	}
	idx := make([]byte, endMarkerSize+idxLen+TrailerSize)
	if err := readAt(ra, idx, t.indexOff); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(idx) != 0 {
		return nil, fmt.Errorf("%w: no end-of-blocks marker at offset %d", ErrCorrupt, t.indexOff)
	}
	idx = idx[endMarkerSize:]
	if err := checkIndex(idx, t, bs); err != nil {
		return nil, err
	}
	f := &File{ra: ra, bs: bs, t: t, offsets: make([]int64, t.blocks)}
	next := int64(HeaderSize)
	for i := range f.offsets {
		o := int64(binary.LittleEndian.Uint64(idx[i*8:]))
		if o != next {
			return nil, fmt.Errorf("%w: index entry %d says offset %d, want %d", ErrCorrupt, i, o, next)
		}
		f.offsets[i] = o
		// The next frame starts after this one; its length is checked by
		// Record, here only that it can fit.
		end := t.indexOff
		if i+1 < len(f.offsets) {
			end = int64(binary.LittleEndian.Uint64(idx[(i+1)*8:]))
		}
		if l := end - o - frameHeaderSize; l < minRecordSize || l > int64(MaxRecordSize(bs)) {
			return nil, fmt.Errorf("%w: index gives block %d a record of %d bytes, want %d..%d", ErrCorrupt, i, l, minRecordSize, MaxRecordSize(bs))
		}
		next = end
	}
	if next != t.indexOff {
		return nil, fmt.Errorf("%w: blocks end at %d, trailer says %d", ErrCorrupt, next, t.indexOff)
	}
	return f, nil
}

func readAt(ra io.ReaderAt, b []byte, off int64) error {
	n, err := ra.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %d bytes missing at offset %d", ErrTruncated, len(b)-n, off+int64(n))
	}
	return fmt.Errorf("read compressed file at offset %d: %w", off, err)
}

// BlockSize returns the file's block size.
func (f *File) BlockSize() int { return f.bs }

// NumBlocks returns the number of blocks.
func (f *File) NumBlocks() int { return len(f.offsets) }

// RawSize returns the number of raw bytes the file holds.
func (f *File) RawSize() int64 { return f.t.rawLen }

// Record reads block i's record into buf (which may be nil) and checks its
// frame checksum and raw length.
func (f *File) Record(i int, buf []byte) (Frame, error) {
	if i < 0 || i >= len(f.offsets) {
		return Frame{}, fmt.Errorf("block %d out of range 0..%d", i, len(f.offsets)-1)
	}
	off := f.offsets[i]
	end := f.t.indexOff
	if i+1 < len(f.offsets) {
		end = f.offsets[i+1]
	}
	bad := func(err error) (Frame, error) { return Frame{}, &BlockError{Block: i, Offset: off, Err: err} }
	fr := make([]byte, frameHeaderSize)
	if err := readAt(f.ra, fr, off); err != nil {
		return bad(err)
	}
	n := int(end - off - frameHeaderSize)
	if l := int(binary.LittleEndian.Uint32(fr)); l != n {
		return bad(fmt.Errorf("%w: record length %d disagrees with the index (%d)", ErrCorrupt, l, n))
	}
	rec := buf[:0]
	if cap(rec) < n {
		rec = make([]byte, n)
	}
	rec = rec[:n]
	if err := readAt(f.ra, rec, off+frameHeaderSize); err != nil {
		return bad(err)
	}
	if stored, sum := binary.LittleEndian.Uint32(fr[4:]), frameCRC(fr[:4], rec); stored != sum {
		return bad(fmt.Errorf("%w: frame checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, stored, sum))
	}
	raw, err := recordRawLen(rec)
	if err != nil {
		return bad(err)
	}
	if want := blockRawLen(int64(i), f.t.rawLen, f.bs); raw != want {
		return bad(fmt.Errorf("%w: block of %d raw bytes, want %d", ErrCorrupt, raw, want))
	}
	return Frame{Block: i, Offset: off, RawLen: raw, Record: rec}, nil
}

// ReadBlock decodes block i with reg and appends its raw bytes to dst.
func (f *File) ReadBlock(ctx context.Context, reg *coder.Registry, i int, dst []byte) ([]byte, error) {
	fr, err := f.Record(i, nil)
	if err != nil {
		return dst, err
	}
	out, _, err := reg.Decode(ctx, dst, fr.Record)
	if err != nil {
		return dst, &BlockError{Block: i, Offset: fr.Offset, Err: err}
	}
	return out, nil
}
