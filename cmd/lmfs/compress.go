package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/coder/archive"
	"github.com/lmfs/lmfs/config"
)

// loadExcept loads the configuration like load, without binding the named
// flags (commands whose --block-size is not the store's fs.block_size).
func (a *app) loadExcept(cmd *cobra.Command, skip ...string) (*config.Config, error) {
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		for _, s := range skip {
			if f.Name == s {
				return
			}
		}
		fs.AddFlag(f)
	})
	sub := &cobra.Command{}
	sub.Flags().AddFlagSet(fs)
	return a.load(sub)
}

// registry builds the standard codec registry from the configuration.
func registry(c *config.Config) (*coder.Registry, error) {
	return coder.NewStandard(coder.Options{
		ZstdLevel: c.Codec.ZstdLevel, CMMemory: int64(c.Codec.CMMemory),
		Device: c.Predictor.Device, CUDALib: c.Predictor.CUDALib, MaxBatch: c.Predictor.CUDABatch,
	})
}

// gpuWorkers returns the number of blocks to code at once: with the LM codecs
// on a GPU, enough for the GPU's batches (predictor.cuda_batch), whose single
// block calls the codecs gather into batches; else nw.
func gpuWorkers(reg *coder.Registry, c *config.Config, nw int) int {
	for _, name := range []string{"lm", "lm+cm"} {
		if cd, err := reg.ByName(name); err == nil {
			if bc, ok := cd.(coder.BatchCodec); ok && bc.Device() != "cpu" {
				return max(nw, c.Predictor.CUDABatch)
			}
		}
	}
	return nw
}

// decodeWorkers returns the number of blocks to decode at once: with the LM
// codecs on a GPU, as gpuWorkers; on the CPU, with codec.workers unset,
// coder.LockstepWidth per core, so that their blocks decode in lockstep
// groups; else nw.
func decodeWorkers(reg *coder.Registry, c *config.Config, nw int) int {
	if n := gpuWorkers(reg, c, nw); n != nw {
		return n
	}
	if c.Codec.Workers > 0 {
		return nw
	}
	if coder.LockstepOnCPU(reg) {
		return coder.LockstepWidth * nw
	}
	return nw
}

// blockSizeFlag parses --block-size (e.g. 65536, 64KiB, 1M): any size from 1
// byte to coder.MaxBlockSize; empty means fs.block_size.
func blockSizeFlag(s string, c *config.Config) (int, error) {
	if s == "" {
		return int(c.FS.BlockSize), nil
	}
	n, err := config.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("--block-size: %w", err)
	}
	if n < 1 || n > coder.MaxBlockSize {
		return 0, fmt.Errorf("--block-size %s: use 1 byte .. %s", s, config.Size(coder.MaxBlockSize))
	}
	return int(n), nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress returns a progress callback drawing a bar on stderr when stderr is
// a terminal (total -1 when unknown), and a function that finishes it.
func (a *app) progress(desc string, total int64) (func(int), func()) {
	if !isTerminal(a.stderr) {
		return nil, func() {}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true),
	)
	return func(n int) { _ = bar.Add(n) }, func() { _ = bar.Finish() }
}

// openInput opens IN ("-" is stdin) and returns its size, -1 if unknown.
func (a *app) openInput(name string) (io.Reader, int64, func(), error) {
	if name == "-" {
		return a.stdin, -1, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, err
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		if fi.IsDir() {
			f.Close()
			return nil, 0, nil, fmt.Errorf("%s is a directory: give a file (or - for stdin)", name)
		}
		if fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}
	return f, size, func() { f.Close() }, nil
}

// output is OUT being written: stdout, or a temporary file renamed over OUT
// only when everything succeeded, so a failure never leaves a partial OUT.
type output struct {
	w    io.Writer
	f    *os.File
	name string
	mode os.FileMode
}

