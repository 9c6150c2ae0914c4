package fs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lmfs/lmfs/blockstore"
)

// node is the go-fuse node of one inode (directory, file, symlink or
// special file). Several nodes may share one inodeState.
type node struct {
	gofs.Inode
	fsys *FS
	ino  uint64
	s    *inodeState
}

// handle is an open file. All file state lives in the inode's inodeState,
// so that every handle sees the same size and dirty blocks; a handle only
// tracks its own read pattern for read-ahead.
type handle struct {
	ra readAheadState
}

var (
	_ gofs.NodeLookuper      = (*node)(nil)
	_ gofs.NodeGetattrer     = (*node)(nil)
	_ gofs.NodeSetattrer     = (*node)(nil)
	_ gofs.NodeOpener        = (*node)(nil)
	_ gofs.NodeCreater       = (*node)(nil)
	_ gofs.NodeReader        = (*node)(nil)
	_ gofs.NodeWriter        = (*node)(nil)
	_ gofs.NodeFlusher       = (*node)(nil)
	_ gofs.NodeFsyncer       = (*node)(nil)
	_ gofs.NodeReleaser      = (*node)(nil)
	_ gofs.NodeLseeker       = (*node)(nil)
	_ gofs.NodeAllocater     = (*node)(nil)
	_ gofs.NodeReaddirer     = (*node)(nil)
	_ gofs.NodeMkdirer       = (*node)(nil)
	_ gofs.NodeMknoder       = (*node)(nil)
	_ gofs.NodeRmdirer       = (*node)(nil)
	_ gofs.NodeUnlinker      = (*node)(nil)
	_ gofs.NodeRenamer       = (*node)(nil)
	_ gofs.NodeLinker        = (*node)(nil)
	_ gofs.NodeSymlinker     = (*node)(nil)
	_ gofs.NodeReadlinker    = (*node)(nil)
	_ gofs.NodeGetxattrer    = (*node)(nil)
	_ gofs.NodeSetxattrer    = (*node)(nil)
	_ gofs.NodeListxattrer   = (*node)(nil)
	_ gofs.NodeRemovexattrer = (*node)(nil)
	_ gofs.NodeStatfser      = (*node)(nil)
	_ gofs.NodeOnForgetter   = (*node)(nil)
)

func (f *FS) newNode(in blockstore.Inode) *node {
	return &node{fsys: f, ino: in.Ino, s: f.state(in)}
}

// OnForget drops the node's reference to the inode state.
func (n *node) OnForget() { n.fsys.release(n.ino, n.s) }

func nsTime(ns int64) time.Time { return time.Unix(0, ns) }

func (f *FS) fillAttr(in *blockstore.Inode, out *fuse.Attr) {
	out.Ino = in.Ino
	out.Mode = in.Mode
	out.Nlink = in.Nlink
	out.Uid = in.Uid
	out.Gid = in.Gid
	out.Rdev = in.Rdev
	out.Size = in.Size
	out.Blocks = (in.Size + 511) / 512
	out.Blksize = uint32(f.bs)
	a, m, c := nsTime(in.Atime), nsTime(in.Mtime), nsTime(in.Ctime)
	out.SetTimes(&a, &m, &c)
}

// child makes the node for in under n and fills out from its shared state.
func (n *node) child(ctx context.Context, in blockstore.Inode, out *fuse.EntryOut) *gofs.Inode {
	c := n.fsys.newNode(in)
	c.s.mu.RLock()
	n.fsys.fillAttr(&c.s.attr, &out.Attr)
	c.s.mu.RUnlock()
	return n.NewInode(ctx, c, gofs.StableAttr{Mode: in.Mode & syscall.S_IFMT, Ino: in.Ino})
}

func (n *node) path() string {
	p := n.Path(nil)
	if p == "" {
		return "/"
	}
	return "/" + strings.TrimPrefix(p, "/")
}

func now() int64 { return time.Now().UnixNano() }

