package coder

import (
	"fmt"

	"github.com/lmfs/lmfs/predictor/lm"
)

// Options configures the standard codec set.
type Options struct {
	// ZstdLevel is the zstd level, 1..22 (config codec.zstd_level).
	ZstdLevel int
	// CMMemory bounds one context-mixing coder's tables in bytes (config
	// codec.cm_memory).
	CMMemory int64
	// NoLM leaves out the neural LM codecs (lm, lm+cm). Their blocks then
	// cannot be read, so only tests that need a fast registry set it: the
	// pure-Go LM codes about 10-20 KB/s per core.
	NoLM bool
}

// DefaultOptions are the options lmfs uses when none are configured.
func DefaultOptions() Options { return Options{ZstdLevel: 3, CMMemory: 64 << 20} }

// NewStandard returns a registry with every codec this build can write and
// read: raw, zstd and the prediction codecs (cm, order2, and lm and lm+cm
// with the built-in model).
func NewStandard(o Options) (*Registry, error) {
	z, err := NewZstd(o.ZstdLevel)
	if err != nil {
		return nil, fmt.Errorf("zstd codec: %w", err)
	}
	reg := NewRegistry(z, NewOrder2(), NewCM(o.CMMemory))
	if o.NoLM {
		return reg, nil
	}
	m, err := lm.Default()
	if err != nil {
		return nil, fmt.Errorf("built-in LM model: %w", err)
	}
	reg.Register(NewLM(m))
	reg.Register(NewLMCM(m, o.CMMemory))
	return reg, nil
}

// RegisterModel loads the model file data, checks that it hashes to id, and
// registers the model codecs (lm, lm+cm) for it, so blocks that name it
// decode. Registering a model that is already there is a no-op.
func (r *Registry) RegisterModel(id ModelID, data []byte, cmMemory int64) error {
	if r.HasModel(id) {
		return nil
	}
	m, err := lm.LoadVerified(data, id)
	if err != nil {
		return fmt.Errorf("model %s: %w", id.Short(), err)
	}
	r.Register(NewLM(m))
	r.Register(NewLMCM(m, cmMemory))
	return nil
}

// HasModel reports whether codecs for model id are registered.
func (r *Registry) HasModel(id ModelID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, byModel := range r.model {
		if _, ok := byModel[id]; ok {
			return true
		}
	}
	return false
}

// DefaultModelFile returns the built-in model file (the one NewStandard
// registers), for stores that keep a copy of every model they use.
func DefaultModelFile() []byte { return lm.DefaultFile() }
