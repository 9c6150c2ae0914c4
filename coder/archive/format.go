// Package archive reads and writes the lmfs compressed file format, the
// standalone form of lmfs block records that `lmfs compress` writes: a header,
// one framed block record per block, a block index and a checksummed trailer.
// See ../FILEFORMAT.md for the layout.
//
// Writer and Reader work on streams (the index is written last, so input of
// unknown length can be compressed); Open locates any block of a seekable file
// through the index. Compress and Decompress code blocks in parallel.
package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/lmfs/lmfs/coder"
)

// Version is the file format version this package writes and the newest it
// reads.
const Version = 1

// Magic starts every lmfs compressed file. The high first byte and the CR LF
// and ^Z catch text-mode transfers and let `file` tell it from text.
var Magic = [8]byte{0x89, 'L', 'M', 'F', 'S', '\r', '\n', 0x1a}

// trailerMagic ends every file.
var trailerMagic = [8]byte{'L', 'M', 'F', 'S', 'I', 'D', 'X', 0x1a}

const (
	// HeaderSize is the size of the file header.
	HeaderSize = 20
	// TrailerSize is the size of the fixed trailer at the end of the file.
	TrailerSize = 36
	// frameHeaderSize is the length and CRC before each record.
	frameHeaderSize = 8
	// endMarkerSize is the zero length that ends the records.
	endMarkerSize = 4
	// minRecordSize is the smallest block record (raw codec, 1-byte varint).
	minRecordSize = 7
	// EmptySize is the size of the file that holds no bytes.
	EmptySize = HeaderSize + endMarkerSize + TrailerSize
)

// Errors wrapped by what this package returns, for errors.Is.
var (
	// ErrNotArchive means the input does not start with the lmfs magic.
	ErrNotArchive = errors.New("not an lmfs compressed file")
	// ErrVersion means the file was written by a newer lmfs.
	ErrVersion = errors.New("unsupported lmfs compressed file version")
	// ErrTruncated means the file ends early.
	ErrTruncated = errors.New("lmfs compressed file is truncated")
	// ErrCorrupt means the file's structure or a checksum is wrong.
	ErrCorrupt = errors.New("lmfs compressed file is corrupt")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaxRecordSize is the largest record a file of block size bs may hold: the
// raw record of a full block with the largest header.
func MaxRecordSize(bs int) int { return bs + coder.MaxHeaderSize }

// BlockError reports a bad block: its number (from 0), the file offset of its
// frame, and what is wrong.
type BlockError struct {
	Block  int
	Offset int64
	Err    error
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("block %d (file offset %d): %v", e.Block, e.Offset, e.Err)
}

func (e *BlockError) Unwrap() error { return e.Err }

func checkBlockSize(bs int) error {
	if bs < 1 || bs > coder.MaxBlockSize {
		return fmt.Errorf("block size %d out of range 1..%d", bs, coder.MaxBlockSize)
	}
	return nil
}

func appendFileHeader(dst []byte, bs int) []byte {
	start := len(dst)
	dst = append(dst, Magic[:]...)
	dst = append(dst, Version, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(bs))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// parseFileHeader checks the 20-byte header and returns the block size.
func parseFileHeader(h []byte) (int, error) {
	if len(h) < len(Magic) || [8]byte(h[:8]) != Magic {
		return 0, fmt.Errorf("%w: bad magic (is it the output of `lmfs compress`?)", ErrNotArchive)
	}
	if len(h) < HeaderSize {
		return 0, fmt.Errorf("%w: file header is %d bytes, want %d", ErrTruncated, len(h), HeaderSize)
	}
	if v := h[8]; v == 0 || v > Version {
		if v == 0 {
			return 0, fmt.Errorf("%w: format version 0", ErrCorrupt)
		}
		return 0, fmt.Errorf("%w: file format version %d is newer than this lmfs reads (%d): upgrade lmfs to decompress it", ErrVersion, v, Version)
	}
	if sum, want := crc32.Checksum(h[:16], castagnoli), binary.LittleEndian.Uint32(h[16:20]); sum != want {
		return 0, fmt.Errorf("%w: file header checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, want, sum)
	}
	if h[9] != 0 || h[10] != 0 || h[11] != 0 {
		return 0, fmt.Errorf("%w: reserved header bytes are set (flags %02x %02x %02x): written by a newer lmfs?", ErrCorrupt, h[9], h[10], h[11])
	}
	bs := int(binary.LittleEndian.Uint32(h[12:16]))
	if err := checkBlockSize(bs); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return bs, nil
}

// frameCRC is the checksum stored before each record: CRC32C of the length
// field followed by the record.
func frameCRC(lenField []byte, rec []byte) uint32 {
	return crc32.Update(crc32.Checksum(lenField, castagnoli), castagnoli, rec)
}

// trailer is the fixed end of a file.
type trailer struct {
	indexOff int64 // offset of the end marker
	blocks   int64
	rawLen   int64
}

// appendIndex appends the index entries and trailer for offsets.
func appendIndex(dst []byte, offsets []int64, t trailer) []byte {
	start := len(dst)
	for _, o := range offsets {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(o))
	}
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.indexOff))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.blocks))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.rawLen))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
	return append(dst, trailerMagic[:]...)
}

// parseTrailer decodes the last TrailerSize bytes of a file. It checks the
// magic only; the CRC covers the index too and is checked by checkIndex.
func parseTrailer(b []byte) (trailer, error) {
	var t trailer
	if [8]byte(b[28:36]) != trailerMagic {
		return t, fmt.Errorf("%w: bad trailer magic: the file is truncated or damaged at its end", ErrCorrupt)
	}
	t.indexOff = int64(binary.LittleEndian.Uint64(b[0:]))
	t.blocks = int64(binary.LittleEndian.Uint64(b[8:]))
	t.rawLen = int64(binary.LittleEndian.Uint64(b[16:]))
	if t.indexOff < 0 || t.blocks < 0 || t.rawLen < 0 {
		return t, fmt.Errorf("%w: trailer values out of range", ErrCorrupt)
	}
	return t, nil
}

// checkIndex verifies the CRC over index entries plus trailer (idx holds the
// entries followed by the trailer) and the consistency of the trailer with the
// block size.
func checkIndex(idx []byte, t trailer, bs int) error {
	n := len(idx) - TrailerSize
	stored := binary.LittleEndian.Uint32(idx[n+24:])
	if sum := crc32.Checksum(idx[:n+24], castagnoli); sum != stored {
		return fmt.Errorf("%w: index checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, stored, sum)
	}
	if want := (t.rawLen + int64(bs) - 1) / int64(bs); t.blocks != want {
		return fmt.Errorf("%w: trailer says %d blocks for %d bytes at block size %d (want %d)", ErrCorrupt, t.blocks, t.rawLen, bs, want)
	}
	if int64(n) != t.blocks*8 {
		return fmt.Errorf("%w: index holds %d bytes for %d blocks", ErrCorrupt, n, t.blocks)
	}
	return nil
}

// blockRawLen returns the raw length block i of a file of rawLen bytes has.
func blockRawLen(i int64, rawLen int64, bs int) int {
	if rem := rawLen - i*int64(bs); rem < int64(bs) {
		return int(rem)
	}
	return bs
}

// recordRawLen reads the raw length from a block record's header without
// needing the codec registry.
func recordRawLen(rec []byte) (int, error) {
	h, err := coder.ParseHeader(rec, func(coder.ID) (bool, error) { return false, nil })
	if err != nil {
		return 0, err
	}
	return h.RawLen, nil
}