func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return uint32(syscall.Geteuid()), uint32(syscall.Getegid())
}

// attrs holds the inodes a namespace change works on, by number.
type attrs map[uint64]*blockstore.Inode

// update runs fn in one store transaction with the attributes of inos
// (in-memory ones where loaded, locked for the duration), and writes back
// the records fn changed. The caller holds f.ns for writing.
func (f *FS) update(inos []uint64, fn func(t *blockstore.Txn, a attrs) error) (attrs, error) {
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	var uniq []uint64
	for i, ino := range inos {
		if i == 0 || ino != inos[i-1] {
			uniq = append(uniq, ino)
		}
	}
	states := map[uint64]*inodeState{}
	f.statesMu.Lock()
	for _, ino := range uniq {
		if s := f.states[ino]; s != nil {
			states[ino] = s
		}
	}
	f.statesMu.Unlock()
	for _, ino := range uniq {
		if s := states[ino]; s != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
		}
	}
	var final attrs
	err := f.st.Update(func(t *blockstore.Txn) error {
		a, orig := attrs{}, map[uint64]blockstore.Inode{}
		for _, ino := range uniq {
			var in blockstore.Inode
			if s := states[ino]; s != nil {
				in = s.attr
			} else {
				var err error
				if in, err = t.GetInode(ino); err != nil {
					return err
				}
			}
			orig[ino] = in
			a[ino] = &in
		}
		if err := fn(t, a); err != nil {
			return err
		}
		for ino, in := range a {
			if *in != orig[ino] {
				if err := t.PutInode(*in); err != nil {
					return err
				}
			}
		}
		final = a
		return nil
	})
	if err != nil {
		return nil, err
	}
	for ino, s := range states {
		s.attr = *final[ino]
	}
	return final, nil
}

func (n *node) lookupEntry(name string) (blockstore.Dirent, error) {
	var d blockstore.Dirent
	err := n.fsys.st.View(func(t *blockstore.Txn) error {
		var err error
		d, err = t.Lookup(n.ino, name)
		return err
	})
	return d, err
}

// Lookup finds name in directory n.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	f.ns.RLock()
	defer f.ns.RUnlock()
	var in blockstore.Inode
	err := f.st.View(func(t *blockstore.Txn) error {
		d, err := t.Lookup(n.ino, name)
		if err != nil {
			return err
		}
		in, err = t.GetInode(d.Ino)
		return err
	})
	if err != nil {
		return nil, f.errno("lookup", n.ino, err)
	}
	return n.child(ctx, in, out), 0
}

// Getattr returns the inode's attributes, with the size including data not
// yet flushed.
func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.s.mu.RLock()
	n.fsys.fillAttr(&n.s.attr, &out.Attr)
	n.s.mu.RUnlock()
	return 0
}

// Setattr changes mode, owner, times and size (truncate, with or without an
// open handle).
func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	f := n.fsys
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t := now()
	a := &s.attr
	if m, ok := in.GetMode(); ok {
		a.Mode = a.Mode&syscall.S_IFMT | m&0o7777
		a.Ctime = t
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		if uok {
			a.Uid = uid
		}
		if gok {
			a.Gid = gid
		}
		if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			a.Mode &^= syscall.S_ISUID
			if a.Mode&0o010 != 0 {
				a.Mode &^= syscall.S_ISGID
			}
		}
		a.Ctime = t
	}
	if at, ok := in.GetATime(); ok {
		a.Atime = at.UnixNano()
		a.Ctime = t
	}
	if mt, ok := in.GetMTime(); ok {
		a.Mtime = mt.UnixNano()
		a.Ctime = t
	}
	if sz, ok := in.GetSize(); ok {
		if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			return syscall.EISDIR
		}
		if err := f.truncateLocked(ctx, n, sz); err != nil {
			return f.errno("truncate", n.ino, err)
		}
		if _, mok := in.GetMTime(); !mok {
			a.Mtime = t
		}
		a.Ctime = t
	}
	if err := f.putInode(s); err != nil {
		return f.errno("setattr", n.ino, err)
	}
	f.fillAttr(a, &out.Attr)
	return 0
}

