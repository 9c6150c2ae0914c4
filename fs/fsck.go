package fs

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"

	"github.com/lmfs/lmfs/blockstore"
	"github.com/lmfs/lmfs/coder"
)

// Problem is one piece of damage Check found.
type Problem struct {
	Ino    uint64
	Path   string // "" when the inode is not reachable
	Block  int64  // -1 when not about a block
	Offset int64  // byte offset of the block in the file, -1 when not about a block
	What   string
}

func (p Problem) String() string {
	where := p.Path
	if where == "" {
		where = "(unreachable)"
	}
	if p.Block >= 0 {
		return fmt.Sprintf("%s (inode %d) block %d at offset %d: %s", where, p.Ino, p.Block, p.Offset, p.What)
	}
	return fmt.Sprintf("%s (inode %d): %s", where, p.Ino, p.What)
}

// CheckReport is what Check found.
type CheckReport struct {
	Inodes, Dirents, Blocks uint64
	Problems                []Problem
}

// Check reads a whole (unmounted) store: it decodes every block and checks
// its CRC and length, that every block lies inside its file, that every
// directory entry names an existing inode of the right type, that link
// counts match the entries, and that no inode is lost. Opening the store
// has already purged the inodes left on the orphan list.
func Check(ctx context.Context, st *blockstore.Store, reg *coder.Registry) (*CheckReport, error) {
	r := &CheckReport{}
	inodes := map[uint64]blockstore.Inode{}
	bad := map[uint64]string{}
	err := st.ForEachInode(ctx, func(in blockstore.Inode, err error) error {
		r.Inodes++
		if err != nil {
			bad[in.Ino] = err.Error()
			return nil
		}
		inodes[in.Ino] = in
		return nil
	})
	if err != nil {
		return nil, err
	}
	type link struct {
		parent uint64
		name   string
	}
	parents := map[uint64][]link{}
	links := map[uint64]uint32{}
	subdirs := map[uint64]uint32{}
	var entryProblems []Problem
	err = st.ForEachDirent(ctx, func(parent uint64, d blockstore.Dirent, err error) error {
		r.Dirents++
		if err != nil {
			entryProblems = append(entryProblems, Problem{Ino: parent, Block: -1, Offset: -1, What: fmt.Sprintf("damaged directory entry %q: %v", d.Name, err)})
			return nil
		}
		parents[d.Ino] = append(parents[d.Ino], link{parent, d.Name})
		links[d.Ino]++
		if d.Type == syscall.S_IFDIR {
			subdirs[parent]++
		}
		in, ok := inodes[d.Ino]
		switch {
		case !ok && bad[d.Ino] == "":
			entryProblems = append(entryProblems, Problem{Ino: parent, Block: -1, Offset: -1, What: fmt.Sprintf("entry %q names inode %d, which does not exist", d.Name, d.Ino)})
		case ok && in.Mode&syscall.S_IFMT != d.Type:
			entryProblems = append(entryProblems, Problem{Ino: parent, Block: -1, Offset: -1, What: fmt.Sprintf("entry %q has type %o but inode %d has mode %o", d.Name, d.Type, d.Ino, in.Mode)})
		}
		if _, ok := inodes[parent]; !ok {
			entryProblems = append(entryProblems, Problem{Ino: parent, Block: -1, Offset: -1, What: fmt.Sprintf("entry %q is in directory inode %d, which does not exist", d.Name, parent)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var pathOf func(ino uint64, depth int) string
	pathOf = func(ino uint64, depth int) string {
		if ino == blockstore.RootIno {
			return "/"
		}
		ls := parents[ino]
		if len(ls) == 0 || depth > 4096 {
			return ""
		}
		p := pathOf(ls[0].parent, depth+1)
		if p == "" {
			return ""
		}
		return strings.TrimSuffix(p, "/") + "/" + ls[0].name
	}
	for i := range entryProblems {
		entryProblems[i].Path = pathOf(entryProblems[i].Ino, 0)
	}
	r.Problems = append(r.Problems, entryProblems...)
	orphans, err := st.Orphans()
	if err != nil {
		return nil, err
	}
	isOrphan := map[uint64]bool{}
	for _, o := range orphans {
		isOrphan[o] = true
	}
	for ino, msg := range bad {
		r.Problems = append(r.Problems, Problem{Ino: ino, Path: pathOf(ino, 0), Block: -1, Offset: -1, What: "damaged inode record: " + msg})
	}
	for ino, in := range inodes {
		want := links[ino]
		if in.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			want = 2 + subdirs[ino]
			if ino != blockstore.RootIno && links[ino] == 0 {
				want = 0
			}
		}
		p := pathOf(ino, 0)
		if ino != blockstore.RootIno && links[ino] == 0 && !isOrphan[ino] {
			r.Problems = append(r.Problems, Problem{Ino: ino, Block: -1, Offset: -1, What: "inode is in no directory and not on the orphan list (lost)"})
			continue
		}
		if in.Nlink != want && !isOrphan[ino] {
			r.Problems = append(r.Problems, Problem{Ino: ino, Path: p, Block: -1, Offset: -1, What: fmt.Sprintf("link count is %d, entries say %d", in.Nlink, want)})
		}
		if in.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			err := st.View(func(t *blockstore.Txn) error {
				_, err := t.GetSymlink(ino)
				return err
			})
			if err != nil {
				r.Problems = append(r.Problems, Problem{Ino: ino, Path: p, Block: -1, Offset: -1, What: fmt.Sprintf("symlink target missing: %v", err)})
			}
		}
	}
	bs := uint64(st.BlockSize())
	err = st.ForEachBlock(ctx, func(ino, blk uint64, rec []byte) error {
		r.Blocks++
		pb := func(what string) {
			r.Problems = append(r.Problems, Problem{Ino: ino, Path: pathOf(ino, 0), Block: int64(blk), Offset: int64(blk * bs), What: what})
		}
		in, ok := inodes[ino]
		if !ok {
			pb("block of an inode that does not exist")
			return nil
		}
		if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
			pb(fmt.Sprintf("block of a non-regular inode (mode %o)", in.Mode))
			return nil
		}
		data, _, err := reg.Decode(ctx, nil, rec)
		if err != nil {
			pb(err.Error())
			return nil
		}
		if n := uint64(len(data)); blk*bs >= in.Size || n > in.Size-blk*bs || n > bs {
			pb(fmt.Sprintf("block of %d bytes lies past the end of the file (size %d)", n, in.Size))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(r.Problems, func(i, j int) bool {
		a, b := r.Problems[i], r.Problems[j]
		if a.Ino != b.Ino {
			return a.Ino < b.Ino
		}
		return a.Block < b.Block
	})
	return r, nil
}
