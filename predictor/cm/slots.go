package cm

// Exported pieces of cm's hashed-context machinery, for models that add
// contexts of their own next to cm's (predictor/lmmix, codec lm+cm id 7).
// They compute exactly what cm's own hashed contexts compute.

// Slots is a hash table of bit-history slots as cm's hashed contexts use
// it: slots of 16 bytes, a checksum byte and the one-byte bit-history
// states of the 15 nodes of a nibble's bit tree.
type Slots struct {
	ht   []uint8
	mask uint32
}

// Reset sizes the table to 2^lg slots (lg in 0..30) and clears it.
func (s *Slots) Reset(lg int) {
	s.ht = resize8(s.ht, 16<<lg)
	s.mask = uint32(1)<<lg - 1
}

// Find returns the byte offset of the slot of context hash h: the first of
// the slots at hash32(h) & mask, ^1, ^2 whose checksum byte is
// hash32(h) >> 24, or else the one of them whose first node has the lowest
// replacement priority (the first such), cleared and given the checksum.
func (s *Slots) Find(h uint32) int { return findSlot(s.ht, s.mask, h) }

// State returns the bit-history state at byte offset i (a slot's offset
// plus a node, 1..15).
func (s *Slots) State(i int) uint8 { return s.ht[i] }

// Update moves the state at byte offset i on by bit y (from the state the
// table holds now).
func (s *Slots) Update(i int, y int) { s.ht[i] = nextState[s.ht[i]][y&1] }

// Hash32 is cm's 32-bit integer hash (lowbias32).
func Hash32(x uint32) uint32 { return hash32(x) }

// NextState returns the bit-history state that follows state st on bit y.
func NextState(st uint8, y int) uint8 { return nextState[st][y&1] }

// InitStateMap sets a map over bit-history states as cm's are at the start
// of a block: each state's count estimate (n1+1/2)/(n0+n1+1), 22 bits,
// shifted left by 10.
func InitStateMap(t *[256]uint32) { smInitStates(t) }

// StateMapUpdate trains a state-map entry on bit y at the fixed rate 1/256,
// as cm's hashed contexts do.
func StateMapUpdate(v *uint32, y int) {
	*v += uint32((int32(y&1)<<22 - int32(*v>>10)) >> 8 << 10)
}

// StateMapP returns the stretched probability of a state-map entry (the
// input cm gives its mixer).
func StateMapP(v uint32) int32 { return stretchTab[v>>20] }