func (f *FS) putInode(s *inodeState) error {
	return f.st.Update(func(t *blockstore.Txn) error { return t.PutInode(s.attr) })
}

// newInode allocates an inode for a new entry of n created by the caller.
func (n *node) newInode(ctx context.Context, mode uint32) (blockstore.Inode, error) {
	if err := n.fsys.st.SpaceFor(64 << 10); err != nil {
		return blockstore.Inode{}, err
	}
	ino, err := n.fsys.st.AllocIno()
	if err != nil {
		return blockstore.Inode{}, err
	}
	uid, gid := caller(ctx)
	n.s.mu.RLock()
	pmode, pgid := n.s.attr.Mode, n.s.attr.Gid
	n.s.mu.RUnlock()
	if pmode&syscall.S_ISGID != 0 {
		gid = pgid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			mode |= syscall.S_ISGID
		}
	}
	t := now()
	return blockstore.Inode{Ino: ino, Mode: mode, Uid: uid, Gid: gid, Nlink: 1, Atime: t, Mtime: t, Ctime: t}, nil
}

// addEntry stores the new inode in and links it into n as name.
func (n *node) addEntry(in blockstore.Inode, name string, extra func(t *blockstore.Txn) error) error {
	_, err := n.fsys.update([]uint64{n.ino}, func(t *blockstore.Txn, a attrs) error {
		if _, err := t.Lookup(n.ino, name); err == nil {
			return syscall.EEXIST
		} else if !errors.Is(err, blockstore.ErrNotFound) {
			return err
		}
		if err := t.PutInode(in); err != nil {
			return err
		}
		if err := t.PutDirent(n.ino, blockstore.Dirent{Name: name, Ino: in.Ino, Type: in.Mode & syscall.S_IFMT}); err != nil {
			return err
		}
		p := a[n.ino]
		p.Mtime, p.Ctime = in.Ctime, in.Ctime
		if in.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			p.Nlink++
		}
		if extra != nil {
			return extra(t)
		}
		return nil
	})
	return err
}

// Create makes and opens a regular file.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	f := n.fsys
	f.ns.Lock()
	defer f.ns.Unlock()
	in, err := n.newInode(ctx, syscall.S_IFREG|mode&0o7777)
	if err != nil {
		return nil, nil, 0, f.errno("create", n.ino, err)
	}
	if err := n.addEntry(in, name, nil); err != nil {
		return nil, nil, 0, f.errno("create", n.ino, err)
	}
	ch := n.child(ctx, in, out)
	c := ch.Operations().(*node)
	c.s.mu.Lock()
	c.s.opens++
	c.s.mu.Unlock()
	return ch, &handle{}, fuse.FOPEN_KEEP_CACHE, 0
}

// Mkdir makes a directory.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	f.ns.Lock()
	defer f.ns.Unlock()
	in, err := n.newInode(ctx, syscall.S_IFDIR|mode&0o7777)
	if err != nil {
		return nil, f.errno("mkdir", n.ino, err)
	}
	in.Nlink = 2
	if err := n.addEntry(in, name, nil); err != nil {
		return nil, f.errno("mkdir", n.ino, err)
	}
	return n.child(ctx, in, out), 0
}

// Mknod makes a device node, FIFO or socket.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	f.ns.Lock()
	defer f.ns.Unlock()
	in, err := n.newInode(ctx, mode)
	if err != nil {
		return nil, f.errno("mknod", n.ino, err)
	}
	in.Rdev = dev
	if err := n.addEntry(in, name, nil); err != nil {
		return nil, f.errno("mknod", n.ino, err)
	}
	return n.child(ctx, in, out), 0
}

