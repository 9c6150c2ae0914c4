package archive

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Writer writes an lmfs compressed file to a stream: the header at once, each
// block record as it is given, the index and trailer on Close. It holds 8
// bytes per block for the index. It is not safe for concurrent use.
type Writer struct {
	w       *bufio.Writer
	bs      int
	off     int64
	offsets []int64
	rawLen  int64
	short   bool
	closed  bool
	err     error
}

// NewWriter writes the file header for blockSize to w and returns the writer.
func NewWriter(w io.Writer, blockSize int) (*Writer, error) {
	if err := checkBlockSize(blockSize); err != nil {
		return nil, err
	}
	aw := &Writer{w: bufio.NewWriterSize(w, 256<<10), bs: blockSize}
	aw.write(appendFileHeader(nil, blockSize))
	return aw, aw.err
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write compressed file: %w", err)
	}
}

// BlockSize returns the file's block size.
func (w *Writer) BlockSize() int { return w.bs }

// Offset returns the number of bytes written so far.
func (w *Writer) Offset() int64 { return w.off }

// WriteRecord appends the block record of the next block. Every block but the
// last must hold exactly BlockSize raw bytes, and no block may be empty.
func (w *Writer) WriteRecord(rec []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("archive: WriteRecord after Close")
	}
	n, err := recordRawLen(rec)
	if err != nil {
		return fmt.Errorf("archive: block %d: %w", len(w.offsets), err)
	}
	switch {
	case w.short:
		return fmt.Errorf("archive: block %d follows a short block: only the last block may be shorter than %d bytes", len(w.offsets), w.bs)
	case n == 0 || n > w.bs:
		return fmt.Errorf("archive: block %d holds %d raw bytes, want 1..%d", len(w.offsets), n, w.bs)
	case len(rec) > MaxRecordSize(w.bs):
		return fmt.Errorf("archive: block %d record of %d bytes exceeds the limit %d: encoders must fall back to raw", len(w.offsets), len(rec), MaxRecordSize(w.bs))
	}
	w.short = n < w.bs
	w.offsets = append(w.offsets, w.off)
	w.rawLen += int64(n)
	var fh [frameHeaderSize]byte
	binary.LittleEndian.PutUint32(fh[:4], uint32(len(rec)))
	binary.LittleEndian.PutUint32(fh[4:], frameCRC(fh[:4], rec))
	w.write(fh[:])
	w.write(rec)
	return w.err
}

// Close writes the end marker, the index and the trailer, and flushes. It does
// not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	t := trailer{indexOff: w.off, blocks: int64(len(w.offsets)), rawLen: w.rawLen}
	w.write(make([]byte, endMarkerSize))
	w.write(appendIndex(make([]byte, 0, len(w.offsets)*8+TrailerSize), w.offsets, t))
	if w.err == nil {
		if err := w.w.Flush(); err != nil {
			w.err = fmt.Errorf("write compressed file: %w", err)
		}
	}
	return w.err
}
