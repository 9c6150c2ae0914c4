package fs

// Span is the part of one logical block that a byte range covers: bytes
// [Skip, Skip+Len) of block Block.
type Span struct {
	Block uint64
	Skip  int
	Len   int
}

// Spans splits the byte range [off, off+n) into per-block spans for blocks of
// bs bytes. It returns nil for an empty range.
func Spans(off uint64, n int, bs int) []Span {
	if n <= 0 {
		return nil
	}
	b := uint64(bs)
	var out []Span
	for n > 0 {
		blk := off / b
		skip := int(off % b)
		l := min(bs-skip, n)
		out = append(out, Span{Block: blk, Skip: skip, Len: l})
		off += uint64(l)
		n -= l
	}
	return out
}

// blockLen is the number of bytes of block blk inside a file of size bytes.
func blockLen(size, blk uint64, bs int) int {
	start := blk * uint64(bs)
	if start >= size {
		return 0
	}
	return int(min(uint64(bs), size-start))
}

// blocksFor is the number of blocks a file of size bytes spans.
func blocksFor(size uint64, bs int) uint64 {
	return (size + uint64(bs) - 1) / uint64(bs)
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
