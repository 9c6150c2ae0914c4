package lm

import "sync"

// The pure-Go kernel for lstm1 computes three rows at a time in one uint64
// ("SIMD within a register"): a row's weight w in [-127, 127] is stored as
// w+128 in [1, 255], in one of three 21-bit lanes, and multiplied by the
// input u = x+128 in [1, 255] (x in [-127, 127]). A product is at most
// 255*255 = 65025, so a lane can take 32 of them (2080800 < 2^21) before it
// is added to its row's int32 sum; one 64-bit multiply-add then does three
// multiply-accumulates. The true sum is recovered exactly:
//
//	sum (w+128)(x+128) = sum w*x + 128*sum w + 128*sum x + 128*128*k
//
// (padding columns have w = 0 and x = 0 and add 128*128 like the others).

const (
	swarLanes = 3
	swarBits  = 21
	swarMask  = 1<<swarBits - 1
	swarRun   = 32 // products a lane takes before it is emptied
)

// swarMatrix is a matrix packed for matvecSWAR: word c of group g holds
// column c of rows 3g, 3g+1, 3g+2 (rows past the last hold weight 0).
type swarMatrix struct {
	once sync.Once
	p    []uint64
}

func (m *matrix) packed() []uint64 {
	m.swar.once.Do(func() {
		groups := (m.rows + swarLanes - 1) / swarLanes
		p := make([]uint64, groups*m.k)
		for g := range groups {
			for lane := range swarLanes {
				r := g*swarLanes + lane
				for c := range m.k {
					w := uint64(128)
					if r < m.rows {
						w = uint64(int64(m.w[r*m.k+c]) + 128)
					}
					p[g*m.k+c] |= w << (swarBits * lane)
				}
			}
		}
		m.swar.p = p
	})
	return m.swar.p
}

// matvecSWAR is matvecFunc in pure Go, three products per 64-bit
// multiply-add. Its packed matrix (2.7 times the int8 one) is made on first
// use.
func matvecSWAR(dst []int32, m *matrix, x []int16) {
	checkMatvec(dst, m, x)
	k := m.k
	var ubuf [maxCols]uint64
	u := ubuf[:k]
	var sx int32
	for i, v := range x[:k] {
		u[i] = uint64(int64(v) + 128)
		sx += int32(v)
	}
	p := m.packed()
	off := 128*sx + 128*128*int32(k)
	groups := (m.rows + swarLanes - 1) / swarLanes
	var s [2 * swarLanes]uint32
	for g := 0; g < groups; g += 2 {
		// Two groups (six rows) at a time share the loads of u; a missing
		// second group reruns the first (its sums are not stored).
		r0 := p[g*k : g*k+k]
		r1 := r0
		if g+1 < groups {
			r1 = p[(g+1)*k : (g+1)*k+k]
		}
		s = [2 * swarLanes]uint32{}
		for c0 := 0; c0 < k; c0 += swarRun {
			w0 := (*[swarRun]uint64)(r0[c0:])
			w1 := (*[swarRun]uint64)(r1[c0:])
			uu := (*[swarRun]uint64)(u[c0:])
			var a0, a1 uint64
			for i := range swarRun {
				a0 += w0[i] * uu[i]
				a1 += w1[i] * uu[i]
			}
			s[0] += uint32(a0 & swarMask)
			s[1] += uint32(a0 >> swarBits & swarMask)
			s[2] += uint32(a0 >> (2 * swarBits))
			s[3] += uint32(a1 & swarMask)
			s[4] += uint32(a1 >> swarBits & swarMask)
			s[5] += uint32(a1 >> (2 * swarBits))
		}
		for lane := range 2 * swarLanes {
			r := g*swarLanes + lane
			if r < m.rows {
				dst[r] = int32(s[lane]) - 128*m.rowsum[r] - off
			}
		}
	}
}
