package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/lmfs/lmfs/coder"
)

func testRegistry(t testing.TB) *coder.Registry {
	t.Helper()
	o := coder.DefaultOptions()
	o.NoLM = true // the format and the harness do not depend on the codec; the LM codes ~15 KB/s
	reg, err := coder.NewStandard(o)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// testData mixes text (zstd wins) with random runs (raw wins).
func testData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	words := []string{"block ", "index ", "trailer ", "lmfs ", "the ", "of ", "compress\n"}
	var b bytes.Buffer
	for b.Len() < n {
		if rng.IntN(8) == 0 {
			for range rng.IntN(300) {
				b.WriteByte(byte(rng.Uint32()))
			}
			continue
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func encoders(t testing.TB, reg *coder.Registry) map[string]coder.BlockEncoder {
	t.Helper()
	m := map[string]coder.BlockEncoder{}
	for _, name := range reg.Names() {
		f, err := coder.NewFixed(reg, name)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = f
	}
	ch, err := coder.NewChooser(reg, coder.PolicyMax)
	if err != nil {
		t.Fatal(err)
	}
	m["policy-max"] = ch
	return m
}

func compress(t testing.TB, enc coder.BlockEncoder, raw []byte, bs int) []byte {
	t.Helper()
	var out bytes.Buffer
	st, err := Compress(context.Background(), &out, bytes.NewReader(raw), enc, Options{BlockSize: bs, Workers: 3, Window: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.RawBytes != int64(len(raw)) || st.FileBytes != int64(out.Len()) {
		t.Fatalf("stats %+v for %d raw bytes, %d file bytes", st, len(raw), out.Len())
	}
	return out.Bytes()
}

// decodeAll reads f through the streaming path and through Open, and checks
// that both agree.
func decodeAll(t testing.TB, reg *coder.Registry, file []byte) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	_, err := Decompress(context.Background(), &out, bytes.NewReader(file), reg, Options{Workers: 2, Window: 3})
	var ra []byte
	f, oerr := Open(bytes.NewReader(file), int64(len(file)))
	if oerr == nil {
		for i := range f.NumBlocks() {
			ra, oerr = f.ReadBlock(context.Background(), reg, i, ra)
			if oerr != nil {
				break
			}
		}
	}
	if (err == nil) != (oerr == nil) {
		t.Fatalf("streaming reader says %v, random access says %v", err, oerr)
	}
	if err == nil && !bytes.Equal(out.Bytes(), ra) {
		t.Fatal("streaming and random-access reads differ")
	}
	return out.Bytes(), err
}

// slowCodecMax bounds the inputs given to the prediction codecs (about 1 MB/s
// per core, far less under -race) in the round-trip table.
const slowCodecMax = 20000

// slowEncoder reports whether the named encoder runs a prediction codec.
func slowEncoder(name string) bool {
	switch name {
	case "raw", "zstd":
		return false
	}
	return true
}

func TestRoundTrip(t *testing.T) {
	reg := testRegistry(t)
	encs := encoders(t, reg)
	for _, bs := range []int{1, 7, 1000, 4096, 65536} {
		sizes := []int{0, 1, bs - 1, bs, bs + 1, 5*bs + 3, 40 * bs}
		for _, n := range sizes {
			if n < 0 || n > 300000 {
				continue
			}
			raw := testData(n, uint64(n))
			for name, enc := range encs {
				if n > slowCodecMax && slowEncoder(name) {
					continue // the file format does not depend on the codec; keep -race runs short
				}
				t.Run(fmt.Sprintf("bs%d/n%d/%s", bs, n, name), func(t *testing.T) {
					file := compress(t, enc, raw, bs)
					got, err := decodeAll(t, reg, file)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, raw) {
						t.Fatalf("round trip mismatch: %d bytes in, %d out", len(raw), len(got))
					}
					f, err := Open(bytes.NewReader(file), int64(len(file)))
					if err != nil {
						t.Fatal(err)
					}
					if f.RawSize() != int64(n) || f.BlockSize() != bs || f.NumBlocks() != (n+bs-1)/bs {
						t.Fatalf("Open: raw %d, bs %d, blocks %d", f.RawSize(), f.BlockSize(), f.NumBlocks())
					}
				})
			}
		}
	}
}

func TestEmptyFileSize(t *testing.T) {
	reg := testRegistry(t)
	file := compress(t, encoders(t, reg)["zstd"], nil, 4096)
	if len(file) != EmptySize {
		t.Fatalf("empty input gives %d bytes, want %d", len(file), EmptySize)
	}
}

// smallFile is a file of three blocks: text (zstd), random (raw), short text.
func smallFile(t testing.TB, reg *coder.Registry) ([]byte, []byte) {
	t.Helper()
	raw := testData(2*64+20, 3)
	copy(raw[64:128], bytes.Repeat([]byte{0x5a, 0xa5, 0x3c, 0x99, 0x01, 0xfe, 0x77, 0x10}, 8))
	ch, err := coder.NewChooser(reg, coder.PolicyFast)
	if err != nil {
		t.Fatal(err)
	}
	return raw, compress(t, ch, raw, 64)
}

func TestEveryTruncationFails(t *testing.T) {
	reg := testRegistry(t)
	_, file := smallFile(t, reg)
	for n := range len(file) {
		if _, err := decodeAll(t, reg, file[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(file))
		} else if n >= len(Magic) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d bytes: error %q wraps neither ErrTruncated nor ErrCorrupt", n, err)
		}
	}
}

func TestEveryBitFlipFails(t *testing.T) {
	reg := testRegistry(t)
	_, file := smallFile(t, reg)
	for i := range len(file) * 8 {
		bad := bytes.Clone(file)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := decodeAll(t, reg, bad); err == nil {
			t.Fatalf("bit %d of byte %d flipped: no error", i%8, i/8)
		}
	}
}

func TestErrors(t *testing.T) {
	reg := testRegistry(t)
	_, file := smallFile(t, reg)
	rehdr := func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
		return b
	}
	f, err := Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	block1 := f.offsets[1]
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		is     error
		want   string
	}{
		{"empty", func([]byte) []byte { return nil }, ErrNotArchive, "empty"},
		{"bad magic", func(b []byte) []byte { b[1] = 'X'; return b }, ErrNotArchive, "bad magic"},
		{"gzip", func([]byte) []byte { return []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3} }, ErrNotArchive, "bad magic"},
		{"newer version", func(b []byte) []byte { b[8] = Version + 1; return rehdr(b) }, ErrVersion, "upgrade lmfs"},
		{"header crc", func(b []byte) []byte { b[12]++; return b }, ErrCorrupt, "file header checksum"},
		{"flags", func(b []byte) []byte { b[9] = 1; return rehdr(b) }, ErrCorrupt, "reserved"},
		{"block size 0", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 0); return rehdr(b) }, ErrCorrupt, "block size 0"},
		{"trailing data", func(b []byte) []byte { return append(b, 0) }, ErrCorrupt, ""},
		{"corrupt index", func(b []byte) []byte { b[len(b)-TrailerSize-3] ^= 4; return b }, ErrCorrupt, "index"},
		{"corrupt trailer magic", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, ErrCorrupt, "trailer magic"},
		{"corrupt block 1", func(b []byte) []byte { b[block1+20] ^= 0x10; return b }, ErrCorrupt, fmt.Sprintf("block 1 (file offset %d)", block1)},
		{"truncated in block 1", func(b []byte) []byte { return b[:block1+12] }, ErrTruncated, fmt.Sprintf("block 1 (file offset %d)", block1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAll(t, reg, tc.mutate(bytes.Clone(file)))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %v", err, tc.is)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestBlockCRCNamesBlock damages a record so that its frame checksum still
// holds but the block's CRC32C does not: the block decoder must catch it and
// the error must name the block.
func TestBlockCRCNamesBlock(t *testing.T) {
	reg := testRegistry(t)
	raw := testData(3*512, 9)
	file := compress(t, encoders(t, reg)["raw"], raw, 512)
	f, err := Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	off := f.offsets[2]
	n := binary.LittleEndian.Uint32(file[off:])
	file[off+frameHeaderSize+100] ^= 1
	binary.LittleEndian.PutUint32(file[off+4:], frameCRC(file[off:off+4], file[off+frameHeaderSize:off+frameHeaderSize+int64(n)]))
	var out bytes.Buffer
	_, err = Decompress(context.Background(), &out, bytes.NewReader(file), reg, Options{})
	var be *BlockError
	if !errors.As(err, &be) || be.Block != 2 || be.Offset != off || !errors.Is(err, coder.ErrCorrupt) {
		t.Fatalf("error %v, want a corrupt-block error for block 2 at %d", err, off)
	}
	if !bytes.Equal(out.Bytes(), raw[:1024]) {
		t.Fatalf("the %d bytes before the bad block were not written intact", out.Len())
	}
}

func TestWriterRefusesBadSequences(t *testing.T) {
	reg := testRegistry(t)
	ctx := context.Background()
	rec := func(n int) []byte {
		r, err := reg.EncodeWith(ctx, nil, coder.Raw{}, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	w, err := NewWriter(io.Discard, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(rec(0)); err == nil {
		t.Error("empty block accepted")
	}
	if err := w.WriteRecord(rec(11)); err == nil {
		t.Error("block larger than the block size accepted")
	}
	if err := w.WriteRecord(rec(5)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(rec(10)); err == nil {
		t.Error("block after a short block accepted")
	}
	if _, err := NewWriter(io.Discard, 0); err == nil {
		t.Error("block size 0 accepted")
	}
	if _, err := NewWriter(io.Discard, coder.MaxBlockSize+1); err == nil {
		t.Error("block size above the maximum accepted")
	}
}

func TestFixedFallsBackToRaw(t *testing.T) {
	reg := testRegistry(t)
	rng := rand.New(rand.NewPCG(5, 5))
	raw := make([]byte, 5000)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	f, err := coder.NewFixed(reg, "zstd")
	if err != nil {
		t.Fatal(err)
	}
	file := compress(t, f, raw, 1000)
	of, err := Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range of.NumBlocks() {
		fr, err := of.Record(i, nil)
		if err != nil {
			t.Fatal(err)
		}
		if coder.ID(fr.Record[1]) != coder.IDRaw || len(fr.Record) != coder.RawRecordSize(1000) {
			t.Errorf("block %d of random data stored with codec %d in %d bytes, want raw", i, fr.Record[1], len(fr.Record))
		}
	}
}

func TestCancel(t *testing.T) {
	reg := testRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Compress(ctx, io.Discard, bytes.NewReader(testData(100000, 1)), encoders(t, reg)["zstd"], Options{BlockSize: 100})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Compress after cancel: %v", err)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteErrorStops(t *testing.T) {
	reg := testRegistry(t)
	raw := testData(1<<20, 2)
	_, err := Compress(context.Background(), &failWriter{n: 300000}, bytes.NewReader(raw), encoders(t, reg)["raw"], Options{BlockSize: 4096, Window: 2})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("disk full")) {
		t.Fatalf("error %v, want disk full", err)
	}
	file := compress(t, encoders(t, reg)["raw"], raw, 4096)
	_, err = Decompress(context.Background(), &failWriter{n: 10000}, bytes.NewReader(file), reg, Options{})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("disk full")) {
		t.Fatalf("error %v, want disk full", err)
	}
}

func FuzzDecompress(f *testing.F) {
	reg := testRegistry(f)
	encs := encoders(f, reg)
	for i, n := range []int{0, 1, 63, 64, 65, 300} {
		raw := testData(n, uint64(i))
		f.Add(compress(f, encs["raw"], raw, 64))
		f.Add(compress(f, encs["zstd"], raw, 64))
		f.Add(compress(f, encs["policy-max"], raw, 7))
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		decodeAll(t, reg, file)
	})
}
