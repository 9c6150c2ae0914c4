package lm

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// refMatchFeatures is SPEC.md's "Match model" transcribed literally (plain
// ints, a map for MT, no shortcuts): the oracle of the tests.
func refMatchFeatures(x []byte) []uint16 {
	mt := map[int]int{}
	ptr, ln := 0, 0
	out := []uint16{0}
	for i := range x {
		if ptr != 0 {
			if x[ptr] == x[i] {
				ptr = ptr + 1
				ln = min(ln+1, 65535)
			} else {
				ptr, ln = 0, 0
			}
		}
		k := i + 1
		if k >= 5 {
			h := 0
			for j := k - 5; j <= k-1; j++ {
				h = ((h + int(x[j]) + 1) * 0x2F0B4A27) % (1 << 32)
			}
			h = h >> 16
			if ptr == 0 && mt[h] != 0 {
				c := mt[h]
				l := 0
				for l < 32 && c-1-l >= 0 && x[c-1-l] == x[k-1-l] {
					l = l + 1
				}
				if l >= 5 {
					ptr, ln = c, l
				}
			}
			mt[h] = k
		}
		f := 0
		if ptr != 0 {
			b := 7
			for i, lim := range []int{8, 12, 16, 24, 32, 64, 256} {
				if ln < lim {
					b = i
					break
				}
			}
			f = 1 + int(x[ptr])*8 + b
		}
		out = append(out, uint16(f))
	}
	return out
}

// pushAll feeds x to m byte by byte and returns f_0 .. f_len(x).
func pushAll(m *Matcher, x []byte) []uint16 {
	out := []uint16{0}
	for _, b := range x {
		out = append(out, m.Push(b))
	}
	return out
}

// matchFeature is the feature of a match predicting b with length ln.
func matchFeature(b byte, ln int) uint16 { return 1 + uint16(b)*8 + matchBucket(uint32(ln)) }

// collision returns two different 5-byte strings with the same table index.
func collision(t *testing.T) (a, b []byte) {
	t.Helper()
	seen := map[uint32][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		s := []byte{byte('a' + rng.IntN(26)), byte('a' + rng.IntN(26)), byte('a' + rng.IntN(26)), byte('a' + rng.IntN(26)), byte('a' + rng.IntN(26))}
		h := matchHash(s, 5)
		if o, ok := seen[h]; ok && !bytes.Equal(o, s) {
			return o, s
		}
		seen[h] = s
	}
	t.Fatal("no hash collision found")
	return nil, nil
}

func TestMatchFeaturesByHand(t *testing.T) {
	ca, cb := collision(t)
	long := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz!"), 20) // period 37
	type check struct {
		k int    // bytes known
		f uint16 // f_k
	}
	cases := []struct {
		name   string
		in     []byte
		checks []check
		zeroTo int // f_0 .. f_zeroTo are 0
	}{
		{name: "empty", in: nil, zeroTo: 0},
		{name: "shorter than 5", in: []byte("abab"), zeroTo: 4},
		{name: "no repeat", in: []byte("abcdefghijklmnop"), zeroTo: 16},
		{
			// "hello" recurs at byte 6..10: after its 5th byte (k = 11) the
			// match points at x[5] = ' ' with length 5.
			name: "repeat found at its 5th byte", in: []byte("hello hello world"),
			zeroTo: 10,
			checks: []check{{11, matchFeature(' ', 5)}, {12, matchFeature('h', 6)}},
		},
		{
			// The match predicts 'X' after "abcde"; the block has 'Y': the
			// match ends, and "bcdeY" was never seen.
			name: "mismatch ends a match", in: []byte("abcdeX..abcdeY"),
			zeroTo: 12,
			checks: []check{{13, matchFeature('X', 5)}, {14, 0}},
		},
		{
			// Two different 5-byte contexts share a table entry: the second
			// finds the first's position but the 5-byte check rejects it.
			name: "hash collision rejected", in: append(append(bytes.Clone(ca), '.'), cb...),
			zeroTo: 11,
		},
		{
			// Lengths: the repeat starts at k = 42 with length 5 and grows by
			// one per byte; the bucket follows 8, 12, 16, 24, 32, 64, 256.
			name: "length buckets", in: long,
			zeroTo: 41,
			checks: []check{
				{42, matchFeature(long[5], 5)}, {44, matchFeature(long[7], 7)},
				{45, matchFeature(long[8], 8)}, {48, matchFeature(long[11], 11)},
				{49, matchFeature(long[12], 12)}, {53, matchFeature(long[16], 16)},
				{61, matchFeature(long[24], 24)}, {69, matchFeature(long[32], 32)},
				{101, matchFeature(long[64], 64)}, {292, matchFeature(long[255], 255)},
				{293, matchFeature(long[256], 256)}, {740, matchFeature(long[703], 703)},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := MatchFeatures(nil, c.in)
			if len(got) != len(c.in)+1 {
				t.Fatalf("%d features for %d bytes", len(got), len(c.in))
			}
			if want := refMatchFeatures(c.in); !slices.Equal(got, want) {
				t.Fatalf("MatchFeatures differs from the SPEC transcription:\n got %v\nwant %v", got, want)
			}
			for k := 0; k <= c.zeroTo; k++ {
				if got[k] != 0 {
					t.Errorf("f_%d = %d, want 0 (no match yet)", k, got[k])
				}
			}
			for _, ch := range c.checks {
				if got[ch.k] != ch.f {
					t.Errorf("f_%d = %d, want %d", ch.k, got[ch.k], ch.f)
				}
			}
			if c.zeroTo < len(c.in) && len(c.checks) == 0 && slices.ContainsFunc(got, func(f uint16) bool { return f != 0 }) {
				t.Errorf("features %v, want all 0", got)
			}
		})
	}
	// The feature after the length passes 65535 stays in the top bucket.
	zeros := make([]byte, 70000)
	got := MatchFeatures(nil, zeros)
	if want := refMatchFeatures(zeros); !slices.Equal(got, want) {
		t.Fatal("a 70000-byte run of zeros: MatchFeatures differs from the SPEC transcription")
	}
	if got[70000] != matchFeature(0, 7000) {
		t.Errorf("f after 70000 zeros = %d, want %d", got[70000], matchFeature(0, 7000))
	}
}

