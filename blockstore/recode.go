package blockstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// A block's Badger UserMeta holds its codec id in the low six bits and its
// recode level in the top two (see KEYS.md). The level says which codec
// policy has been tried on the block: LevelFast for blocks coded with zstd
// or raw only (the fast write path), LevelBalanced and LevelMax for blocks
// the balanced or max policy has seen. The recompressor re-codes blocks whose
// level is below its policy's.
const (
	codecMask  = 0x3f
	levelShift = 6
)

// Recode levels, one per codec policy.
const (
	LevelFast     uint8 = 0
	LevelBalanced uint8 = 1
	LevelMax      uint8 = 2
)

// Meta packs a codec id and a recode level into a block's UserMeta.
func Meta(codec byte, level uint8) byte { return codec&codecMask | level<<levelShift }

// MetaCodec returns the codec id of a block's UserMeta.
func MetaCodec(meta byte) byte { return meta & codecMask }

// MetaLevel returns the recode level of a block's UserMeta.
func MetaLevel(meta byte) uint8 { return meta >> levelShift }

// BlockRef names a stored block and what a keys-only scan knows about it.
type BlockRef struct {
	Ino, Blk uint64
	Meta     byte  // codec id and recode level
	Stored   int64 // size of the block record in bytes
}

// PendingBlocks returns up to max blocks whose recode level is below level,
// in key order, starting at block (ino, blk). It reads keys only, no block
// payload. next is where the following call should start; done is true when
// the scan reached the end of the blocks.
func (s *Store) PendingBlocks(ctx context.Context, ino, blk uint64, level uint8, max int) (refs []BlockRef, nextIno, nextBlk uint64, done bool, err error) {
	err = s.View(func(t *Txn) error {
		it := t.t.NewIterator(badger.IteratorOptions{Prefix: []byte{pBlock}})
		defer it.Close()
		n := 0
		for it.Seek(blockKey(ino, blk)); it.Valid(); it.Next() {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			k := item.Key()
			if len(k) != 17 {
				continue
			}
			ki, kb := binary.BigEndian.Uint64(k[1:9]), binary.BigEndian.Uint64(k[9:])
			if len(refs) == max {
				nextIno, nextBlk = ki, kb
				return nil
			}
			if m := item.UserMeta(); MetaLevel(m) < level {
				refs = append(refs, BlockRef{Ino: ki, Blk: kb, Meta: m, Stored: item.ValueSize()})
			}
		}
		done = true
		return nil
	})
	return refs, nextIno, nextBlk, done, err
}

// Pending counts the blocks (and their stored bytes) per codec id whose
// recode level is below level: the work `lmfs recompress` with that level's
// policy would do. Keys only.
func (s *Store) Pending(ctx context.Context, level uint8) (blocks, bytes map[byte]uint64, err error) {
	blocks, bytes = map[byte]uint64{}, map[byte]uint64{}
	err = s.View(func(t *Txn) error {
		it := t.t.NewIterator(badger.IteratorOptions{Prefix: []byte{pBlock}})
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			if m := item.UserMeta(); MetaLevel(m) < level {
				blocks[MetaCodec(m)]++
				bytes[MetaCodec(m)] += uint64(item.ValueSize())
			}
		}
		return nil
	})
	return blocks, bytes, err
}

// GetBlockVersion returns block blk of ino with its UserMeta and its Badger
// version, which changes whenever the block is written again; pass the
// version to ReplaceBlockIf.
func (s *Store) GetBlockVersion(ino, blk uint64) (rec []byte, meta byte, version uint64, err error) {
	err = s.View(func(t *Txn) error {
		item, err := t.t.Get(blockKey(ino, blk))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		meta, version = item.UserMeta(), item.Version()
		rec, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("block %d of inode %d: %w", blk, ino, err)
	}
	return rec, meta, version, nil
}

// ReplaceBlockIf stores rec with meta as block blk of ino, in one
// transaction, only if the block is still stored at version (as returned by
// GetBlockVersion). It reports whether it replaced the block: a write,
// truncate or unlink that changed or removed the block since wins, and rec is
// dropped. The caller must make sure rec decodes to the same bytes as the
// record it replaces.
func (s *Store) ReplaceBlockIf(ino, blk, version uint64, rec []byte, meta byte) (bool, error) {
	var replaced bool
	err := s.Update(func(t *Txn) error {
		replaced = false
		k := blockKey(ino, blk)
		item, err := t.t.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if item.Version() != version {
			return nil
		}
		t.deleted += item.ValueSize()
		if err := t.t.SetEntry(badger.NewEntry(k, rec).WithMeta(meta)); err != nil {
			return err
		}
		replaced = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("replace block %d of inode %d: %w", blk, ino, err)
	}
	return replaced, nil
}
