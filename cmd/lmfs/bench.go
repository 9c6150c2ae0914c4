package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/lmfs/lmfs/coder/bench"
)

func (a *app) newBenchCmd() *cobra.Command {
	var bsFlag, codecs, jsonOut string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench [--block-size N] [--codecs LIST] [--json] FILE|DIR...",
		Short: "Measure every lmfs codec and policy against zstd -3, zstd -19 and xz -9 on the same blocks",
		Long: `Measure compressed size, bits per byte, and compress and decompress speed of every lmfs
codec (forced on every block), every codec policy, and zstd -3, zstd -19 and xz -9, each
block coded independently at the same block size, all in the same run. Blocks are coded in
parallel on all cores; MB/s is given per core (raw bytes over the summed CPU time of the
worker threads) and by the wall clock. Every decoded block is compared with the input.

A directory is read recursively; when it holds a MANIFEST.tsv (columns name and kind), totals
per kind and for the text-like kinds (text, code, log, json, csv) are added.
--codecs takes a comma-separated list of method names, e.g. zstd,policy:balanced,xz-9; without
it every method runs except the superseded codecs (lm+cm.1, lm+cm.2: kept so that old blocks
decode), which run when named.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.loadExcept(cmd, "block-size")
			if err != nil {
				return err
			}
			bs, err := blockSizeFlag(bsFlag, c)
			if err != nil {
				return err
			}
			reg, err := registry(c)
			if err != nil {
				return err
			}
			var names []string
			for _, n := range strings.Split(codecs, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
			methods, err := bench.Standard(reg, bs, names)
			if err != nil {
				return fmt.Errorf("--codecs: %w", err)
			}
			ins, err := bench.Collect(args)
			if err != nil {
				return err
			}
			if len(ins) == 0 {
				return errors.New("no files to measure: give files or directories that hold some")
			}
			var progress func(bench.Input)
			if isTerminal(a.stderr) {
				bar := progressbar.NewOptions(len(ins), progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish(), progressbar.OptionShowCount())
				defer bar.Finish()
				progress = func(in bench.Input) {
					bar.Describe(in.Name)
					_ = bar.Add(1)
				}
			}
			rep, err := bench.Run(cmd.Context(), ins, methods, bench.Options{BlockSize: bs, Workers: workers(c)}, progress)
			if err != nil {
				return err
			}
			if jsonOut != "" {
				if err := writeJSONFile(rep, jsonOut); err != nil {
					return err
				}
			}
			if asJSON {
				return rep.WriteJSON(a.stdout)
			}
			return rep.WriteTable(a.stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bsFlag, "block-size", "", "block size, 1 byte .. 16MiB, e.g. 64KiB (default fs.block_size)")
	f.StringVar(&codecs, "codecs", "", "comma-separated methods to measure (default: all but the superseded codecs; see --help)")
	f.BoolVar(&asJSON, "json", false, "write JSON instead of a table")
	f.StringVar(&jsonOut, "json-out", "", "also write the JSON report to this file")
	f.Int("workers", 0, "blocks coded in parallel (default codec.workers; 0: one per core)")
	return cmd
}

func writeJSONFile(rep *bench.Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--json-out: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("--json-out: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--json-out: %w", err)
	}
	return nil
}
