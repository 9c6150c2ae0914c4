// Package mix combines bit predictions of several models with an adaptive
// integer logistic mixer (the final stage of the lpaq/paq family): each input
// probability is mapped to the stretch domain ln(p/(1-p)), a weighted sum is
// mapped back with squash, and after each bit the weights move along the
// gradient of the coding cost. Everything is integer, so the encoder and the
// decoder compute the same bits on every machine.
//
// The lm+cm codec uses it to mix the neural LM's byte distribution (taken
// apart into its eight bit decisions) with the context-mixing model's bit
// predictions: a block the LM does not know soon gives the LM a small weight,
// so the mix does little worse than cm alone there.
package mix

// Fixed-point conventions: probabilities are 12-bit (P(1) in [1, 4095]) inside
// the mixer and 16-bit at its interface; the stretch domain is ln(p/(1-p))
// scaled by 256 and clamped to [-2047, 2047]; weights are 16.16 fixed point.

// squashPoints[i] = round(4096/(1+exp(-(i-16)/2))), clamped to [1, 4095]:
// a fixed integer table, so no implementation evaluates exp.
var squashPoints = [33]int32{
	1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546,
	2047, 2549, 2994, 3348, 3607, 3785, 3901, 3975, 4024, 4050, 4068, 4079,
	4085, 4089, 4092, 4093, 4094,
}

type tables struct {
	squash  [4096]int32 // squash[d+2048]
	stretch [4096]int32 // stretch[p12]
}

func buildTables() *tables {
	t := &tables{}
	for d := int32(-2048); d < 2048; d++ {
		x := max(d, -2047)
		w := x & 127
		i := (x >> 7) + 16
		v := (squashPoints[i]*(128-w) + squashPoints[i+1]*w + 64) >> 7
		t.squash[d+2048] = min(max(v, 1), 4095)
	}
	// stretch(p) is the smallest d whose squash reaches p (an exact inverse
	// by search over a monotone table).
	pi := int32(0)
	for d := int32(-2047); d <= 2047; d++ {
		v := t.squash[d+2048]
		for j := pi; j <= v; j++ {
			t.stretch[j] = d
		}
		pi = v + 1
	}
	for j := pi; j < 4096; j++ {
		t.stretch[j] = 2047
	}
	return t
}

var tab = buildTables()

// Squash maps the stretch domain to a 12-bit probability.
func Squash(d int32) int32 {
	return tab.squash[min(max(d, -2047), 2047)+2048]
}

// Stretch maps a 12-bit probability to the stretch domain.
func Stretch(p12 int32) int32 { return tab.stretch[min(max(p12, 0), 4095)] }

// Confidence buckets how sure a 16-bit probability p16 is: 0 to 3 as
// |Stretch(p16 >> 4)| reaches 256, 768 and 1536 (the lm+cm.1 mixer selects
// its weight sets by it).
func Confidence(p16 int32) int {
	st := Stretch(p16 >> 4)
	if st < 0 {
		st = -st
	}
	switch {
	case st >= 1536:
		return 3
	case st >= 768:
		return 2
	case st >= 256:
		return 1
	}
	return 0
}

// Mixer mixes N inputs with one weight set chosen per bit by a context.
// The zero value is not usable: call New.
type Mixer struct {
	n     int
	w     []int32 // sets x n weights, 16.16
	x     []int32 // current inputs (stretch domain)
	set   int
	pr    int32 // last output, 12-bit
	shift uint
}

// New returns a mixer of n inputs with sets weight sets, each starting at
// init (16.16 fixed point, len(init) == n). rateShift sets the learning rate:
// a weight moves by (input * error) >> rateShift per bit (10 is a good start).
func New(n, sets int, init []int32, rateShift uint) *Mixer {
	m := &Mixer{n: n, w: make([]int32, n*sets), x: make([]int32, n), shift: rateShift}
	for s := range sets {
		copy(m.w[s*n:], init)
	}
	return m
}

// Reset puts every weight set back to init, for a new block.
func (m *Mixer) Reset(init []int32) {
	for s := 0; s < len(m.w); s += m.n {
		copy(m.w[s:], init)
	}
}

// P mixes the 16-bit probabilities p16 (P(1) scaled by 65536, one per input)
// with weight set set and returns P(1) as a 16-bit probability in
// [16, 65520].
func (m *Mixer) P(p16 []int32, set int) int {
	m.set = set * m.n
	var dot int64
	for i, p := range p16 {
		x := Stretch(p >> 4)
		m.x[i] = x
		dot += int64(m.w[m.set+i]) * int64(x)
	}
	m.pr = Squash(int32(max(min(dot>>16, 2047), -2047)))
	return int(m.pr) << 4
}

// Update trains the weight set used by the last P on the coded bit.
func (m *Mixer) Update(bit int) {
	err := int32(bit<<12) - m.pr
	w := m.w[m.set : m.set+m.n]
	for i, x := range m.x {
		w[i] += (x * err) >> m.shift
	}
}

// APM (adaptive probability map, or SSE) refines a probability given a small
// context: for each context it keeps 33 probabilities at evenly spaced points
// of the stretch domain, interpolates between the two around the input, and
// moves both toward each coded bit.
type APM struct {
	t    []int32 // contexts x 33, 16-bit probabilities
	idx  int     // lower point used by the last Refine
	rate uint
}

// NewAPM returns a map over n contexts that starts as the identity.
// rateShift sets how fast it adapts (7 is lpaq's).
func NewAPM(n int, rateShift uint) *APM {
	a := &APM{t: make([]int32, n*33), rate: rateShift}
	for c := range n {
		for j := range 33 {
			a.t[c*33+j] = Squash(int32((j-16)*128)) * 16
		}
	}
	return a
}

// Refine returns the refined P(1) (16-bit) of p16 in context cx.
func (a *APM) Refine(p16 int, cx int) int {
	s := Stretch(int32(p16>>4)) + 2048 // 1..4095
	lo := s >> 7
	w := s & 127
	a.idx = cx*33 + int(lo)
	if w >= 64 {
		a.idx++ // the nearer point is the one trained
	}
	p := (a.t[cx*33+int(lo)]*(128-w) + a.t[cx*33+int(lo)+1]*w) >> 7
	return int(min(max(p, 16), 65520))
}

// Update trains the point nearest the last Refine's input on bit.
func (a *APM) Update(bit int) {
	g := int32(bit<<16) + int32(bit<<a.rate) - int32(bit) - int32(bit)
	a.t[a.idx] += (g - a.t[a.idx]) >> a.rate
}
