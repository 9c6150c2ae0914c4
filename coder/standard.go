package coder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/lmfs/lmfs/predictor/gpu"
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
	// Device is where the neural LM runs (config predictor.device): "auto"
	// (the GPU when the CUDA library loads and sees one, else the CPU),
	// "cpu", or "cuda" (as auto, but a missing GPU is logged as a warning).
	// "" means auto.
	Device string
	// CUDALib is the path of the CUDA library (config predictor.cuda_lib);
	// "" means $LMFS_CUDA_LIB, else liblmfs_cuda.so next to the binary.
	CUDALib string
	// MaxBatch bounds the blocks of one GPU call (config
	// predictor.cuda_batch); 0 means 8192.
	MaxBatch int
	// Log receives the line saying where the LM runs and why, and any GPU
	// failure; nil means slog.Default().
	Log *slog.Logger
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
	reg.lm = openLMDevice(o)
	reg.builtins, reg.cmMemory = true, o.CMMemory
	reg.registerLM(m, lm.DefaultFile(), o.CMMemory, true)
	return reg, nil
}

// lmDevice is the GPU library the LM codecs of a registry use, if any.
type lmDevice struct {
	lib      *gpu.Lib
	maxBatch int
	log      *slog.Logger
}

// openLMDevice loads the CUDA library as o says, and logs one line saying
// where the LM runs and why.
func openLMDevice(o Options) *lmDevice {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	d := &lmDevice{maxBatch: o.MaxBatch, log: log}
	switch o.Device {
	case "cpu":
		log.Debug("neural LM runs on the CPU", "reason", "predictor.device is cpu")
		return d
	case "", "auto", "cuda":
	default:
		log.Warn("neural LM runs on the CPU", "reason", fmt.Sprintf("unknown predictor.device %q (use auto, cpu or cuda)", o.Device))
		return d
	}
	path := o.CUDALib
	if path == "" {
		path = gpu.DefaultPath()
	}
	lib, err := gpu.Load(path)
	if err != nil {
		// One line says why. Only a GPU asked for, or a library that is
		// there (or was named) but does not work, is a warning; no library
		// where none was asked for is the usual CPU-only setup.
		lvl := slog.LevelWarn
		explicit := o.CUDALib != "" || os.Getenv(gpu.EnvLib) != ""
		switch {
		case o.Device == "cuda":
		case errors.Is(err, fs.ErrNotExist) && !explicit:
			lvl = slog.LevelDebug
		case errors.Is(err, gpu.ErrNoDevice):
			lvl = slog.LevelInfo
		}
		log.Log(context.Background(), lvl, "neural LM runs on the CPU", "reason", err.Error())
		return d
	}
	d.lib = lib
	return d
}

// registerLM registers the lm and lm+cm codecs of model m (whose file is
// file), on the GPU when the registry has one and the library runs m. Only
// the codecs of the model lmfs encodes with (encode) take the codec names;
// other models' codecs only decode.
func (r *Registry) registerLM(m *lm.Model, file []byte, cmMemory int64, encode bool) {
	reg := r.RegisterDecoder
	if encode {
		reg = r.Register
	}
	id := ModelID(m.ID())
	if r.lm != nil && r.lm.lib != nil {
		gm, err := r.lm.lib.Open(file, 0)
		if err == nil {
			r.lm.log.Info("neural LM runs on the GPU", "model", id.Short(), "device", gm.Device(), "library", r.lm.lib.Path())
			a := Accel{Backend: gm, MaxBatch: r.lm.maxBatch, Log: r.lm.log, SmallOnCPU: SmallOnCPU(m)}
			reg(NewLMAccel(m, id, a))
			reg(NewLMCMAccel(m, id, cmMemory, a))
			reg(NewLMCM2Accel(m, id, cmMemory, a))
			reg(NewLMCM1Accel(m, id, cmMemory, a))
			return
		}
		r.lm.log.Info("neural LM runs on the CPU", "model", id.Short(), "reason", err.Error())
	}
	reg(NewLM(m))
	reg(NewLMCM(m, cmMemory))
	reg(NewLMCM2(m, cmMemory))
	reg(NewLMCM1(m, cmMemory))
}

// RegisterModel loads the model file data, checks that it hashes to id, and
// registers the model codecs (lm, lm+cm) for it, so blocks that name it
// decode. Encoding keeps the built-in model. Registering a model that is
// already there is a no-op.
func (r *Registry) RegisterModel(id ModelID, data []byte, cmMemory int64) error {
	if r.HasModel(id) {
		return nil
	}
	m, err := lm.LoadVerified(data, id)
	if err != nil {
		return fmt.Errorf("model %s: %w", id.Short(), err)
	}
	r.registerLM(m, data, cmMemory, false)
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
