package lm

import "encoding/binary"

// The dense layers are computed two outputs at a time in the 32-bit halves
// of a uint64 ("SIMD within a register"), in pure Go: a weight w in
// [-127, 127] is stored as w+128 in [1, 255], so a product with an activation
// x in [1, 127] is at most 32385 and a half can take 2^32/32385 > 130000 of
// them (far more than the 4096 inputs a model may have) without carrying into
// its neighbour. The true sum is recovered exactly as half - 128*sum(x).
// The result is bit-identical to the plain int32 arithmetic of SPEC.md.

// pack turns a cols x rows transposed matrix (column c at t[c*rows:]) into
// per-column pairs: p[c*((rows+1)/2)+k] holds outputs 2k (low half) and 2k+1.
func pack(t []int8, cols, rows int) []uint64 {
	half := (rows + 1) / 2
	p := make([]uint64, cols*half)
	for c := range cols {
		col := t[c*rows : c*rows+rows]
		for k := range half {
			lo := uint64(int32(col[2*k]) + 128)
			hi := uint64(128)
			if 2*k+1 < rows {
				hi = uint64(int32(col[2*k+1]) + 128)
			}
			p[c*half+k] = lo | hi<<32
		}
	}
	return p
}

// denseSWAR sets acc[j] = bias[j] + sum over the indices c in nz of
// W[j][c]*x[c], with W packed by pack (rows = len(acc)). lanes is scratch of
// (len(acc)+1)/2 words.
func denseSWAR(acc, bias []int32, p []uint64, nz []int, x []int32, lanes []uint64) {
	half := len(lanes)
	clear(lanes)
	var sx uint64
	for _, c := range nz {
		xc := uint64(x[c])
		sx += xc
		col := p[c*half : c*half+half]
		l := lanes[:len(col)]
		for k, w := range col {
			l[k] += w * xc
		}
	}
	off := 128 * sx
	rows := len(acc)
	for k, v := range lanes {
		acc[2*k] = bias[2*k] + int32(uint32(v)-uint32(off))
		if 2*k+1 < rows {
			acc[2*k+1] = bias[2*k+1] + int32(uint32(v>>32)-uint32(off))
		}
	}
}

// The first layer adds one table row per window position and hashed order.
// Rows are stored offset by 128 (entries in [1, 255]) and added eight at a
// time: a 64-bit load holds eight entries, split into the even and the odd
// bytes, four 16-bit lanes each. At most 72 rows of at most 255 sum to
// 18360 < 2^16, so no lane carries into the next; the true sum is the lane
// minus 128 per row.

const evenBytes = 0x00FF00FF00FF00FF

// sumRows sets acc[h] = bias[h] + sum over rows r of (t[r*H+h] - 128) for
// H = len(acc), a multiple of 8. ev and od are scratch of H/8 words.
func sumRows(acc, bias []int32, t []uint8, rows []int, ev, od []uint64) {
	h := len(acc)
	clear(ev)
	clear(od)
	for _, r := range rows {
		row := t[r*h : r*h+h]
		e := ev[:h/8]
		o := od[:h/8]
		for w := range e {
			x := binary.LittleEndian.Uint64(row[8*w:])
			e[w] += x & evenBytes
			o[w] += (x >> 8) & evenBytes
		}
	}
	off := int32(128 * len(rows))
	for w := range h / 8 {
		e, o := ev[w], od[w]
		for i := range 4 {
			j := 8*w + 2*i
			acc[j] = bias[j] + int32((e>>(16*i))&0xFFFF) - off
			acc[j+1] = bias[j+1] + int32((o>>(16*i))&0xFFFF) - off
		}
	}
}