// Symlink makes a symbolic link to target.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	f.ns.Lock()
	defer f.ns.Unlock()
	in, err := n.newInode(ctx, syscall.S_IFLNK|0o777)
	if err != nil {
		return nil, f.errno("symlink", n.ino, err)
	}
	in.Size = uint64(len(target))
	err = n.addEntry(in, name, func(t *blockstore.Txn) error { return t.PutSymlink(in.Ino, []byte(target)) })
	if err != nil {
		return nil, f.errno("symlink", n.ino, err)
	}
	return n.child(ctx, in, out), 0
}

// Readlink returns a symlink's target.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	var l []byte
	err := n.fsys.st.View(func(t *blockstore.Txn) error {
		var err error
		l, err = t.GetSymlink(n.ino)
		return err
	})
	if errors.Is(err, blockstore.ErrNotFound) {
		return nil, syscall.EINVAL
	}
	return l, n.fsys.errno("readlink", n.ino, err)
}

// Link makes name in n a hard link to target.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	f.ns.Lock()
	defer f.ns.Unlock()
	a, err := f.update([]uint64{n.ino, tn.ino}, func(t *blockstore.Txn, a attrs) error {
		if _, err := t.Lookup(n.ino, name); err == nil {
			return syscall.EEXIST
		} else if !errors.Is(err, blockstore.ErrNotFound) {
			return err
		}
		c := a[tn.ino]
		if c.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			return syscall.EPERM
		}
		if c.Nlink == 0 {
			return syscall.ENOENT
		}
		ts := now()
		c.Nlink++
		c.Ctime = ts
		p := a[n.ino]
		p.Mtime, p.Ctime = ts, ts
		return t.PutDirent(n.ino, blockstore.Dirent{Name: name, Ino: tn.ino, Type: c.Mode & syscall.S_IFMT})
	})
	if err != nil {
		return nil, f.errno("link", n.ino, err)
	}
	return n.child(ctx, *a[tn.ino], out), 0
}

// dropLink lowers the link count of c (being unlinked or replaced) and
// marks it orphaned when it reaches zero.
func dropLink(t *blockstore.Txn, c *blockstore.Inode, ts int64) error {
	if c.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		c.Nlink = 0
	} else if c.Nlink > 0 {
		c.Nlink--
	}
	c.Ctime = ts
	if c.Nlink == 0 {
		return t.AddOrphan(c.Ino)
	}
	return nil
}

// Unlink removes the entry name of a non-directory.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	f := n.fsys
	f.ns.Lock()
	d, err := n.lookupEntry(name)
	if err != nil {
		f.ns.Unlock()
		return f.errno("unlink", n.ino, err)
	}
	if d.Type == syscall.S_IFDIR {
		f.ns.Unlock()
		return syscall.EISDIR
	}
	a, err := f.update([]uint64{n.ino, d.Ino}, func(t *blockstore.Txn, a attrs) error {
		if err := t.DeleteDirent(n.ino, name); err != nil {
			return err
		}
		ts := now()
		p := a[n.ino]
		p.Mtime, p.Ctime = ts, ts
		return dropLink(t, a[d.Ino], ts)
	})
	f.ns.Unlock()
	if err != nil {
		return f.errno("unlink", n.ino, err)
	}
	if a[d.Ino].Nlink == 0 {
		f.purgeIfClosed(d.Ino)
	}
	return 0
}

// Rmdir removes the empty directory name.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	f := n.fsys
	f.ns.Lock()
	d, err := n.lookupEntry(name)
	if err != nil {
		f.ns.Unlock()
		return f.errno("rmdir", n.ino, err)
	}
	if d.Type != syscall.S_IFDIR {
		f.ns.Unlock()
		return syscall.ENOTDIR
	}
	_, err = f.update([]uint64{n.ino, d.Ino}, func(t *blockstore.Txn, a attrs) error {
		if !t.DirEmpty(d.Ino) {
			return syscall.ENOTEMPTY
		}
		if err := t.DeleteDirent(n.ino, name); err != nil {
			return err
		}
		ts := now()
		p := a[n.ino]
		p.Mtime, p.Ctime = ts, ts
		p.Nlink--
		return dropLink(t, a[d.Ino], ts)
	})
	f.ns.Unlock()
	if err != nil {
		return f.errno("rmdir", n.ino, err)
	}
	f.purgeIfClosed(d.Ino)
	return 0
}

