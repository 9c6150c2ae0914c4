package coder

import (
	"context"
	"fmt"
	"math"
)

// Policy names which codecs a block is offered to.
type Policy string

// The codec policies (config key codec.policy).
const (
	// PolicyFast codes with zstd only.
	PolicyFast Policy = "fast"
	// PolicyBalanced adds the prediction codec (cm) and keeps it where it wins.
	PolicyBalanced Policy = "balanced"
	// PolicyMax offers every registered codec and keeps the smallest.
	PolicyMax Policy = "max"
)

// ParsePolicy checks a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyFast, PolicyBalanced, PolicyMax:
		return p, nil
	}
	return "", fmt.Errorf("unknown codec policy %q: use fast, balanced or max", s)
}

// balancedCodecs are the prediction codecs the balanced policy tries, best
// first; those not registered are skipped.
var balancedCodecs = []string{"cm"}

// Chooser codes each block with every codec its policy allows and keeps the
// smallest record, never larger than the raw record. It is safe for concurrent
// use.
type Chooser struct {
	reg  *Registry
	fast []Codec // always tried (zstd)
	slow []Codec // skipped when the block looks incompressible
}

// NewChooser returns a chooser for policy over the codecs in reg.
func NewChooser(reg *Registry, p Policy) (*Chooser, error) {
	ch := &Chooser{reg: reg}
	z, err := reg.ByName("zstd")
	if err != nil {
		return nil, fmt.Errorf("policy %s needs the zstd codec: %w", p, err)
	}
	ch.fast = []Codec{z}
	switch p {
	case PolicyFast:
	case PolicyBalanced:
		for _, n := range balancedCodecs {
			if c, err := reg.ByName(n); err == nil {
				ch.slow = append(ch.slow, c)
			}
		}
	case PolicyMax:
		for _, n := range reg.Names() {
			if n == "raw" || n == "zstd" {
				continue
			}
			c, _ := reg.ByName(n)
			if s, ok := c.(interface{ Superseded() bool }); ok && s.Superseded() {
				continue // kept for decoding; its successor is tried
			}
			ch.slow = append(ch.slow, c)
		}
	default:
		return nil, fmt.Errorf("unknown codec policy %q", p)
	}
	return ch, nil
}

// Codecs returns the names of the codecs this chooser may use, raw included.
func (ch *Chooser) Codecs() []string {
	n := []string{"raw"}
	for _, c := range ch.fast {
		n = append(n, c.Name())
	}
	for _, c := range ch.slow {
		n = append(n, c.Name())
	}
	return n
}

// Encode codes raw and appends the smallest block record to dst.
func (ch *Chooser) Encode(ctx context.Context, dst, raw []byte) ([]byte, error) {
	start := len(dst)
	best, err := ch.reg.EncodeWith(ctx, nil, Raw{}, raw)
	if err != nil {
		return dst, err
	}
	if len(raw) == 0 {
		return append(dst, best...), nil
	}
	try := func(c Codec) error {
		rec, err := ch.reg.EncodeWith(ctx, nil, c, raw)
		if err != nil {
			return err
		}
		if len(rec) < len(best) {
			best = rec
		}
		return nil
	}
	for _, c := range ch.fast {
		if err := try(c); err != nil {
			return dst[:start], err
		}
	}
	if len(ch.slow) > 0 && !LooksIncompressible(raw, len(best)) {
		for _, c := range ch.slow {
			if err := ctx.Err(); err != nil {
				return dst[:start], err
			}
			if err := try(c); err != nil {
				return dst[:start], err
			}
		}
	}
	return append(dst, best...), nil
}

// LooksIncompressible is the cheap check that keeps slow codecs off random,
// already-compressed and encrypted data. fastSize is the size the fast codec
// (zstd) reached on raw. A block is judged incompressible when zstd saved less
// than 3% and its order-0 entropy is above 7.8 bits per byte: such data has no
// byte-level statistics a model could use.
func LooksIncompressible(raw []byte, fastSize int) bool {
	if len(raw) < 256 {
		return false
	}
	if fastSize*100 < len(raw)*97 {
		return false
	}
	return Order0Entropy(raw) > 7.8
}

// Order0Entropy returns the empirical order-0 entropy of b in bits per byte.
// It is a heuristic only and never shapes a stored probability.
func Order0Entropy(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	var cnt [256]int
	for _, c := range b {
		cnt[c]++
	}
	n := float64(len(b))
	h := 0.0
	for _, c := range cnt {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
