package blockstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// Problem is one piece of damage or inconsistency found by Check.
type Problem struct {
	// Kind says which record is at fault: "block", "inode", "dirent",
	// "nlink", "orphan", "symlink", "xattr", "counter", "superblock" or "key".
	Kind string
	// Ino is the inode concerned (0 when none).
	Ino uint64
	// Path is a path of Ino in the filesystem, "" when it has none.
	Path string
	// Block is the block number for block problems, -1 otherwise.
	Block int64
	// Offset and Len give the byte range of the file that is affected
	// (Offset -1 when the problem is not about a range of data).
	Offset, Len int64
	// Msg says what is wrong.
	Msg string
}

// String formats the problem for a report line:
// "PATH (inode N) block B at offset O: MSG (bytes O-E)" for blocks,
// "PATH (inode N): KIND: MSG" for other records of an inode.
func (p Problem) String() string {
	where := p.Path
	if where == "" {
		where = "(unreachable)"
	}
	switch {
	case p.Offset >= 0 && p.Block >= 0:
		return fmt.Sprintf("%s (inode %d) block %d at offset %d: %s (bytes %d-%d)", where, p.Ino, p.Block, p.Offset, p.Msg, p.Offset, p.Offset+p.Len-1)
	case p.Ino != 0:
		return fmt.Sprintf("%s (inode %d): %s: %s", where, p.Ino, p.Kind, p.Msg)
	case p.Path != "":
		return fmt.Sprintf("%s: %s: %s", p.Path, p.Kind, p.Msg)
	}
	return fmt.Sprintf("store: %s: %s", p.Kind, p.Msg)
}

// CheckOptions configures Check.
type CheckOptions struct {
	// VerifyBlock decodes a block record, checks its length and CRC, and
	// returns its raw length (normally coder.Registry.Decode). Nil checks
	// only the index (block placement), not the block contents.
	VerifyBlock func(ctx context.Context, rec []byte) (rawLen int, err error)
}

// CheckReport is the result of Check.
type CheckReport struct {
	Inodes, Files, Dirs, Symlinks uint64
	Dirents, Xattrs, Orphans      uint64
	Blocks                        uint64 // block records seen
	BlockBytes                    uint64 // raw bytes of the blocks that decoded
	Problems                      []Problem
}

// Check reads every record of the store and reports what is damaged or
// inconsistent: records that do not parse, directory entries pointing to
// missing inodes, inodes no entry reaches that are not orphans, wrong link
// counts, blocks of unknown inodes or beyond a file's size, blocks that do
// not decode or fail their CRC (with o.VerifyBlock), symlinks without a
// target, and an inode counter that would reuse numbers. It changes nothing.
// The error is for failures to read the store at all; damage is reported in
// the returned report.
func (s *Store) Check(ctx context.Context, o CheckOptions) (*CheckReport, error) {
	c := &checker{
		s: s, o: o, r: &CheckReport{},
		inodes:  map[uint64]Inode{},
		entries: map[uint64][]entryRef{},
		subdirs: map[uint64]uint32{},
		orphans: map[uint64]bool{},
		links:   map[uint64]bool{},
		paths:   map[uint64]string{},
	}
	err := s.View(func(t *Txn) error {
		for _, step := range []func(context.Context, *badger.Txn) error{
			c.scanKeys, c.scanInodes, c.scanDirents, c.scanOrphans, c.scanLinks, c.scanXattrs,
		} {
			if err := step(ctx, t.t); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		c.checkLinks()
		return c.scanBlocks(ctx, t.t)
	})
	if err != nil {
		return nil, fmt.Errorf("check store %s: %w", s.dir, err)
	}
	if _, err := s.Models(); err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			c.add(Problem{Kind: "model", Msg: e.Error()})
		}
	}
	for i, p := range c.r.Problems {
		if p.Path == "" && p.Ino != 0 && p.Kind != "dirent" {
			c.r.Problems[i].Path = c.path(p.Ino) // now that every entry is known
		}
	}
	sort.SliceStable(c.r.Problems, func(i, j int) bool {
		a, b := c.r.Problems[i], c.r.Problems[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Ino != b.Ino {
			return a.Ino < b.Ino
		}
		return a.Block < b.Block
	})
	return c.r, nil
}

