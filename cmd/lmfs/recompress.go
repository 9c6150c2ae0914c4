package main

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	lfs "github.com/lmfs/lmfs/fs"
)

func (a *app) newRecompressCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recompress [--store DIR] [--policy P]",
		Short: "Re-code the blocks of an unmounted store with a codec policy, on all cores",
		Long: `Re-code every block of the store (config store.path, or --store) that the
policy (config codec.policy, or --policy) has not been tried on yet: blocks
written by the fast write path (zstd or raw), or a whole store written with
--policy fast, upgraded later with --policy balanced or max. Each block keeps
the smaller of its old and new record; blocks stay readable throughout, and an
interrupted run loses nothing (run it again to go on). The store must not be
mounted: a mounted store is recompressed by lmfs itself when it is idle
(config recompress.enabled, recompress.idle).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.load(cmd)
			if err != nil {
				return err
			}
			pol, err := coder.ParsePolicy(c.Codec.Policy)
			if err != nil {
				return err
			}
			level := lfs.PolicyLevel(pol)
			if level == blockstore.LevelFast {
				return fmt.Errorf("policy %s re-codes nothing: every block has been coded with zstd at least; use --policy balanced or max", pol)
			}
			if !blockstore.Exists(c.Store.Path) {
				return fmt.Errorf("no lmfs store in %s: give the store with --store DIR", c.Store.Path)
			}
			ctx := cmd.Context()
			st, err := blockstore.Open(ctx, blockstore.Options{Dir: c.Store.Path, MemTableSize: int64(c.Store.MemTableSize)})
			if errors.Is(err, blockstore.ErrInUse) {
				return fmt.Errorf("%w\n(a mounted store is recompressed by lmfs itself while the filesystem is idle, with config recompress.enabled: true; see lmfs stats MOUNTPOINT for what is waiting; to do it all at once, unmount and run lmfs recompress)", err)
			}
			if err != nil {
				return err
			}
			defer st.Close()
			reg, err := registry(c)
			if err != nil {
				return err
			}
			if err := lfs.PrepareModels(st, reg, int64(c.Codec.CMMemory), pol == coder.PolicyMax, slog.Default()); err != nil {
				return err
			}
			ch, err := coder.NewChooser(reg, pol)
			if err != nil {
				return err
			}
			blocks, byts, err := st.Pending(ctx, level)
			if err != nil {
				return err
			}
			var nBlocks, nBytes uint64
			for id, n := range blocks {
				nBlocks += n
				nBytes += byts[id]
			}
			if nBlocks == 0 {
				fmt.Fprintf(a.stdout, "nothing to do: every block of %s has been coded with policy %s (or better)\n", c.Store.Path, pol)
				return nil
			}
			workers := c.Codec.Workers
			if workers <= 0 {
				workers = runtime.NumCPU()
			}
			fmt.Fprintf(a.stdout, "re-coding %d blocks (%s stored) with policy %s on %d workers\n", nBlocks, human(nBytes), pol, workers)
			add, finish := a.progress("recompress", int64(nBytes))
			var seen uint64
			start := time.Now()
			rs, err := lfs.Recompress(ctx, st, reg, ch, level, workers, nil, func(p lfs.Progress) {
				if add != nil {
					add(int(p.Before - seen))
				}
				seen = p.Before
			})
			finish()
			el := time.Since(start)
			// Blocks a stopped run did not finish: those it was coding and
			// those it never got to.
			left := rs.Stopped
			if done := rs.Recoded + rs.Kept + rs.Lost + rs.Failed; err != nil && nBlocks > done {
				left = max(left, nBlocks-done)
			}
			fmt.Fprintf(a.stdout, "re-coded %d blocks smaller, kept %d, %d changed meanwhile, %d left for a later run (stopped), %d failed: %d -> %d stored bytes (%s -> %s) for %d data bytes in %v (%.2f MB/s of data)\n",
				rs.Recoded, rs.Kept, rs.Lost, left, rs.Failed, rs.Before, rs.After, human(rs.Before), human(rs.After), rs.Raw, el.Round(time.Millisecond), float64(rs.Raw)/1e6/max(el.Seconds(), 1e-9))
			if err != nil {
				return fmt.Errorf("recompress %s: %w (what was done is kept; run it again to go on)", c.Store.Path, err)
			}
			if rs.Failed > 0 {
				return fmt.Errorf("%d blocks could not be re-coded (see the messages above; lmfs fsck checks the store)", rs.Failed)
			}
			if n := st.RunGC(); n > 0 {
				fmt.Fprintf(a.stdout, "value-log GC rewrote %d files\n", n)
			}
			return nil
		},
	}
	cmd.Flags().String("store", "", "store directory (config store.path)")
	cmd.Flags().String("policy", "", "codec policy to re-code with: balanced or max (config codec.policy)")
	cmd.Flags().Int("workers", 0, "blocks re-coded in parallel, 0 for one per core (config codec.workers)")
	return cmd
}
