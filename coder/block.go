// Package coder holds the block container format, the codec registry and the
// codecs that turn a block of raw bytes into a compact payload and back.
//
// It knows nothing of files or FUSE: a block is a byte slice of at most
// MaxBlockSize bytes. See FORMAT.md for the on-disk layout.
package coder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// FormatVersion is the block container version this build writes. Decoders
// accept every version up to and including it.
const FormatVersion = 1

// MaxBlockSize is the largest raw block the container accepts.
const MaxBlockSize = 16 << 20

// ModelIDSize is the size of a model id: the SHA-256 of the model file.
const ModelIDSize = 32

// ModelID identifies a model by the SHA-256 of its file.
type ModelID [ModelIDSize]byte

// String returns the id as lower-case hex.
func (m ModelID) String() string { return fmt.Sprintf("%x", m[:]) }

// Short returns the first 12 hex digits of the id, for logs and tables.
func (m ModelID) Short() string { return m.String()[:12] }

// ErrCorrupt is wrapped by every error that means "these bytes are not a valid
// block": bad header, bad payload, wrong length or CRC mismatch.
var ErrCorrupt = errors.New("corrupt block")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC32C of b, the checksum stored in block headers.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Header is the decoded fixed part of a block record.
type Header struct {
	Version  uint8
	Codec    ID
	RawLen   int
	CRC      uint32
	HasModel bool
	Model    ModelID
	// Size is the number of bytes the header occupies; the payload follows.
	Size int
}

// MaxHeaderSize bounds the encoded header length.
const MaxHeaderSize = 2 + binary.MaxVarintLen32 + 4 + ModelIDSize

// AppendHeader appends the encoded header h to dst. HasModel decides whether
// the model id is written; Size and Version are ignored (the current version is
// written).
func AppendHeader(dst []byte, h Header) []byte {
	dst = append(dst, FormatVersion, byte(h.Codec))
	dst = binary.AppendUvarint(dst, uint64(h.RawLen))
	dst = binary.LittleEndian.AppendUint32(dst, h.CRC)
	if h.HasModel {
		dst = append(dst, h.Model[:]...)
	}
	return dst
}

// ParseHeader decodes the header at the start of rec. usesModel reports
// whether a codec id carries a model id; it is normally Registry.UsesModel.
func ParseHeader(rec []byte, usesModel func(ID) (bool, error)) (Header, error) {
	var h Header
	if len(rec) < 2 {
		return h, fmt.Errorf("%w: record of %d bytes is shorter than a header", ErrCorrupt, len(rec))
	}
	h.Version = rec[0]
	if h.Version == 0 {
		return h, fmt.Errorf("%w: format version 0", ErrCorrupt)
	}
	if h.Version > FormatVersion {
		return h, fmt.Errorf("block format version %d is newer than this lmfs supports (%d): upgrade lmfs to read it", h.Version, FormatVersion)
	}
	h.Codec = ID(rec[1])
	n, k := binary.Uvarint(rec[2:])
	if k <= 0 {
		return h, fmt.Errorf("%w: bad raw length varint", ErrCorrupt)
	}
	if n > MaxBlockSize {
		return h, fmt.Errorf("%w: raw length %d exceeds the maximum block size %d", ErrCorrupt, n, MaxBlockSize)
	}
	h.RawLen = int(n)
	off := 2 + k
	if len(rec) < off+4 {
		return h, fmt.Errorf("%w: header truncated before CRC", ErrCorrupt)
	}
	h.CRC = binary.LittleEndian.Uint32(rec[off:])
	off += 4
	um, err := usesModel(h.Codec)
	if err != nil {
		return h, err
	}
	if um {
		if len(rec) < off+ModelIDSize {
			return h, fmt.Errorf("%w: header truncated before model id", ErrCorrupt)
		}
		h.HasModel = true
		copy(h.Model[:], rec[off:])
		off += ModelIDSize
	}
	h.Size = off
	return h, nil
}
