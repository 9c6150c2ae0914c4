package fs

import (
	"context"
	"strings"
	"time"

	"github.com/lmfs/lmfs/coder"
	"github.com/lmfs/lmfs/fs/sched"
)

// CodeTask is the Payload of every coding job the filesystem gives the
// scheduler. A batch backend (sched.Batcher) registered for a job key codes
// In into Out for each task of its batch:
//
//   - key "decode/NAME" (NAME: the codec of the record, e.g. decode/cm):
//     In is a block record (coder/FORMAT.md), Out gets its decoded bytes;
//     the record's CRC must be checked, as coder.Registry.Decode does;
//   - key "encode/NAMES" (the codecs the chooser tries, e.g. encode/zstd+cm):
//     In is a raw block, Out gets the smallest record (coder.Chooser.Encode).
type CodeTask struct {
	Dir     Direction
	In, Out []byte
}

// DecodeKey is the scheduler key of decode jobs of records of codec id.
func DecodeKey(reg *coder.Registry, id coder.ID) string { return "decode/" + reg.NameOf(id) }

// EncodeKey is the scheduler key of encode jobs with ch.
func EncodeKey(ch *coder.Chooser) string { return "encode/" + strings.Join(ch.Codecs()[1:], "+") }

// submitCode queues a coding task at priority p. ch codes encode tasks.
// then (optional) gets the result once the job has run.
func (f *FS) submitCode(ctx context.Context, p sched.Priority, t *CodeTask, ch *coder.Chooser, then func(error)) (*sched.Job, error) {
	var key string
	if t.Dir == Decode {
		id := coder.ID(255)
		if len(t.In) > 1 {
			id = coder.ID(t.In[1])
		}
		key = DecodeKey(f.reg, id)
	} else {
		key = EncodeKey(ch)
	}
	return f.sched.Submit(ctx, p, sched.Task{Key: key, Payload: t, Then: then, Run: func(ctx context.Context) error {
		var err error
		if t.Dir == Decode {
			t.Out, err = f.decode(ctx, t.In)
		} else {
			t.Out, err = f.encode(ctx, ch, t.In)
		}
		return err
	}})
}

// code runs a coding task at priority p and waits for it.
func (f *FS) code(ctx context.Context, p sched.Priority, t *CodeTask, ch *coder.Chooser) ([]byte, error) {
	j, err := f.submitCode(ctx, p, t, ch, nil)
	if err != nil {
		return nil, err
	}
	if err := f.sched.Wait(ctx, j); err != nil {
		return nil, err
	}
	return t.Out, nil
}

// encode codes raw with ch and counts it under the codec that won.
func (f *FS) encode(ctx context.Context, ch *coder.Chooser, raw []byte) ([]byte, error) {
	t0 := time.Now()
	rec, err := ch.Encode(ctx, nil, raw)
	if err == nil && len(rec) > 1 {
		f.ctr.add(Encode, rec[1], len(raw), len(rec), time.Since(t0))
	}
	return rec, err
}

// decode decodes a block record and counts it under its codec.
func (f *FS) decode(ctx context.Context, rec []byte) ([]byte, error) {
	t0 := time.Now()
	data, h, err := f.reg.Decode(ctx, nil, rec)
	if err == nil {
		f.ctr.add(Decode, byte(h.Codec), len(data), len(rec), time.Since(t0))
	}
	return data, err
}
