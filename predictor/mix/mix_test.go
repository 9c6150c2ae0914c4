package mix

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestStretchInvertsSquash(t *testing.T) {
	prev := int32(0)
	for d := int32(-2047); d <= 2047; d++ {
		p := Squash(d)
		if p < 1 || p > 4095 || p < prev {
			t.Fatalf("squash(%d) = %d: out of range or not monotone", d, p)
		}
		prev = p
		if got := Squash(Stretch(p)); got != p {
			t.Fatalf("squash(stretch(%d)) = %d", p, got)
		}
	}
	if Squash(0) != 2047 && Squash(0) != 2048 {
		t.Errorf("squash(0) = %d, want one half", Squash(0))
	}
}

// TestMixerLearnsTheBetterInput feeds a good and a useless predictor of a
// biased bit source and checks that the mixer ends up close to the good one.
func TestMixerLearnsTheBetterInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := New(2, 1, []int32{32768, 32768}, 10)
	var cost, costGood float64
	for i := range 20000 {
		bit := 0
		if rng.IntN(10) == 0 {
			bit = 1
		}
		good := int32(65536 / 10) // the true P(1)
		bad := int32(60000)       // confidently wrong
		p := m.P([]int32{good, bad}, 0)
		if i >= 10000 {
			cost += bitCost(p, bit)
			costGood += bitCost(int(good), bit)
		}
		m.Update(bit)
	}
	if cost > costGood*1.05 {
		t.Errorf("mixer costs %.0f bits, the good input alone %.0f", cost, costGood)
	}
}

func bitCost(p16, bit int) float64 {
	p := float64(p16) / 65536
	if bit == 0 {
		p = 1 - p
	}
	return -math.Log2(p)
}

func TestAPMStartsAsIdentityAndAdapts(t *testing.T) {
	a := NewAPM(2, 7)
	for _, p := range []int{100, 8000, 32768, 50000, 65000} {
		got := a.Refine(p, 1)
		if d := got - p; d > p/20+64 || d < -(p/20+64) {
			t.Errorf("fresh APM maps %d to %d", p, got)
		}
	}
	// Context 0 always sees a 1 at input one half: its output must rise.
	for range 500 {
		a.Refine(32768, 0)
		a.Update(1)
	}
	if got := a.Refine(32768, 0); got < 60000 {
		t.Errorf("after 500 ones, APM gives %d for one half", got)
	}
	if got := a.Refine(32768, 1); got < 30000 || got > 36000 {
		t.Errorf("the other context moved too: %d", got)
	}
}

// TestConfidence: the buckets' edges, both signs.
func TestConfidence(t *testing.T) {
	for _, tc := range []struct {
		p16  int32
		want int
	}{{32768, 0}, {0, 3}, {65535, 3}} {
		if got := Confidence(tc.p16); got != tc.want {
			t.Errorf("Confidence(%d) = %d, want %d", tc.p16, got, tc.want)
		}
	}
	// Every bucket is reached, symmetrically.
	seen := map[int]bool{}
	for p := int32(0); p < 65536; p += 16 {
		c := Confidence(p)
		seen[c] = true
		st := Stretch(p >> 4)
		if st < 0 {
			st = -st
		}
		want := 0
		for _, edge := range []int32{256, 768, 1536} {
			if st >= edge {
				want++
			}
		}
		if c != want {
			t.Fatalf("Confidence(%d) = %d, want %d (|stretch| %d)", p, c, want, st)
		}
	}
	if len(seen) != 4 {
		t.Errorf("buckets reached: %v", seen)
	}
}
