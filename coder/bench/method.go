// Package bench measures lmfs codecs and reference compressors on the same
// blocks: compressed size, bits per byte, and compress and decompress speed
// per core (raw bytes over the summed CPU time of the worker threads) and by
// the wall clock, with every decoded block checked byte for byte. `lmfs
// bench` is its command line.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/lmfs/lmfs/coder"
)

// Method is one way of coding a block that the bench measures. Each block is
// coded on its own. Encode and Decode must be safe for concurrent use.
type Method struct {
	// Name is the name in tables and in --codecs.
	Name string
	// Note explains what the method is (shown under the table).
	Note string
	// Encode appends the coded form of raw to dst.
	Encode func(ctx context.Context, dst, raw []byte) ([]byte, error)
	// Decode appends the rawLen bytes coded in enc to dst.
	Decode func(ctx context.Context, dst, enc []byte, rawLen int) ([]byte, error)
	// Codec, if set, names the lmfs codec a coded block was stored with.
	Codec func(enc []byte) string
	// EncodeBatch and DecodeBatch, if set, code all blocks of a chunk in one
	// call (codecs that run on a GPU); the bench then uses them instead of
	// Encode and Decode on its workers.
	EncodeBatch func(ctx context.Context, raws [][]byte) ([][]byte, error)
	DecodeBatch func(ctx context.Context, encs [][]byte, rawLens []int) ([][]byte, error)
	// Device is where the method's model runs ("cpu" or a GPU), for
	// methods with a model.
	Device string
}

// lmfsDecode decodes block records with reg.
func lmfsDecode(reg *coder.Registry) func(context.Context, []byte, []byte, int) ([]byte, error) {
	return func(ctx context.Context, dst, enc []byte, _ int) ([]byte, error) {
		out, _, err := reg.Decode(ctx, dst, enc)
		return out, err
	}
}

func lmfsCodecOf(reg *coder.Registry) func([]byte) string {
	return func(enc []byte) string {
		if len(enc) < 2 {
			return "?"
		}
		return reg.NameOf(coder.ID(enc[1]))
	}
}

// Codec measures the lmfs codec name forced on every block, with no raw
// fallback, so that the codec itself is measured. Sizes are whole block
// records (header included).
func Codec(reg *coder.Registry, name string) (Method, error) {
	c, err := reg.ByName(name)
	if err != nil {
		return Method{}, err
	}
	m := Method{
		Name: name,
		Note: fmt.Sprintf("lmfs codec %s on every block (block records, header included; no raw fallback)", name),
		Encode: func(ctx context.Context, dst, raw []byte) ([]byte, error) {
			return reg.EncodeWith(ctx, dst, c, raw)
		},
		Decode: lmfsDecode(reg),
		Codec:  lmfsCodecOf(reg),
	}
	if bc, ok := c.(coder.BatchCodec); ok {
		m.Device = bc.Device()
		m.Note += fmt.Sprintf("; model on %s; all blocks of a chunk coded in one batch call (MB/s/core from the process CPU time)", m.Device)
		m.EncodeBatch = func(ctx context.Context, raws [][]byte) ([][]byte, error) {
			return reg.EncodeBatchWith(ctx, c, raws)
		}
		m.DecodeBatch = func(ctx context.Context, encs [][]byte, _ []int) ([][]byte, error) {
			return reg.DecodeBatch(ctx, encs)
		}
	}
	return m, nil
}

// Policy measures the Chooser of policy p: what lmfs stores by default.
func Policy(reg *coder.Registry, p coder.Policy) (Method, error) {
	ch, err := coder.NewChooser(reg, p)
	if err != nil {
		return Method{}, err
	}
	return Method{
		Name:   "policy:" + string(p),
		Note:   fmt.Sprintf("lmfs policy %s: per block the smallest of %v (block records)", p, ch.Codecs()),
		Encode: ch.Encode,
		Decode: lmfsDecode(reg),
		Codec:  lmfsCodecOf(reg),
	}, nil
}

// Zstd measures reference zstd at a zstd command-line level through
// klauspost/compress: one frame per block, no frame checksum.
func Zstd(level int) (Method, error) {
	el := zstd.EncoderLevelFromZstd(level)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(el), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
	if err != nil {
		return Method{}, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(2*coder.MaxBlockSize))
	if err != nil {
		return Method{}, err
	}
	return Method{
		Name: fmt.Sprintf("zstd-%d", level),
		Note: fmt.Sprintf("zstd -%d: klauspost/compress zstd level %s (its mapping of -%d), one frame per block, no checksum", level, el, level),
		Encode: func(_ context.Context, dst, raw []byte) ([]byte, error) {
			return enc.EncodeAll(raw, dst), nil
		},
		Decode: func(_ context.Context, dst, in []byte, _ int) ([]byte, error) {
			return dec.DecodeAll(in, dst)
		},
	}, nil
}