type entryRef struct {
	parent uint64
	name   string
}

type checker struct {
	s       *Store
	o       CheckOptions
	r       *CheckReport
	counter uint64
	inodes  map[uint64]Inode
	entries map[uint64][]entryRef // child -> entries naming it
	subdirs map[uint64]uint32     // directory -> entries of subdirectories
	orphans map[uint64]bool
	links   map[uint64]bool
	paths   map[uint64]string
}

func (c *checker) add(p Problem) {
	if p.Kind != "block" {
		p.Offset, p.Len, p.Block = -1, 0, -1
	}
	c.r.Problems = append(c.r.Problems, p)
}

// path returns a path of ino through the directory entries ("" if none
// reaches the root).
func (c *checker) path(ino uint64) string {
	if ino == RootIno {
		return "/"
	}
	if p, ok := c.paths[ino]; ok {
		return p
	}
	var parts []string
	seen := map[uint64]bool{}
	cur := ino
	for cur != RootIno {
		refs := c.entries[cur]
		if len(refs) == 0 || seen[cur] || len(seen) > 4096 {
			c.paths[ino] = ""
			return ""
		}
		seen[cur] = true
		best := refs[0]
		for _, r := range refs[1:] {
			if r.parent < best.parent || (r.parent == best.parent && r.name < best.name) {
				best = r
			}
		}
		parts = append(parts, best.name)
		cur = best.parent
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	p := "/" + strings.Join(parts, "/")
	c.paths[ino] = p
	return p
}

// keyLens gives the valid key length per prefix (-1: more than 9 bytes).
var keyLens = map[byte]int{
	pSuper: 1, pCounter: 1, pInode: 9, pDirent: -1, pBlock: 17, pXattr: -1, pLink: 9, pOrphan: 9,
	pGCMarker: 1, // left behind if the process died inside RunGC's compaction
	pModel:    33,
}

// scanKeys looks at every key for unknown prefixes and bad lengths, and
// checks the superblock and the inode counter.
func (c *checker) scanKeys(ctx context.Context, t *badger.Txn) error {
	it := t.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		want, known := keyLens[k[0]]
		switch {
		case !known:
			c.add(Problem{Kind: "key", Msg: fmt.Sprintf("unknown key %q (not written by this lmfs)", k)})
		case want == -1 && len(k) <= 9, want > 0 && len(k) != want:
			c.add(Problem{Kind: "key", Msg: fmt.Sprintf("key %q has a bad length %d for its kind", k, len(k))})
		}
	}
	v, err := getValue(t, []byte{pSuper})
	if err != nil || len(v) != 12 || string(v[:4]) != "LMFS" {
		c.add(Problem{Kind: "superblock", Msg: fmt.Sprintf("superblock missing or damaged (%v)", err)})
	}
	v, err = getValue(t, []byte{pCounter})
	if err != nil || len(v) != 8 {
		c.add(Problem{Kind: "counter", Msg: fmt.Sprintf("inode counter missing or damaged (%v)", err)})
	} else {
		c.counter = binary.BigEndian.Uint64(v)
	}
	return nil
}

