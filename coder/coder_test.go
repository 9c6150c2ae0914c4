package coder

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
)

func testRegistry(t testing.TB) *Registry {
	t.Helper()
	z, err := NewZstd(3)
	if err != nil {
		t.Fatal(err)
	}
	return NewRegistry(z)
}

func testInputs() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 70000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog. "), 1500)
	return map[string][]byte{
		"empty":      {},
		"one":        {42},
		"zeros":      make([]byte, 65536),
		"random":     random,
		"text":       text,
		"odd-length": text[:12345],
	}
}

func TestRoundTripEveryCodec(t *testing.T) {
	reg := testRegistry(t)
	ctx := context.Background()
	for _, name := range reg.Names() {
		c, _ := reg.ByName(name)
		for in, raw := range testInputs() {
			t.Run(name+"/"+in, func(t *testing.T) {
				rec, err := reg.EncodeWith(ctx, nil, c, raw)
				if err != nil {
					t.Fatal(err)
				}
				got, h, err := reg.Decode(ctx, nil, rec)
				if err != nil {
					t.Fatal(err)
				}
				if h.Codec != c.ID() || h.RawLen != len(raw) {
					t.Fatalf("header %+v", h)
				}
				if !bytes.Equal(got, raw) {
					t.Fatal("round trip mismatch")
				}
			})
		}
	}
}

func TestChooserNeverLargerThanRaw(t *testing.T) {
	reg := testRegistry(t)
	for _, p := range []Policy{PolicyFast, PolicyBalanced, PolicyMax} {
		ch, err := NewChooser(reg, p)
		if err != nil {
			t.Fatal(err)
		}
		for in, raw := range testInputs() {
			rec, err := ch.Encode(context.Background(), nil, raw)
			if err != nil {
				t.Fatal(err)
			}
			rawRec, _ := reg.EncodeWith(context.Background(), nil, Raw{}, raw)
			if len(rec) > len(rawRec) {
				t.Errorf("%s/%s: %d bytes > raw record %d", p, in, len(rec), len(rawRec))
			}
			got, _, err := reg.Decode(context.Background(), nil, rec)
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("%s/%s: round trip failed: %v", p, in, err)
			}
		}
	}
}

func TestCorruptionDetected(t *testing.T) {
	reg := testRegistry(t)
	ctx := context.Background()
	raw := testInputs()["text"]
	z, _ := reg.ByName("zstd")
	for _, c := range []Codec{Raw{}, z} {
		rec, _ := reg.EncodeWith(ctx, nil, c, raw)
		// Flip one bit in every position of the record in turn (sampled).
		for i := 0; i < len(rec); i += 1 + len(rec)/300 {
			bad := bytes.Clone(rec)
			bad[i] ^= 0x10
			got, _, err := reg.Decode(ctx, nil, bad)
			if err == nil && !bytes.Equal(got, raw) {
				t.Fatalf("%s: flip at %d decoded wrong bytes without error", c.Name(), i)
			}
		}
	}
}

func TestNewerFormatRefused(t *testing.T) {
	reg := testRegistry(t)
	rec, _ := reg.EncodeWith(context.Background(), nil, Raw{}, []byte("abc"))
	rec[0] = FormatVersion + 1
	_, _, err := reg.Decode(context.Background(), nil, rec)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("newer")) {
		t.Fatalf("want a newer-format error, got %v", err)
	}
}

func TestUnknownCodec(t *testing.T) {
	reg := testRegistry(t)
	rec, _ := reg.EncodeWith(context.Background(), nil, Raw{}, []byte("abc"))
	rec[1] = 200
	_, _, err := reg.Decode(context.Background(), nil, rec)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("want ErrCorrupt, got %v", err)
	}
}

func TestLooksIncompressible(t *testing.T) {
	in := testInputs()
	if !LooksIncompressible(in["random"], len(in["random"])) {
		t.Error("random data not detected")
	}
	if LooksIncompressible(in["text"], len(in["text"])) {
		t.Error("text judged incompressible")
	}
}

func FuzzDecode(f *testing.F) {
	reg := testRegistry(f)
	ctx := context.Background()
	for _, raw := range testInputs() {
		for _, n := range reg.Names() {
			c, _ := reg.ByName(n)
			rec, _ := reg.EncodeWith(ctx, nil, c, raw[:min(len(raw), 2000)])
			f.Add(rec)
		}
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		got, h, err := reg.Decode(ctx, nil, rec)
		if err != nil {
			return
		}
		if len(got) != h.RawLen || Checksum(got) != h.CRC {
			t.Fatalf("decoded without error but length/CRC disagree")
		}
	})
}
