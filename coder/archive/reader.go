package archive

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Frame is one block record as read from a file.
type Frame struct {
	// Block is the block number, from 0.
	Block int
	// Offset is the file offset of the block's frame.
	Offset int64
	// RawLen is the number of raw bytes the record decodes to.
	RawLen int
	// Record is the block record (header and payload), to be decoded with
	// coder.Registry.Decode.
	Record []byte
}

// Reader reads an lmfs compressed file from a stream and validates its
// structure: header, frame checksums, block lengths, index and trailer, and
// that nothing follows the trailer. Decoding the records (and checking their
// CRC32C) is the caller's part. It holds 8 bytes per block for the index.
type Reader struct {
	r       *bufio.Reader
	bs      int
	off     int64
	offsets []int64
	rawLen  int64
	short   bool
	err     error // sticky: io.EOF once the trailer was validated
}

// NewReader reads and checks the file header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var h [HeaderSize]byte
	n, err := io.ReadFull(br, h[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read compressed file: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: the input is empty", ErrNotArchive)
	}
	bs, err := parseFileHeader(h[:n])
	if err != nil {
		return nil, err
	}
	return &Reader{r: br, bs: bs, off: HeaderSize}, nil
}

// BlockSize returns the file's block size.
func (r *Reader) BlockSize() int { return r.bs }

// RawSize returns the raw bytes in the blocks read so far.
func (r *Reader) RawSize() int64 { return r.rawLen }

// Offset returns the number of file bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }

// readN reads exactly n bytes into buf[:0], growing it as data arrives so that
// a damaged length cannot make it allocate more than the input holds.
func (r *Reader) readN(buf []byte, n int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < n {
		chunk := min(n-len(buf), 1<<20)
		buf = slices.Grow(buf, chunk)
		m, err := io.ReadFull(r.r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+m]
		r.off += int64(m)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return buf, ErrTruncated
			}
			return buf, fmt.Errorf("read compressed file: %w", err)
		}
	}
	return buf, nil
}

// Next returns the next block record, read into buf (which may be nil). After
// the last block it validates the index and trailer and returns io.EOF. Any
// other error is final; errors about one block are *BlockError.
func (r *Reader) Next(buf []byte) (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	f, err := r.next(buf)
	if err != nil {
		r.err = err
	}
	return f, err
}

func (r *Reader) next(buf []byte) (Frame, error) {
	blk, off := len(r.offsets), r.off
	bad := func(err error) error { return &BlockError{Block: blk, Offset: off, Err: err} }
	var fh [frameHeaderSize]byte
	if _, err := r.readN(fh[:0], 4); err != nil {
		if errors.Is(err, ErrTruncated) {
			return Frame{}, fmt.Errorf("%w: it ends at offset %d, where block %d or the end of the blocks should start", ErrTruncated, r.off, blk)
		}
		return Frame{}, err
	}
	n := int(binary.LittleEndian.Uint32(fh[:4]))
	if n == 0 {
		return Frame{}, r.finish(off)
	}
	if n < minRecordSize || n > MaxRecordSize(r.bs) {
		return Frame{}, bad(fmt.Errorf("%w: record length %d out of range %d..%d", ErrCorrupt, n, minRecordSize, MaxRecordSize(r.bs)))
	}
	if _, err := r.readN(fh[4:4], 4); err != nil {
		return Frame{}, bad(err)
	}
	rec, err := r.readN(buf, n)
	if err != nil {
		return Frame{}, bad(fmt.Errorf("%w: the record of %d bytes is cut off after %d", err, n, len(rec)))
	}
	if stored, sum := binary.LittleEndian.Uint32(fh[4:]), frameCRC(fh[:4], rec); stored != sum {
		return Frame{}, bad(fmt.Errorf("%w: frame checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, stored, sum))
	}
	raw, err := recordRawLen(rec)
	if err != nil {
		return Frame{}, bad(err)
	}
	switch {
	case r.short:
		return Frame{}, bad(fmt.Errorf("%w: a block follows a short block (only the last may be shorter than %d bytes)", ErrCorrupt, r.bs))
	case raw == 0 || raw > r.bs:
		return Frame{}, bad(fmt.Errorf("%w: block of %d raw bytes, want 1..%d", ErrCorrupt, raw, r.bs))
	}
	r.short = raw < r.bs
	r.offsets = append(r.offsets, off)
	r.rawLen += int64(raw)
	return Frame{Block: blk, Offset: off, RawLen: raw, Record: rec}, nil
}

// finish reads and checks the index and trailer after the end marker at
// endOff, and that the input ends there.
func (r *Reader) finish(endOff int64) error {
	idx, err := r.readN(nil, len(r.offsets)*8+TrailerSize)
	if err != nil {
		if errors.Is(err, ErrTruncated) {
			return fmt.Errorf("%w: it ends at offset %d inside the index of %d blocks", ErrTruncated, r.off, len(r.offsets))
		}
		return err
	}
	t, err := parseTrailer(idx[len(idx)-TrailerSize:])
	if err != nil {
		return err
	}
	if err := checkIndex(idx, t, r.bs); err != nil {
		return err
	}
	if t.indexOff != endOff || t.blocks != int64(len(r.offsets)) || t.rawLen != r.rawLen {
		return fmt.Errorf("%w: trailer (end of blocks at %d, %d blocks, %d bytes) disagrees with the file (%d, %d, %d)",
			ErrCorrupt, t.indexOff, t.blocks, t.rawLen, endOff, len(r.offsets), r.rawLen)
	}
	for i, o := range r.offsets {
		if got := int64(binary.LittleEndian.Uint64(idx[i*8:])); got != o {
			return fmt.Errorf("%w: index entry %d says offset %d, block is at %d", ErrCorrupt, i, got, o)
		}
	}
	var one [1]byte
	switch n, err := io.ReadFull(r.r, one[:]); {
	case n > 0:
		return fmt.Errorf("%w: unexpected data after the end of the file at offset %d", ErrCorrupt, r.off)
	case errors.Is(err, io.EOF):
		return io.EOF
	default:
		return fmt.Errorf("read compressed file: %w", err)
	}
}
