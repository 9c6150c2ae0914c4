package coder

import (
	"context"
	"fmt"
	"github.com/lmfs/lmfs/predictor/lm"
	"sort"
	"sync"
)

// ID is a codec id as stored in block headers. Ids are never reused.
type ID uint8

// Codec ids. See FORMAT.md.
const (
	IDRaw    ID = 0
	IDZstd   ID = 1
	IDOrder2 ID = 2
	IDCM     ID = 3
	IDLM     ID = 4
	IDLMCM1  ID = 5 // lm+cm.1: superseded by IDLMCM, decodes old blocks
	IDLMCM2  ID = 6 // lm+cm.2: superseded by IDLMCM, decodes old blocks
	IDLMCM   ID = 7
)

// Codec turns a block's raw bytes into a payload and back. Implementations
// must be safe for concurrent use and deterministic: the same input gives the
// same payload, and Decode(Encode(x)) == x on every machine.
type Codec interface {
	// ID is the id written in block headers.
	ID() ID
	// Name is the user-facing name ("zstd", "cm", ...).
	Name() string
	// Model returns the id of the model the codec codes with, and false for
	// codecs that use none.
	Model() (ModelID, bool)
	// Encode appends the payload for src to dst.
	Encode(ctx context.Context, dst, src []byte) ([]byte, error)
	// Decode appends the rawLen bytes coded in payload to dst. It returns an
	// error wrapping ErrCorrupt when the payload is not valid; it must never
	// panic or loop forever on arbitrary input.
	Decode(ctx context.Context, dst, payload []byte, rawLen int) ([]byte, error)
}

// Registry maps codec ids (and model ids, for model codecs) to codecs. It is
// safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]Codec
	plain  map[ID]Codec
	model  map[ID]map[ModelID]Codec
	// modelIDs marks ids registered as model codecs, so that a block naming an
	// unknown model gets a precise error rather than "unknown codec".
	modelIDs map[ID]bool
	// lm is where LM codecs registered later run (NewStandard sets it).
	lm *lmDevice
	// builtins: blocks naming a model built into lmfs (a retired default)
	// load it on first use, with cm models of cmMemory bytes (NewStandard).
	builtins bool
	cmMemory int64
}

// NewRegistry returns a registry holding codecs. Raw is always present.
func NewRegistry(codecs ...Codec) *Registry {
	r := &Registry{
		byName:   map[string]Codec{},
		plain:    map[ID]Codec{},
		model:    map[ID]map[ModelID]Codec{},
		modelIDs: map[ID]bool{IDLM: true, IDLMCM1: true, IDLMCM2: true, IDLMCM: true},
	}
	r.Register(Raw{})
	for _, c := range codecs {
		r.Register(c)
	}
	return r
}

// Register adds c, replacing a codec of the same name (and id and model).
func (r *Registry) Register(c Codec) {
	r.add(c, true)
}

// RegisterDecoder adds c for decoding only: blocks with its id (and model)
// decode with it, but ByName keeps returning the codec registered under its
// name, so encoding is unchanged.
func (r *Registry) RegisterDecoder(c Codec) {
	r.add(c, false)
}

func (r *Registry) add(c Codec, byName bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if byName {
		r.byName[c.Name()] = c
	}
	if m, ok := c.Model(); ok {
		r.modelIDs[c.ID()] = true
		if r.model[c.ID()] == nil {
			r.model[c.ID()] = map[ModelID]Codec{}
		}
		r.model[c.ID()][m] = c
		return
	}
	r.plain[c.ID()] = c
}

// ByName returns the codec registered under name.
func (r *Registry) ByName(name string) (Codec, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.byName[name]
	if !ok {
		return nil, fmt.Errorf("unknown codec %q (known: %v)", name, r.namesLocked())
	}
	return c, nil
}

// Names lists the registered codec names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.namesLocked()
}

