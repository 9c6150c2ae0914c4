package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/lmfs/lmfs/blockstore"
	lfs "github.com/lmfs/lmfs/fs"
	"github.com/lmfs/lmfs/mount"
)

// exitDamage is fsck's exit status when it found damage (as fsck(8)'s
// "errors left uncorrected").
const exitDamage = 4

func (a *app) newFsckCmd() *cobra.Command {
	var scrub bool
	cmd := &cobra.Command{
		Use:   "fsck [--store DIR | --scrub MOUNTPOINT]",
		Short: "Check a store: every block's CRC and every index entry; report damage by file and offset",
		Long: `Without --scrub, open the store (config store.path, or --store), which must not
be mounted, read and decode every block, check its CRC and its place in the file,
and check every inode, directory entry, link count, symlink and extended
attribute. With --scrub MOUNTPOINT, read every file of a mounted store through
the mount instead (the running lmfs decodes and checks every block).
Damage is reported by path and byte range. Exit status: 0 clean, 4 damage
found, 1 the check could not run. fsck changes nothing, except that opening an
unmounted store finishes removing files deleted while open (as every open does).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if scrub {
				if len(args) != 1 {
					return errors.New("--scrub needs the mountpoint: lmfs fsck --scrub MOUNTPOINT")
				}
				return a.scrub(cmd.Context(), args[0])
			}
			if len(args) != 0 {
				return fmt.Errorf("unexpected argument %q: to check a mounted store run lmfs fsck --scrub %s; an unmounted one with --store DIR", args[0], args[0])
			}
			c, err := a.load(cmd)
			if err != nil {
				return err
			}
			if !blockstore.Exists(c.Store.Path) {
				return fmt.Errorf("no lmfs store in %s: give the store with --store DIR", c.Store.Path)
			}
			s, err := blockstore.Open(cmd.Context(), blockstore.Options{Dir: c.Store.Path, MemTableSize: int64(c.Store.MemTableSize)})
			if errors.Is(err, blockstore.ErrInUse) {
				return fmt.Errorf("%w\n(to check a mounted store, run: lmfs fsck --scrub MOUNTPOINT)", err)
			}
			if err != nil {
				return err
			}
			defer s.Close()
			reg, err := registry(c)
			if err != nil {
				return err
			}
			if err := lfs.PrepareModels(s, reg, int64(c.Codec.CMMemory), false, slog.Default()); err != nil {
				return err
			}
			r, err := s.Check(cmd.Context(), blockstore.CheckOptions{
				VerifyBlock: func(ctx context.Context, rec []byte) (int, error) {
					b, _, err := reg.Decode(ctx, nil, rec)
					return len(b), err
				},
			})
			if err != nil {
				return err
			}
			for _, p := range r.Problems {
				fmt.Fprintln(a.stdout, p.String())
			}
			fmt.Fprintf(a.stdout, "checked %d inodes (%d files, %d directories, %d symlinks), %d directory entries, %d blocks (%s decoded), %d xattrs: %d problems",
				r.Inodes, r.Files, r.Dirs, r.Symlinks, r.Dirents, r.Blocks, human(r.BlockBytes), r.Xattrs, len(r.Problems))
			if len(r.Problems) > 0 {
				fmt.Fprintln(a.stdout)
				return &exitError{code: exitDamage, err: fmt.Errorf("store %s is damaged: %d problems (listed above)", c.Store.Path, len(r.Problems))}
			}
			fmt.Fprintln(a.stdout, ", clean")
			return nil
		},
	}
	cmd.Flags().String("store", "", "store directory (config store.path)")
	cmd.Flags().BoolVar(&scrub, "scrub", false, "read every file of the store mounted at MOUNTPOINT through the mount")
	return cmd
}

func (a *app) scrub(ctx context.Context, mnt string) error {
	r, err := mount.Scrub(ctx, mnt)
	if err != nil {
		return err
	}
	for _, p := range r.Problems {
		fmt.Fprintln(a.stdout, p.String())
	}
	fmt.Fprintf(a.stdout, "read %d files (%s), %d directories, %d symlinks: %d problems", r.Files, human(r.Bytes), r.Dirs, r.Symlinks, len(r.Problems))
	if len(r.Problems) > 0 {
		fmt.Fprintln(a.stdout)
		return &exitError{code: exitDamage, err: fmt.Errorf("%s has unreadable data: %d problems (listed above; the lmfs log names the damaged blocks)", mnt, len(r.Problems))}
	}
	fmt.Fprintln(a.stdout, ", clean")
	return nil
}
