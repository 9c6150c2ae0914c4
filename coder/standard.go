package coder

import "fmt"

// Options configures the standard codec set.
type Options struct {
	// ZstdLevel is the zstd level, 1..22 (config codec.zstd_level).
	ZstdLevel int
	// CMMemory bounds one context-mixing coder's tables in bytes (config
	// codec.cm_memory).
	CMMemory int64
}

// DefaultOptions are the options lmfs uses when none are configured.
func DefaultOptions() Options { return Options{ZstdLevel: 3, CMMemory: 64 << 20} }

// NewStandard returns a registry with every codec this build can write and
// read: raw, zstd and the prediction codecs.
func NewStandard(o Options) (*Registry, error) {
	z, err := NewZstd(o.ZstdLevel)
	if err != nil {
		return nil, fmt.Errorf("zstd codec: %w", err)
	}
	return NewRegistry(z, NewOrder2(), NewCM(o.CMMemory)), nil
}