func (a *app) createOutput(in, name string, force, binary bool) (*output, error) {
	if name == "-" {
		if binary && isTerminal(a.stdout) {
			return nil, errors.New("refusing to write compressed data to a terminal: redirect stdout or give an output file")
		}
		return &output{w: a.stdout}, nil
	}
	if fi, err := os.Stat(name); err == nil {
		if !force {
			return nil, fmt.Errorf("%s exists: remove it or use --force to overwrite it", name)
		}
		if in != "-" {
			if ii, err := os.Stat(in); err == nil && os.SameFile(fi, ii) {
				return nil, fmt.Errorf("input and output are the same file (%s)", name)
			}
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s exists and is not a regular file", name)
		}
	}
	// OUT gets IN's permission bits, as gzip does, or 0644 for stdin.
	mode := os.FileMode(0o644)
	if in != "-" {
		if ii, err := os.Stat(in); err == nil && ii.Mode().IsRegular() {
			mode = ii.Mode().Perm()
		}
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	return &output{w: f, f: f, name: name, mode: mode}, nil
}

// finish renames the temporary file over OUT if err is nil, or removes it.
func (o *output) finish(err error) error {
	if o.f == nil {
		return err
	}
	if err == nil {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		_ = os.Chmod(o.f.Name(), o.mode)
		err = os.Rename(o.f.Name(), o.name)
	}
	if err != nil {
		os.Remove(o.f.Name())
	}
	return err
}

func codecSummary(reg *coder.Registry, by map[coder.ID]int) string {
	var parts []string
	for id, n := range by {
		parts = append(parts, fmt.Sprintf("%s %d", reg.NameOf(id), n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func bitsPerByte(comp, raw int64) float64 {
	if raw == 0 {
		return 0
	}
	return float64(comp) * 8 / float64(raw)
}

func workers(c *config.Config) int {
	if c.Codec.Workers > 0 {
		return c.Codec.Workers
	}
	return runtime.GOMAXPROCS(0)
}

func (a *app) newCompressCmd() *cobra.Command {
	var codecName, bsFlag string
	var force, verbose bool
	cmd := &cobra.Command{
		Use:   "compress [--codec NAME | --policy fast|balanced|max] [--block-size N] IN OUT",
		Short: "Compress a file into the lmfs compressed file format (- is stdin/stdout)",
		Long: `Compress IN into OUT without mounting anything. The input is cut into blocks that are
coded independently and in parallel on all cores, exactly as the filesystem stores them.
By default each block gets the smallest coding the codec.policy allows; --codec forces one
codec for every block (a block it would enlarge is stored raw). Use - for stdin or stdout.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.loadExcept(cmd, "block-size")
			if err != nil {
				return err
			}
			if codecName != "" && cmd.Flags().Changed("policy") {
				return errors.New("give --codec or --policy, not both")
			}
			bs, err := blockSizeFlag(bsFlag, c)
			if err != nil {
				return err
			}
			reg, err := registry(c)
			if err != nil {
				return err
			}
			var enc coder.BlockEncoder
			if codecName != "" {
				if enc, err = coder.NewFixed(reg, codecName); err != nil {
					return fmt.Errorf("--codec: %w", err)
				}
			} else {
				p, err := coder.ParsePolicy(c.Codec.Policy)
				if err != nil {
					return err
				}
				if enc, err = coder.NewChooser(reg, p); err != nil {
					return err
				}
			}
			nw := workers(c)
			if codecName == "lm" || codecName == "lm+cm" || codecName == "lm+cm.2" || codecName == "lm+cm.1" || c.Codec.Policy == string(coder.PolicyMax) {
				nw = gpuWorkers(reg, c, nw)
			}
			return a.compress(cmd.Context(), reg, enc, args[0], args[1], bs, nw, force, verbose)
		},
	}
	f := cmd.Flags()
	f.StringVar(&codecName, "codec", "", "code every block with this codec: raw, zstd or a prediction codec of this build (an unknown name lists them); default: the policy's choice")
	f.String("policy", "", "codec policy when --codec is not given: fast, balanced or max (default codec.policy)")
	f.StringVar(&bsFlag, "block-size", "", "raw block size, 1 byte .. 16MiB, e.g. 64KiB (default fs.block_size)")
	f.Int("workers", 0, "blocks coded in parallel (default codec.workers; 0: one per core)")
	f.BoolVarP(&force, "force", "f", false, "overwrite OUT if it exists")
	f.BoolVarP(&verbose, "verbose", "v", false, "print sizes and the codecs used on stderr")
	return cmd
}

// addModels registers the LM model files at paths with reg, so that blocks
// naming them decode.
func addModels(reg *coder.Registry, paths []string, cmMemory int64) error {
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("--model: %w", err)
		}
		if err := reg.RegisterModel(coder.ModelID(sha256.Sum256(data)), data, cmMemory); err != nil {
			return fmt.Errorf("--model %s: %w", p, err)
		}
	}
	return nil
}

func (a *app) compress(ctx context.Context, reg *coder.Registry, enc coder.BlockEncoder, in, out string, bs, nw int, force, verbose bool) error {
	r, size, closeIn, err := a.openInput(in)
	if err != nil {
		return err
	}
	defer closeIn()
	o, err := a.createOutput(in, out, force, true)
	if err != nil {
		return err
	}
	prog, done := a.progress("compress", size)
	st, err := archive.Compress(ctx, o.w, r, enc, archive.Options{BlockSize: bs, Workers: nw, Progress: prog})
	done()
	if err := o.finish(err); err != nil {
		return fmt.Errorf("compress %s: %w", in, err)
	}
	if verbose {
		fmt.Fprintf(a.stderr, "%s: %d -> %d bytes (%.3f bits/byte), %d blocks of %d bytes: %s\n",
			in, st.RawBytes, st.FileBytes, bitsPerByte(st.FileBytes, st.RawBytes), st.Blocks, bs, codecSummary(reg, st.ByCodec))
	}
	return nil
}

func (a *app) newDecompressCmd() *cobra.Command {
	var force, verbose bool
	var models []string
	cmd := &cobra.Command{
		Use:   "decompress IN OUT",
		Short: "Decompress a file written by lmfs compress, verifying every block (- is stdin/stdout)",
		Long: `Decompress IN into OUT. Blocks are decoded in parallel; every block's CRC32C and the
file's structure (frame checksums, index, trailer) are verified. On damage the command names
the bad block and its file offset and exits non-zero; an OUT file is then not created (with
stdout, the blocks before the bad one have been written).

Blocks coded with a neural LM name their model by its SHA-256. The built-in model is always
there; a file written with another model (for example the first built-in model, kept as
predictor/lm/testdata/wmlp1.lmm in the source tree) needs that model file given with --model.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.load(cmd)
			if err != nil {
				return err
			}
			reg, err := registry(c)
			if err != nil {
				return err
			}
			if err := addModels(reg, models, int64(c.Codec.CMMemory)); err != nil {
				return err
			}
			in, out := args[0], args[1]
			r, _, closeIn, err := a.openInput(in)
			if err != nil {
				return err
			}
			defer closeIn()
			o, err := a.createOutput(in, out, force, false)
			if err != nil {
				return err
			}
			prog, done := a.progress("decompress", -1)
			st, err := archive.Decompress(cmd.Context(), o.w, r, reg, archive.Options{Workers: decodeWorkers(reg, c, workers(c)), Progress: prog})
			done()
			if err := o.finish(err); err != nil {
				return fmt.Errorf("decompress %s: %w", in, err)
			}
			if verbose {
				fmt.Fprintf(a.stderr, "%s: %d -> %d bytes, %d blocks: %s\n", in, st.FileBytes, st.RawBytes, st.Blocks, codecSummary(reg, st.ByCodec))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Int("workers", 0, "blocks decoded in parallel (default codec.workers; 0: one per core)")
	f.BoolVarP(&force, "force", "f", false, "overwrite OUT if it exists")
	f.BoolVarP(&verbose, "verbose", "v", false, "print sizes and the codecs used on stderr")
	f.StringArrayVar(&models, "model", nil, "an LM model file to decode with besides the built-in one (repeatable)")
	return cmd
}
