package cm

// Fixed-point conventions (all integer, identical on every GOARCH):
//
//   - probabilities: 12 bits, P(1) in [1, 4095] (p12);
//   - stretch domain: st(p) = ln(p/(1-p)) scaled by 256, in [-2047, 2047];
//   - squash is the inverse, from a 33-point table of 4096/(1+e^-x) at
//     x = -8, -7.5, ..., 8 with linear interpolation; stretch is its exact
//     inverse by table search, so squash(stretch(p)) is within one step of p.

// squashPoints[i] = round(4096/(1+exp(-(i-16)/2))), clamped to [1, 4095].
var squashPoints = [33]int32{
	1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546,
	2047, 2549, 2994, 3348, 3607, 3785, 3901, 3975, 4024, 4050, 4068, 4079,
	4085, 4089, 4092, 4093, 4094,
}

// tables are built once from integer code and shared read-only.
type tables struct {
	squash  [4096]int32 // squash[d+2048], d in [-2048, 2047]
	stretch [4096]int32 // stretch[p], p in [0, 4095]
	next    [256][2]uint8
	n0, n1  [256]int32 // counts a bit-history state stands for
	prio    [256]uint8 // replacement priority of a slot with this state first
}

var tab = buildTables()

// Copies of the hot tables as package-level arrays, so that lookups need no
// pointer load.
var (
	squashTab  = tab.squash
	stretchTab = tab.stretch
	nextState  = tab.next
)

func squashCalc(d int32) int32 {
	if d > 2047 {
		return 4095
	}
	if d < -2047 {
		return 1
	}
	w := d & 127
	i := (d >> 7) + 16
	return (squashPoints[i]*(128-w) + squashPoints[i+1]*w + 64) >> 7
}

// squash maps the stretch domain to a 12-bit probability.
func squash(d int32) int32 {
	if d > 2047 {
		d = 2047
	}
	if d < -2047 {
		d = -2047
	}
	return squashTab[(d+2048)&4095]
}

// stretch is the inverse of squash.
func stretch(p int32) int32 { return stretchTab[p&4095] }

// Bit-history limits: a state stands for counts (n0, n1) of zeros and ones
// seen in a context. On a bit, its count grows and the opposite count, when
// above 2, is discounted to n/2+1 (recent bits weigh more). The larger count
// is capped at histLimit[smaller count]; pairs with a smaller count beyond
// the table are not allowed. With these limits there are 239 states.
var histLimit = []int{60, 30, 20, 12, 8, 6, 5}

func histAllowed(a, b int) bool {
	if a < b {
		a, b = b, a
	}
	return b < len(histLimit) && a <= histLimit[b]
}

func buildTables() *tables {
	t := &tables{}
	for d := int32(-2048); d < 2048; d++ {
		t.squash[d+2048] = squashCalc(d)
	}
	pi := int32(0)
	for x := int32(-2047); x <= 2047; x++ {
		v := squashCalc(x)
		for j := pi; j <= v; j++ {
			t.stretch[j] = x
		}
		pi = v + 1
	}
	for j := pi; j < 4096; j++ {
		t.stretch[j] = 2047
	}

	// Bit-history states in breadth-first order from (0, 0).
	type pair struct{ n0, n1 int }
	disc := func(n int) int {
		if n > 2 {
			return n/2 + 1
		}
		return n
	}
	idx := map[pair]int{{0, 0}: 0}
	q := []pair{{0, 0}}
	for i := 0; i < len(q); i++ {
		s := q[i]
		for y := 0; y < 2; y++ {
			n := s
			if y == 1 {
				n.n1++
				n.n0 = disc(n.n0)
				for !histAllowed(n.n0, n.n1) {
					n.n1--
				}
			} else {
				n.n0++
				n.n1 = disc(n.n1)
				for !histAllowed(n.n0, n.n1) {
					n.n0--
				}
			}
			j, ok := idx[n]
			if !ok {
				j = len(q)
				idx[n] = j
				q = append(q, n)
			}
			t.next[i][y] = uint8(j)
		}
	}
	if len(q) > 256 {
		panic("cm: too many bit-history states")
	}
	for i, s := range q {
		t.n0[i], t.n1[i] = int32(s.n0), int32(s.n1)
		pr := s.n0 + s.n1
		if pr > 255 {
			pr = 255
		}
		t.prio[i] = uint8(pr)
	}
	return t
}
