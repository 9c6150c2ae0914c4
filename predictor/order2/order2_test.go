package order2

import (
	"bytes"
	"testing"
)

func TestOrder2Learns(t *testing.T) {
	p := &Predictor{}
	data := bytes.Repeat([]byte("abcabcabd"), 200)
	m, err := p.New(len(data), p.Params(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(m)
	var last int
	for i, c := range data {
		for k := 7; k >= 0; k-- {
			bit := int(c>>uint(k)) & 1
			pr := m.P()
			if pr < 1 || pr > 65535 {
				t.Fatalf("probability %d out of range", pr)
			}
			if i == len(data)-1 && k == 0 {
				last = pr
			}
			m.Update(bit)
		}
	}
	// 'd' = 0x64 ends in bit 0, and after "ab" in this data the model has
	// seen mostly 'c' (0x63, last bit 1) — so check a fully determined bit
	// instead: the first bit of every byte is 0 with high confidence.
	_ = last
	m2, _ := p.New(len(data), 0)
	for _, c := range data[:len(data)-1] {
		for k := 7; k >= 0; k-- {
			m2.Update(int(c>>uint(k)) & 1)
		}
	}
	if pr := m2.P(); pr > 4000 {
		t.Fatalf("P(top bit = 1) = %d after 1800 bytes of lower-case text", pr)
	}
	if _, err := p.New(10, 1); err == nil {
		t.Fatal("order2 accepted a nonzero parameter byte")
	}
}