func (r *Registry) namesLocked() []string {
	var n []string
	for k := range r.byName {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// NameOf returns the name of codec id for tables and logs, or "codec#N".
func (r *Registry) NameOf(id ID) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if c, ok := r.plain[id]; ok {
		return c.Name()
	}
	for _, c := range r.model[id] {
		return c.Name()
	}
	if n, ok := builtinNames[id]; ok {
		return n
	}
	return fmt.Sprintf("codec#%d", id)
}

var builtinNames = map[ID]string{IDRaw: "raw", IDZstd: "zstd", IDOrder2: "order2", IDCM: "cm", IDLM: "lm", IDLMCM1: "lm+cm.1", IDLMCM2: "lm+cm.2", IDLMCM: "lm+cm"}

// UsesModel reports whether blocks of codec id carry a model id.
func (r *Registry) UsesModel(id ID) (bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.modelIDs[id] {
		return true, nil
	}
	if _, ok := r.plain[id]; ok {
		return false, nil
	}
	return false, fmt.Errorf("%w: unknown codec id %d (written by a newer lmfs, or damaged)", ErrCorrupt, id)
}

// lookup finds the codec for a parsed header. A block that names a model
// built into lmfs but not yet registered (a retired default) loads it.
func (r *Registry) lookup(h Header) (Codec, error) {
	if h.HasModel && r.builtins && !r.HasModel(h.Model) {
		if file, ok := lm.BuiltinFile(h.Model); ok {
			if err := r.RegisterModel(h.Model, file, r.cmMemory); err != nil {
				return nil, fmt.Errorf("built-in model %s: %w", h.Model.Short(), err)
			}
		}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if h.HasModel {
		c, ok := r.model[h.Codec][h.Model]
		if !ok {
			return nil, fmt.Errorf("block needs model %s for codec %s, which this store and binary do not have: give its model file (lmfs decompress --model FILE), add it to the store's models, or use the lmfs release that wrote it", h.Model, builtinNames[h.Codec])
		}
		return c, nil
	}
	c, ok := r.plain[h.Codec]
	if !ok {
		return nil, fmt.Errorf("%w: unknown codec id %d", ErrCorrupt, h.Codec)
	}
	return c, nil
}

// EncodeWith codes raw with codec c and returns a complete block record
// appended to dst.
func (r *Registry) EncodeWith(ctx context.Context, dst []byte, c Codec, raw []byte) ([]byte, error) {
	if len(raw) > MaxBlockSize {
		return nil, fmt.Errorf("block of %d bytes exceeds the maximum block size %d", len(raw), MaxBlockSize)
	}
	h := Header{Codec: c.ID(), RawLen: len(raw), CRC: Checksum(raw)}
	h.Model, h.HasModel = c.Model()
	start := len(dst)
	dst = AppendHeader(dst, h)
	out, err := c.Encode(ctx, dst, raw)
	if err != nil {
		return dst[:start], fmt.Errorf("%s encode: %w", c.Name(), err)
	}
	return out, nil
}

// Decode decodes the block record rec, appends the raw bytes to dst and
// returns them with the parsed header. A CRC or length mismatch is an error
// wrapping ErrCorrupt.
func (r *Registry) Decode(ctx context.Context, dst, rec []byte) ([]byte, Header, error) {
	h, err := ParseHeader(rec, r.UsesModel)
	if err != nil {
		return dst, h, err
	}
	c, err := r.lookup(h)
	if err != nil {
		return dst, h, err
	}
	start := len(dst)
	out, err := c.Decode(ctx, dst, rec[h.Size:], h.RawLen)
	if err != nil {
		return dst[:start], h, fmt.Errorf("%s decode: %w", c.Name(), err)
	}
	got := out[start:]
	if len(got) != h.RawLen {
		return dst[:start], h, fmt.Errorf("%w: %s decoded %d bytes, header says %d", ErrCorrupt, c.Name(), len(got), h.RawLen)
	}
	if sum := Checksum(got); sum != h.CRC {
		return dst[:start], h, fmt.Errorf("%w: CRC32C mismatch (stored %08x, decoded %08x)", ErrCorrupt, h.CRC, sum)
	}
	return out, h, nil
}