func getValue(t *badger.Txn, k []byte) ([]byte, error) {
	item, err := t.Get(k)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// forPrefix calls fn with each key of prefix p (of the valid length) and its
// value; a value that cannot be read is reported as a problem of kind.
func (c *checker) forPrefix(ctx context.Context, t *badger.Txn, p byte, kind string, fn func(k, v []byte)) error {
	want := keyLens[p]
	it := t.NewIterator(badger.IteratorOptions{Prefix: []byte{p}, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		k := item.KeyCopy(nil)
		if (want == -1 && len(k) <= 9) || (want > 0 && len(k) != want) {
			continue // reported by scanKeys
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			c.add(Problem{Kind: kind, Ino: binary.BigEndian.Uint64(k[1:9]), Msg: fmt.Sprintf("record %q cannot be read: %v", k, err)})
			continue
		}
		fn(k, v)
	}
	return nil
}

func (c *checker) scanInodes(ctx context.Context, t *badger.Txn) error {
	err := c.forPrefix(ctx, t, pInode, "inode", func(k, v []byte) {
		ino := binary.BigEndian.Uint64(k[1:])
		in, err := decodeInode(ino, v)
		if err != nil {
			c.add(Problem{Kind: "inode", Ino: ino, Msg: err.Error()})
			return
		}
		c.r.Inodes++
		c.inodes[ino] = in
		switch in.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			c.r.Files++
		case syscall.S_IFDIR:
			c.r.Dirs++
		case syscall.S_IFLNK:
			c.r.Symlinks++
		case syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
		default:
			c.add(Problem{Kind: "inode", Ino: ino, Msg: fmt.Sprintf("unknown file type in mode %#o", in.Mode)})
		}
		if c.counter != 0 && ino >= c.counter {
			c.add(Problem{Kind: "counter", Ino: ino, Msg: fmt.Sprintf("inode number is not below the inode counter %d: it could be handed out again", c.counter)})
		}
	})
	if err != nil {
		return err
	}
	if in, ok := c.inodes[RootIno]; !ok || in.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		c.add(Problem{Kind: "inode", Ino: RootIno, Path: "/", Msg: "root directory inode is missing or not a directory"})
	}
	return nil
}

func (c *checker) scanDirents(ctx context.Context, t *badger.Txn) error {
	type bad struct {
		parent uint64
		name   string
		msg    string
	}
	var bads []bad
	err := c.forPrefix(ctx, t, pDirent, "dirent", func(k, v []byte) {
		parent := binary.BigEndian.Uint64(k[1:9])
		name := string(k[9:])
		c.r.Dirents++
		if len(v) != 12 {
			bads = append(bads, bad{parent, name, fmt.Sprintf("entry value is damaged (%d bytes, want 12)", len(v))})
			return
		}
		child := binary.BigEndian.Uint64(v)
		typ := binary.BigEndian.Uint32(v[8:])
		if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			bads = append(bads, bad{parent, name, "entry has an invalid name"})
		}
		p, ok := c.inodes[parent]
		if !ok {
			bads = append(bads, bad{parent, name, "entry is in a directory whose inode is missing"})
			return
		}
		if p.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			bads = append(bads, bad{parent, name, "entry is in an inode that is not a directory"})
			return
		}
		in, ok := c.inodes[child]
		if !ok {
			bads = append(bads, bad{parent, name, fmt.Sprintf("entry points to missing inode %d", child)})
			return
		}
		if child == RootIno {
			bads = append(bads, bad{parent, name, "entry points to the root directory"})
			return
		}
		if in.Mode&syscall.S_IFMT != typ {
			bads = append(bads, bad{parent, name, fmt.Sprintf("entry says file type %#o but inode %d is %#o", typ, child, in.Mode&syscall.S_IFMT)})
		}
		c.entries[child] = append(c.entries[child], entryRef{parent, name})
		if in.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			c.subdirs[parent]++
		}
	})
	for _, b := range bads {
		dir := c.path(b.parent)
		p := Problem{Kind: "dirent", Ino: b.parent, Msg: fmt.Sprintf("%q: %s", b.name, b.msg)}
		if dir != "" {
			p.Path = strings.TrimSuffix(dir, "/") + "/" + b.name
		}
		c.add(p)
	}
	return err
}

func (c *checker) scanOrphans(ctx context.Context, t *badger.Txn) error {
	return c.forPrefix(ctx, t, pOrphan, "orphan", func(k, _ []byte) {
		ino := binary.BigEndian.Uint64(k[1:])
		c.r.Orphans++
		c.orphans[ino] = true
		if _, ok := c.inodes[ino]; !ok {
			c.add(Problem{Kind: "orphan", Ino: ino, Msg: "orphan marker for a missing inode"})
		}
	})
}

func (c *checker) scanLinks(ctx context.Context, t *badger.Txn) error {
	return c.forPrefix(ctx, t, pLink, "symlink", func(k, _ []byte) {
		ino := binary.BigEndian.Uint64(k[1:])
		c.links[ino] = true
		in, ok := c.inodes[ino]
		switch {
		case !ok:
			c.add(Problem{Kind: "symlink", Ino: ino, Msg: "symlink target of a missing inode"})
		case in.Mode&syscall.S_IFMT != syscall.S_IFLNK:
			c.add(Problem{Kind: "symlink", Ino: ino, Msg: "symlink target stored for an inode that is not a symlink"})
		}
	})
}