// XZ9 measures xz -9 through github.com/ulikunitz/xz for blocks of up to
// blockSize bytes: one .xz stream per block.
func XZ9(blockSize int) Method {
	dict := max(blockSize, lzma.MinDictCap)
	// ulikunitz's BinaryTree matcher compresses far worse than its
	// HashTable4 (4.73 against 3.00 bits per byte on the first 64 KiB of
	// alice29.txt, where liblzma's xz -9 reaches 2.79), so HashTable4 it is.
	wc := xz.WriterConfig{DictCap: dict, Matcher: lzma.HashTable4}
	rc := xz.ReaderConfig{DictCap: dict, SingleStream: true}
	return Method{
		Name: "xz-9",
		Note: fmt.Sprintf("xz -9: ulikunitz/xz, one .xz stream (CRC64) per block, LZMA2 lc3 lp0 pb2, dictionary %d bytes (xz -9's 64 MiB cannot reach past a block), HashTable4 match finder (xz -9 uses bt4, but ulikunitz's BinaryTree compresses worse than its HashTable4); ulikunitz has no nice_len/depth settings and compresses less than liblzma's xz -9", dict),
		Encode: func(_ context.Context, dst, raw []byte) ([]byte, error) {
			b := bytes.NewBuffer(dst)
			w, err := wc.NewWriter(b)
			if err != nil {
				return dst, err
			}
			if _, err := w.Write(raw); err != nil {
				return dst, err
			}
			if err := w.Close(); err != nil {
				return dst, err
			}
			return b.Bytes(), nil
		},
		Decode: func(_ context.Context, dst, in []byte, rawLen int) ([]byte, error) {
			r, err := rc.NewReader(bytes.NewReader(in))
			if err != nil {
				return dst, err
			}
			start := len(dst)
			dst = append(dst, make([]byte, rawLen)...)
			if _, err := io.ReadFull(r, dst[start:]); err != nil {
				return dst[:start], err
			}
			var one [1]byte
			if n, _ := r.Read(one[:]); n != 0 {
				return dst[:start], fmt.Errorf("xz stream holds more than %d bytes", rawLen)
			}
			return dst, nil
		},
	}
}

// Baselines are the reference compressors every bench run includes.
var Baselines = []string{"zstd-3", "zstd-19", "xz-9"}

// Standard returns the methods named in names, in this order: every codec
// in reg, the policies fast, balanced and max, then zstd-3, zstd-19 and
// xz-9. When names is empty it returns all of them except the superseded
// codecs (kept so that old blocks decode; they can still be named).
func Standard(reg *coder.Registry, blockSize int, names []string) ([]Method, error) {
	var all []string
	all = append(all, reg.Names()...)
	superseded := map[string]bool{}
	for _, n := range all {
		if c, err := reg.ByName(n); err == nil {
			if s, ok := c.(interface{ Superseded() bool }); ok && s.Superseded() {
				superseded[n] = true
			}
		}
	}
	for _, p := range []coder.Policy{coder.PolicyFast, coder.PolicyBalanced, coder.PolicyMax} {
		all = append(all, "policy:"+string(p))
	}
	all = append(all, Baselines...)
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for n := range want {
		found := false
		for _, a := range all {
			found = found || a == n
		}
		if !found {
			return nil, fmt.Errorf("unknown method %q: choose from %v", n, all)
		}
	}
	var ms []Method
	for _, n := range all {
		if len(want) > 0 && !want[n] || len(want) == 0 && superseded[n] {
			continue
		}
		var m Method
		var err error
		switch {
		case n == "zstd-3":
			m, err = Zstd(3)
		case n == "zstd-19":
			m, err = Zstd(19)
		case n == "xz-9":
			m = XZ9(blockSize)
		case len(n) > 7 && n[:7] == "policy:":
			m, err = Policy(reg, coder.Policy(n[7:]))
		default:
			m, err = Codec(reg, n)
		}
		if err != nil {
			return nil, fmt.Errorf("method %s: %w", n, err)
		}
		ms = append(ms, m)
	}
	return ms, nil
}
