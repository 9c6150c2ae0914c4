package cm

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/lmfs/lmfs/predictor"
)

func TestSquashTable(t *testing.T) {
	// The integer table must follow 4096/(1+e^(-d/256)) closely. Floats are
	// used only here, to check the integer table.
	for d := int32(-2047); d <= 2047; d++ {
		want := 4096 / (1 + math.Exp(-float64(d)/256))
		if got := float64(squash(d)); math.Abs(got-want) > 2+want*0.03 {
			t.Fatalf("squash(%d) = %v, want about %.1f", d, got, want)
		}
	}
	prev := int32(-1 << 30)
	for p := int32(0); p < 4096; p++ {
		s := stretch(p)
		if s < prev {
			t.Fatalf("stretch not monotonic at %d", p)
		}
		prev = s
		if p >= 1 && p <= 4095 {
			if back := squash(s); back < p-60 || back > p+60 {
				t.Fatalf("squash(stretch(%d)) = %d", p, back)
			}
		}
	}
}

func TestStates(t *testing.T) {
	seen := map[[2]int32]bool{}
	for s := 0; s < 256; s++ {
		k := [2]int32{tab.n0[s], tab.n1[s]}
		if s > 0 && k == [2]int32{} {
			break // unused states
		}
		if seen[k] {
			t.Fatalf("state %d duplicates counts %v", s, k)
		}
		seen[k] = true
		n0 := tab.n0[tab.next[s][0]]
		n1 := tab.n1[tab.next[s][1]]
		if n0 < tab.n0[s] && tab.n0[s] < int32(histLimit[0]) {
			t.Fatalf("state %d: a zero lowered n0", s)
		}
		if n1 < tab.n1[s] && tab.n1[s] < int32(histLimit[0]) {
			t.Fatalf("state %d: a one lowered n1", s)
		}
	}
	if len(seen) < 100 {
		t.Fatalf("only %d bit-history states", len(seen))
	}
}

func TestParams(t *testing.T) {
	p := New(64 << 20)
	for _, n := range []int{0, 1, 100, 64 << 10, 1 << 20, 16 << 20} {
		lg := p.Params(n)
		if lg < minSlotsLog || lg > maxSlotsLog {
			t.Fatalf("Params(%d) = %d", n, lg)
		}
		if int64(16)<<lg+fixedMemory > 64<<20 {
			t.Fatalf("Params(%d) = %d exceeds the memory bound", n, lg)
		}
		m, err := p.New(n, lg)
		if err != nil {
			t.Fatal(err)
		}
		p.Release(m)
	}
	if _, err := p.New(10, 3); !errors.Is(err, predictor.ErrBadParams) {
		t.Fatalf("want ErrBadParams, got %v", err)
	}
	small := New(0)
	if _, err := small.New(1<<20, 22); err == nil || errors.Is(err, predictor.ErrBadParams) {
		t.Fatalf("a block needing more memory than configured: got %v", err)
	}
}

// run feeds data through a model and returns its probabilities, bit by bit.
func run(p *Predictor, data []byte) []int {
	m, err := p.New(len(data), p.Params(len(data)))
	if err != nil {
		panic(err)
	}
	defer p.Release(m)
	var out []int
	for _, c := range data {
		for k := 7; k >= 0; k-- {
			pr := m.P()
			out = append(out, pr)
			m.Update(int(c>>uint(k)) & 1)
		}
	}
	return out
}

func TestModelDeterministicAndReset(t *testing.T) {
	data := bytes.Repeat([]byte("abracadabra, said the magician; abracadabra! "), 50)
	p := New(64 << 20)
	a := run(p, data)
	// a pooled model must behave exactly like a fresh one
	run(p, []byte("something else entirely, to dirty the pooled tables"))
	b := run(p, data)
	c := run(New(64<<20), data)
	for i := range a {
		if a[i] != b[i] || a[i] != c[i] {
			t.Fatalf("bit %d: probabilities %d, %d, %d differ", i, a[i], b[i], c[i])
		}
		if a[i] < 1 || a[i] >= 1<<predictor.ProbBits {
			t.Fatalf("bit %d: probability %d out of range", i, a[i])
		}
	}
	// it learns: the cost of the last repeat is far below 8 bits a byte
	cost := 0.0
	bits := a[len(a)-8*46:]
	tail := data[len(data)-46:]
	for i, pr := range bits {
		bit := int(tail[i/8]>>uint(7-i%8)) & 1
		q := float64(pr) / 65536
		if bit == 0 {
			q = 1 - q
		}
		cost -= math.Log2(q)
	}
	if cost > 46*0.5 {
		t.Fatalf("last repeat costs %.1f bits", cost)
	}
}

func BenchmarkModel(b *testing.B) {
	data := bytes.Repeat([]byte("The cm model predicts bits of text; it mixes orders 0 to 6, words and matches. "), 800)
	p := New(64 << 20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		run(p, data)
	}
}