// Rename moves name in n to newName in newParent, replacing what is there.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	f := n.fsys
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^uint32(1) != 0 { // only RENAME_NOREPLACE (1) is supported
		return syscall.EINVAL
	}
	f.ns.Lock()
	src, err := n.lookupEntry(name)
	if err != nil {
		f.ns.Unlock()
		return f.errno("rename", n.ino, err)
	}
	dst, derr := np.lookupEntry(newName)
	replace := derr == nil
	if derr != nil && !errors.Is(derr, blockstore.ErrNotFound) {
		f.ns.Unlock()
		return f.errno("rename", n.ino, derr)
	}
	if replace {
		switch {
		case flags&1 != 0:
			f.ns.Unlock()
			return syscall.EEXIST
		case dst.Ino == src.Ino:
			f.ns.Unlock()
			return 0
		case src.Type == syscall.S_IFDIR && dst.Type != syscall.S_IFDIR:
			f.ns.Unlock()
			return syscall.ENOTDIR
		case src.Type != syscall.S_IFDIR && dst.Type == syscall.S_IFDIR:
			f.ns.Unlock()
			return syscall.EISDIR
		}
	}
	inos := []uint64{n.ino, np.ino, src.Ino}
	if replace {
		inos = append(inos, dst.Ino)
	}
	a, err := f.update(inos, func(t *blockstore.Txn, a attrs) error {
		ts := now()
		if replace {
			if dst.Type == syscall.S_IFDIR {
				if !t.DirEmpty(dst.Ino) {
					return syscall.ENOTEMPTY
				}
				a[np.ino].Nlink--
			}
			if err := dropLink(t, a[dst.Ino], ts); err != nil {
				return err
			}
		}
		if err := t.DeleteDirent(n.ino, name); err != nil {
			return err
		}
		if err := t.PutDirent(np.ino, blockstore.Dirent{Name: newName, Ino: src.Ino, Type: src.Type}); err != nil {
			return err
		}
		if src.Type == syscall.S_IFDIR && n.ino != np.ino {
			a[n.ino].Nlink--
			a[np.ino].Nlink++
		}
		a[src.Ino].Ctime = ts
		for _, p := range []uint64{n.ino, np.ino} {
			a[p].Mtime, a[p].Ctime = ts, ts
		}
		return nil
	})
	f.ns.Unlock()
	if err != nil {
		return f.errno("rename", n.ino, err)
	}
	if replace && a[dst.Ino].Nlink == 0 {
		f.purgeIfClosed(dst.Ino)
	}
	return 0
}

// purgeIfClosed removes an unlinked inode's data now, unless a handle still
// has it open (then the last Release does).
func (f *FS) purgeIfClosed(ino uint64) {
	if s := f.loaded(ino); s != nil {
		s.mu.Lock()
		open := s.opens > 0
		s.mu.Unlock()
		if open {
			return
		}
	}
	f.purge(ino)
}

func (f *FS) purge(ino uint64) {
	if s := f.loaded(ino); s != nil {
		s.mu.Lock()
		s.waitFlush()
		for b, buf := range s.dirty {
			f.dirtyBytes.Add(-int64(cap(buf)))
			delete(s.dirty, b)
		}
		s.mu.Unlock()
		f.dirtyMu.Lock()
		delete(f.dirtyNodes, s)
		f.dirtyMu.Unlock()
	}
	f.cache.dropFrom(ino, 0)
	if err := f.st.Purge(ino); err != nil {
		f.log.Error("removing an unlinked inode failed; it stays on the orphan list and is removed at the next mount", "ino", ino, "err", err)
	}
}

