package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
	lfs "github.com/lmfs/lmfs/fs"
)

// exitDamage is fsck's exit status when it finds damage (as fsck(8):
// errors left uncorrected).
const exitDamage = 4

func (a *app) newFsckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fsck [--store DIR]",
		Short: "Check an unmounted store: decode every block, check every CRC and index entry",
		Long: `Read every block of the store (config store.path, or --store), decode it and
check its CRC32C and length, and check every directory entry, link count and
inode. Damage is reported by file path, block and byte offset; the exit status
is 4 when anything is damaged, 0 when the store is clean. The store must not be
mounted. Opening the store removes files that were deleted while open when lmfs
last stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.load(cmd)
			if err != nil {
				return err
			}
			if !blockstore.Exists(c.Store.Path) {
				return fmt.Errorf("no lmfs store in %s: give the store with --store DIR", c.Store.Path)
			}
			st, err := blockstore.Open(cmd.Context(), blockstore.Options{Dir: c.Store.Path, MemTableSize: int64(c.Store.MemTableSize)})
			if errors.Is(err, blockstore.ErrInUse) {
				return fmt.Errorf("%w\n(fsck needs the store unmounted)", err)
			}
			if err != nil {
				return err
			}
			defer st.Close()
			reg, err := coder.NewStandard(coder.Options{ZstdLevel: c.Codec.ZstdLevel, CMMemory: int64(c.Codec.CMMemory)})
			if err != nil {
				return err
			}
			r, err := lfs.Check(cmd.Context(), st, reg)
			if err != nil {
				return fmt.Errorf("check %s: %w", c.Store.Path, err)
			}
			for _, p := range r.Problems {
				fmt.Fprintln(a.stdout, p)
			}
			fmt.Fprintf(a.stdout, "checked %d inodes, %d directory entries, %d blocks: %d problems\n", r.Inodes, r.Dirents, r.Blocks, len(r.Problems))
			if len(r.Problems) > 0 {
				return &exitError{code: exitDamage, err: fmt.Errorf("store %s is damaged (%d problems)", c.Store.Path, len(r.Problems))}
			}
			return nil
		},
	}
	cmd.Flags().String("store", "", "store directory (config store.path)")
	return cmd
}