// TestMatcherReuse checks that a Matcher gives the same features for a
// block whatever blocks it saw before (Reset clears every trace of them),
// for short blocks (entries cleared one by one) and long ones (the whole
// table).
func TestMatcherReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	text := bytes.Repeat([]byte("the cat sat on the mat; the dog sat on the log. "), 400)
	blocks := [][]byte{text[:100], text[7:3000], {}, text[:matchClearAll+50], text[3:40], []byte("abc")}
	for range 4 {
		n := rng.IntN(2000)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.IntN(3))
		}
		blocks = append(blocks, b)
	}
	m := NewMatcher()
	var feats []uint16
	for i, blk := range blocks {
		want := refMatchFeatures(blk)
		m.Reset()
		if got := pushAll(m, blk); !slices.Equal(got, want) {
			t.Fatalf("block %d (%d bytes) pushed after others: features differ from the SPEC transcription", i, len(blk))
		}
		if m.Len() != len(blk) {
			t.Errorf("Len() = %d after %d bytes", m.Len(), len(blk))
		}
		feats = m.Features(feats[:0], blk)
		if !slices.Equal(feats, want) {
			t.Fatalf("block %d: Features after Push differs", i)
		}
	}
	// Features leaves the matcher reset.
	if got := pushAll(m, []byte("hello hello")); !slices.Equal(got, refMatchFeatures([]byte("hello hello"))) {
		t.Fatal("Push after Features differs")
	}
	// MatchFeatures appends.
	if got := MatchFeatures([]uint16{9}, []byte("ab")); !slices.Equal(got, []uint16{9, 0, 0, 0}) {
		t.Errorf("MatchFeatures appending to [9]: %v", got)
	}
}

// FuzzMatchFeatures checks MatchFeatures against Matcher.Push byte by byte
// and against the SPEC transcription.
func FuzzMatchFeatures(f *testing.F) {
	f.Add([]byte("hello hello hello world, hello world"))
	f.Add(bytes.Repeat([]byte{0}, 100))
	f.Add([]byte("abcdeXabcdeYabcdeX"))
	f.Add([]byte{1, 2, 3})
	m := NewMatcher()
	f.Fuzz(func(t *testing.T, in []byte) {
		got := MatchFeatures(nil, in)
		m.Reset()
		if pushed := pushAll(m, in); !slices.Equal(got, pushed) {
			t.Fatalf("MatchFeatures %v, Push %v", got, pushed)
		}
		if want := refMatchFeatures(in); !slices.Equal(got, want) {
			t.Fatalf("MatchFeatures %v, SPEC %v", got, want)
		}
		for _, v := range got {
			if v >= NumMatchFeatures {
				t.Fatalf("feature %d out of range", v)
			}
		}
	})
}

// BenchmarkMatcher measures the match model alone, per byte.
func BenchmarkMatcher(b *testing.B) {
	text := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog. func main() { x := 1 }\n"), 1000)[:64<<10]
	m := NewMatcher()
	var dst []uint16
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		dst = m.Features(dst[:0], text)
	}
}
