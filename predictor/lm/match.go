package lm

// The match model of architecture 3, lstm2 (SPEC.md, "Match model"): per
// block, a hash table of the positions that followed each 5-byte context,
// a pointer to the byte that the current repeat predicts and the repeat's
// length. Its feature is one more input of layer 0.

// Constants of the match model (SPEC.md, "Match model").
const (
	// NumMatchFeatures is the number of match features (the rows of T1):
	// 0 for no match, else 1 + predicted byte * 8 + length bucket.
	NumMatchFeatures = 1 + 256*8
	matchMinLen      = 5  // the context hashed, and the shortest match taken
	matchCheck       = 32 // the most bytes compared when a match is found
	matchHashBits    = 16
	matchHashMul     = 0x2F0B4A27
	matchMaxLen      = 65535
	// matchClearAll is the block length from which Reset clears the whole
	// table rather than the entries the block wrote.
	matchClearAll = 1 << 12
)

// matchBucket is SPEC.md's bucket(len).
func matchBucket(n uint32) uint16 {
	switch {
	case n < 8:
		return 0
	case n < 12:
		return 1
	case n < 16:
		return 2
	case n < 24:
		return 3
	case n < 32:
		return 4
	case n < 64:
		return 5
	case n < 256:
		return 6
	}
	return 7
}

// matchHash is the table index of the 5 bytes ending at x[k-1] (k >= 5).
func matchHash(x []byte, k int) uint32 {
	w := x[k-matchMinLen : k : k]
	var h uint32
	for _, b := range w {
		h = (h + uint32(b) + 1) * matchHashMul
	}
	return h >> (32 - matchHashBits)
}

// matchState is the match model's state over a block whose known bytes are
// held by the caller.
type matchState struct {
	mt  *[1 << matchHashBits]uint32 // the last k seen after each hashed context
	ptr uint32                      // 0: no match, else the index of the predicted byte
	len uint32                      // the match length, at most matchMaxLen
}

// update takes the model from k-1 known bytes of x to k (x[k-1] is the new
// one) and returns the feature after k bytes (SPEC.md, "Match model").
func (s *matchState) update(x []byte, k int) uint16 {
	i := k - 1
	if s.ptr != 0 {
		if x[s.ptr] == x[i] {
			s.ptr++
			s.len = min(s.len+1, matchMaxLen)
		} else {
			s.ptr, s.len = 0, 0
		}
	}
	if k >= matchMinLen {
		h := matchHash(x, k)
		if c := s.mt[h]; s.ptr == 0 && c != 0 {
			// c < k: compare backwards from x[c-1] and x[k-1].
			l := 0
			for l < matchCheck && int(c)-1-l >= 0 && x[int(c)-1-l] == x[k-1-l] {
				l++
			}
			if l >= matchMinLen {
				s.ptr, s.len = c, uint32(l)
			}
		}
		s.mt[h] = uint32(k)
	}
	if s.ptr == 0 {
		return 0
	}
	return 1 + uint16(x[s.ptr])*8 + matchBucket(s.len)
}

// reset clears the state of a block whose first n bytes are x[:n]: only the
// table entries those bytes wrote when the block was short, else the whole
// table.
func (s *matchState) reset(x []byte) {
	s.ptr, s.len = 0, 0
	if len(x) >= matchClearAll {
		clear(s.mt[:])
		return
	}
	for k := matchMinLen; k <= len(x); k++ {
		s.mt[matchHash(x, k)] = 0
	}
}

// MatchFeatures appends to dst the lstm2 match features f_0 .. f_len(block)
// of block (SPEC.md, "Match model"; len(block)+1 values, f_0 = 0) and
// returns it. f_t is the feature after t known bytes: the one that the step
// over block[t-1] consumes. It allocates the model's 256 KiB table; a
// caller that computes the features of many blocks can reuse one with
// (*Matcher).Features.
func MatchFeatures(dst []uint16, block []byte) []uint16 {
	return NewMatcher().Features(dst, block)
}

// Matcher is the match model of one block, fed byte by byte. It keeps the
// block's bytes itself (a block may be up to 16 MiB: positions are
// uint32). The zero value is not usable: use NewMatcher. A Matcher is not
// safe for concurrent use.
type Matcher struct {
	s   matchState
	buf []byte // the block's bytes so far
}

// NewMatcher returns a Matcher at the start of a block.
func NewMatcher() *Matcher {
	return &Matcher{s: matchState{mt: new([1 << matchHashBits]uint32)}, buf: make([]byte, 0, 4096)}
}

// Reset returns m to the start of a block (feature f_0 = 0).
func (m *Matcher) Reset() {
	m.s.reset(m.buf)
	m.buf = m.buf[:0]
}

// Push adds the block's next byte x[k-1] and returns the feature after the
// k bytes known now, f_k.
func (m *Matcher) Push(b byte) uint16 {
	m.buf = append(m.buf, b)
	return m.s.update(m.buf, len(m.buf))
}

// Len returns the number of bytes pushed since the block started.
func (m *Matcher) Len() int { return len(m.buf) }

// Features resets m, appends to dst the features f_0 .. f_len(block) of
// block, as MatchFeatures does, and returns it. m is left reset (the block
// is not kept).
func (m *Matcher) Features(dst []uint16, block []byte) []uint16 {
	m.Reset()
	dst = append(dst, 0)
	for k := 1; k <= len(block); k++ {
		dst = append(dst, m.s.update(block, k))
	}
	m.s.reset(block)
	return dst
}