// Readdir lists directory n.
func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	f := n.fsys
	f.ns.RLock()
	defer f.ns.RUnlock()
	var ents []blockstore.Dirent
	err := f.st.View(func(t *blockstore.Txn) error {
		var err error
		ents, err = t.ListDir(n.ino)
		return err
	})
	if err != nil {
		return nil, f.errno("readdir", n.ino, err)
	}
	out := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		out = append(out, fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Type})
	}
	return gofs.NewListDirStream(out), 0
}

// Getxattr returns an extended attribute; StatsXattr on the root returns
// the store statistics.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	f := n.fsys
	var v []byte
	var err error
	if attr == StatsXattr && n.ino == blockstore.RootIno {
		v, err = f.statsJSON(ctx)
	} else {
		err = f.st.View(func(t *blockstore.Txn) error {
			v, err = t.GetXattr(n.ino, attr)
			return err
		})
	}
	if errors.Is(err, blockstore.ErrNotFound) {
		return 0, syscall.ENODATA
	}
	if err != nil {
		return 0, f.errno("getxattr", n.ino, err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Setxattr sets an extended attribute (flags XATTR_CREATE, XATTR_REPLACE).
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	f := n.fsys
	if attr == StatsXattr && n.ino == blockstore.RootIno {
		return syscall.EPERM
	}
	if strings.HasPrefix(attr, "system.posix_acl_") {
		// No ACL support: storing the ACL as an opaque attribute would make
		// cp -a / tar believe it set the mode (the access ACL carries the
		// permission bits) and skip chmod. EOPNOTSUPP makes them chmod.
		return syscall.EOPNOTSUPP
	}
	if err := f.st.SpaceFor(int64(len(data)) + 4096); err != nil {
		return f.errno("setxattr", n.ino, err)
	}
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := now()
	err := f.st.Update(func(t *blockstore.Txn) error {
		_, err := t.GetXattr(n.ino, attr)
		exists := err == nil
		if err != nil && !errors.Is(err, blockstore.ErrNotFound) {
			return err
		}
		if flags&0x1 != 0 && exists {
			return syscall.EEXIST
		}
		if flags&0x2 != 0 && !exists {
			return syscall.ENODATA
		}
		in := s.attr
		in.Ctime = ts
		if err := t.PutInode(in); err != nil {
			return err
		}
		return t.SetXattr(n.ino, attr, data)
	})
	if err != nil {
		return f.errno("setxattr", n.ino, err)
	}
	s.attr.Ctime = ts
	return 0
}

// Removexattr removes an extended attribute.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	f := n.fsys
	s := n.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := now()
	err := f.st.Update(func(t *blockstore.Txn) error {
		if _, err := t.GetXattr(n.ino, attr); err != nil {
			return err
		}
		in := s.attr
		in.Ctime = ts
		if err := t.PutInode(in); err != nil {
			return err
		}
		return t.DeleteXattr(n.ino, attr)
	})
	if errors.Is(err, blockstore.ErrNotFound) {
		return syscall.ENODATA
	}
	if err != nil {
		return f.errno("removexattr", n.ino, err)
	}
	s.attr.Ctime = ts
	return 0
}

// Listxattr lists the extended attribute names, NUL-terminated.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var names []string
	_ = n.fsys.st.View(func(t *blockstore.Txn) error {
		names = t.ListXattr(n.ino)
		return nil
	})
	var b []byte
	for _, nm := range names {
		b = append(append(b, nm...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// Statfs reports the space of the filesystem holding the store.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.fsys.st.Dir(), &st); err != nil {
		return n.fsys.errno("statfs", n.ino, fmt.Errorf("statfs of the store directory: %w", err))
	}
	out.Blocks = st.Blocks
	out.Bfree = st.Bfree
	out.Bavail = st.Bavail
	out.Files = st.Files
	out.Ffree = st.Ffree
	out.Bsize = uint32(st.Bsize)
	out.Frsize = uint32(st.Frsize)
	out.NameLen = 255
	return 0
}
