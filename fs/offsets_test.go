package fs

import (
	"fmt"
	"testing"
)

func TestSpans(t *testing.T) {
	for _, c := range []struct {
		off  uint64
		n    int
		bs   int
		want string
	}{
		{0, 0, 4096, "[]"},
		{0, 1, 4096, "[{0 0 1}]"},
		{0, 4096, 4096, "[{0 0 4096}]"},
		{4095, 2, 4096, "[{0 4095 1} {1 0 1}]"},
		{100, 10000, 4096, "[{0 100 3996} {1 0 4096} {2 0 1908}]"},
		{8192, 4096, 4096, "[{2 0 4096}]"},
		{1 << 40, 3, 65536, fmt.Sprintf("[{%d 0 3}]", (1<<40)/65536)},
		{65535, 65537, 65536, "[{0 65535 1} {1 0 65536}]"},
	} {
		got := fmt.Sprint(Spans(c.off, c.n, c.bs))
		if got != c.want {
			t.Errorf("Spans(%d, %d, %d) = %s, want %s", c.off, c.n, c.bs, got, c.want)
		}
	}
}

func TestBlockLen(t *testing.T) {
	for _, c := range []struct {
		size, blk uint64
		want      int
	}{
		{0, 0, 0}, {1, 0, 1}, {4096, 0, 4096}, {4096, 1, 0}, {4097, 1, 1}, {10000, 2, 1808}, {10000, 3, 0},
	} {
		if got := blockLen(c.size, c.blk, 4096); got != c.want {
			t.Errorf("blockLen(%d, %d) = %d, want %d", c.size, c.blk, got, c.want)
		}
	}
	for _, c := range []struct {
		size, want uint64
	}{{0, 0}, {1, 1}, {4096, 1}, {4097, 2}} {
		if got := blocksFor(c.size, 4096); got != c.want {
			t.Errorf("blocksFor(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

func TestAllZero(t *testing.T) {
	b := make([]byte, 37)
	if !allZero(b) || !allZero(nil) {
		t.Fatal("zeros not seen as zero")
	}
	for i := range b {
		b[i] = 1
		if allZero(b) {
			t.Fatalf("byte %d set, still all zero", i)
		}
		b[i] = 0
	}
}