func (c *checker) scanXattrs(ctx context.Context, t *badger.Txn) error {
	return c.forPrefix(ctx, t, pXattr, "xattr", func(k, _ []byte) {
		ino := binary.BigEndian.Uint64(k[1:9])
		c.r.Xattrs++
		if _, ok := c.inodes[ino]; !ok {
			c.add(Problem{Kind: "xattr", Ino: ino, Msg: fmt.Sprintf("extended attribute %q of a missing inode", k[9:])})
		}
	})
}

// checkLinks compares link counts with the directory entries and finds
// inodes no entry reaches.
func (c *checker) checkLinks() {
	inos := make([]uint64, 0, len(c.inodes))
	for ino := range c.inodes {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	for _, ino := range inos {
		in := c.inodes[ino]
		n := uint32(len(c.entries[ino]))
		isDir := in.Mode&syscall.S_IFMT == syscall.S_IFDIR
		if ino != RootIno && n == 0 {
			if !c.orphans[ino] {
				c.add(Problem{Kind: "inode", Ino: ino, Msg: fmt.Sprintf("no directory entry reaches this inode and it is not on the orphan list (nlink %d)", in.Nlink)})
			}
			continue
		}
		if c.orphans[ino] {
			c.add(Problem{Kind: "orphan", Ino: ino, Msg: fmt.Sprintf("inode is on the orphan list but %d directory entries point to it", n)})
		}
		want := n
		if isDir {
			if ino != RootIno && n > 1 {
				c.add(Problem{Kind: "dirent", Ino: ino, Msg: fmt.Sprintf("directory has %d entries pointing to it (hard links to directories)", n)})
			}
			want = 2 + c.subdirs[ino]
		}
		if in.Nlink != want {
			c.add(Problem{Kind: "nlink", Ino: ino, Msg: fmt.Sprintf("link count is %d but the directory entries give %d", in.Nlink, want)})
		}
		if in.Mode&syscall.S_IFMT == syscall.S_IFLNK && !c.links[ino] {
			c.add(Problem{Kind: "symlink", Ino: ino, Msg: "symlink has no stored target"})
		}
	}
}

// scanBlocks checks every block record's placement and, with VerifyBlock,
// its contents. Values are read one at a time, so memory stays bounded.
func (c *checker) scanBlocks(ctx context.Context, t *badger.Txn) error {
	bs := uint64(c.s.blockSize)
	it := t.NewIterator(badger.IteratorOptions{Prefix: []byte{pBlock}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		k := item.Key()
		if len(k) != 17 {
			continue // reported by scanKeys
		}
		ino := binary.BigEndian.Uint64(k[1:9])
		blk := binary.BigEndian.Uint64(k[9:])
		c.r.Blocks++
		p := Problem{Kind: "block", Ino: ino, Block: int64(blk), Offset: int64(blk * bs), Len: int64(bs)}
		in, ok := c.inodes[ino]
		if !ok {
			p.Msg = "block of a missing inode"
			c.add(p)
			continue
		}
		if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
			p.Msg = fmt.Sprintf("block of an inode that is not a regular file (mode %#o)", in.Mode)
			c.add(p)
			continue
		}
		if blk*bs >= in.Size {
			p.Msg = fmt.Sprintf("block lies beyond the end of the file (size %d)", in.Size)
			c.add(p)
			continue
		}
		room := min(bs, in.Size-blk*bs)
		p.Len = int64(room)
		if c.o.VerifyBlock == nil {
			continue
		}
		var n int
		err := item.Value(func(v []byte) error {
			var err error
			n, err = c.o.VerifyBlock(ctx, v)
			return err
		})
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			p.Msg = "block is damaged: " + err.Error()
			c.add(p)
		case uint64(n) > room:
			p.Msg = fmt.Sprintf("block holds %d bytes but only %d fit before the end of the file", n, room)
			c.add(p)
		default:
			c.r.BlockBytes += uint64(n)
		}
	}
	return nil
}
