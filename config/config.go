// Package config loads and validates lmfs configuration with viper: a YAML
// file, LMFS_* environment variables and command-line flags, in viper's usual
// precedence (flag > environment > file > default).
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Config is the effective lmfs configuration.
type Config struct {
	Store      StoreConfig      `mapstructure:"store" yaml:"store"`
	FS         FSConfig         `mapstructure:"fs" yaml:"fs"`
	Cache      CacheConfig      `mapstructure:"cache" yaml:"cache"`
	Codec      CodecConfig      `mapstructure:"codec" yaml:"codec"`
	Predictor  PredictorConfig  `mapstructure:"predictor" yaml:"predictor"`
	Mount      MountConfig      `mapstructure:"mount" yaml:"mount"`
	Log        LogConfig        `mapstructure:"log" yaml:"log"`
	Recompress RecompressConfig `mapstructure:"recompress" yaml:"recompress"`
	Metrics    MetricsConfig    `mapstructure:"metrics" yaml:"metrics"`
}

// MetricsConfig configures the Prometheus metrics endpoint of the daemon.
type MetricsConfig struct {
	// Listen is the TCP address (host:port) the mounted daemon serves
	// /metrics on; empty turns metrics off.
	Listen string `mapstructure:"listen" yaml:"listen"`
}

// RecompressConfig configures background recompression: writes are coded with
// the fast policy and re-coded with codec.policy when the filesystem is idle.
type RecompressConfig struct {
	// Enabled turns background recompression on (writes then code fast).
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// Idle is how long the filesystem must go without writes before
	// background recompression starts (a Go duration, e.g. 2s).
	Idle string `mapstructure:"idle" yaml:"idle"`
	// Workers is how many CPU workers background recompression may use.
	Workers int `mapstructure:"workers" yaml:"workers"`
}

// StoreConfig configures where and how data is stored.
type StoreConfig struct {
	// Path is the store directory (Badger database and models).
	Path string `mapstructure:"path" yaml:"path"`
	// SyncWrites makes every Badger commit durable, not only fsync'ed ones.
	SyncWrites bool `mapstructure:"sync_writes" yaml:"sync_writes"`
	// GCInterval is how often value-log garbage collection runs.
	GCInterval string `mapstructure:"gc_interval" yaml:"gc_interval"`
	// MemTableSize is Badger's memtable size in bytes (memory use scales with it).
	MemTableSize Size `mapstructure:"memtable_size" yaml:"memtable_size"`
}

// FSConfig configures the filesystem layer.
type FSConfig struct {
	// BlockSize is the logical block size for new stores, in bytes.
	BlockSize Size `mapstructure:"block_size" yaml:"block_size"`
	// WriteBuffer bounds the dirty (not yet coded) data held in memory.
	WriteBuffer Size `mapstructure:"write_buffer" yaml:"write_buffer"`
}

// CacheConfig configures the decoded-block cache.
type CacheConfig struct {
	// Size bounds the decoded-block cache in bytes.
	Size Size `mapstructure:"size" yaml:"size"`
}

// CodecConfig configures block coding.
type CodecConfig struct {
	// Policy is fast, balanced or max.
	Policy string `mapstructure:"policy" yaml:"policy"`
	// ZstdLevel is the zstd level (1..22).
	ZstdLevel int `mapstructure:"zstd_level" yaml:"zstd_level"`
	// CMMemory bounds the context-mixing model's tables per coder, in bytes.
	CMMemory Size `mapstructure:"cm_memory" yaml:"cm_memory"`
	// Workers is the number of blocks coded in parallel (0: one per core;
	// the mount uses four per core when the neural LM runs on the CPU).
	Workers int `mapstructure:"workers" yaml:"workers"`
}

// PredictorConfig configures where the neural LM runs.
type PredictorConfig struct {
	// Device is auto (a GPU when the CUDA library loads and sees one, else
	// the CPU), cpu or cuda.
	Device string `mapstructure:"device" yaml:"device"`
	// CUDALib is the path of liblmfs_cuda.so ("": $LMFS_CUDA_LIB, else next
	// to the lmfs binary).
	CUDALib string `mapstructure:"cuda_lib" yaml:"cuda_lib"`
	// CUDABatch bounds the blocks of one GPU call.
	CUDABatch int `mapstructure:"cuda_batch" yaml:"cuda_batch"`
}

// MountConfig configures mounting.
type MountConfig struct {
	// AllowOther lets other users access the mount (default on for root).
	AllowOther bool `mapstructure:"allow_other" yaml:"allow_other"`
	// Debug logs every FUSE request.
	Debug bool `mapstructure:"debug" yaml:"debug"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level" yaml:"level"`
}

// Defaults returns the built-in defaults. home is the user's data directory
// base used for the store path when not root.
func Defaults() map[string]any {
	return map[string]any{
		"store.path":           DefaultStorePath(),
		"store.sync_writes":    false,
		"store.gc_interval":    "5m",
		"store.memtable_size":  "16MiB",
		"fs.block_size":        "64KiB",
		"fs.write_buffer":      "64MiB",
		"cache.size":           "64MiB",
		"codec.policy":         "balanced",
		"codec.zstd_level":     3,
		"codec.cm_memory":      "64MiB",
		"codec.workers":        0,
		"predictor.device":     "auto",
		"predictor.cuda_lib":   "",
		"predictor.cuda_batch": 8192,
		"mount.allow_other":    os.Geteuid() == 0,
		"mount.debug":          false,
		"log.level":            "info",
		"recompress.enabled":   true,
		"recompress.idle":      "2s",
		"recompress.workers":   1,
		"metrics.listen":       "",
	}
}

// DefaultStorePath is /var/lib/lmfs for root and $XDG_DATA_HOME/lmfs (or
// ~/.local/share/lmfs) otherwise.
func DefaultStorePath() string {
	if os.Geteuid() == 0 {
		return "/var/lib/lmfs"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "lmfs")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "lmfs")
	}
	return "lmfs-store"
}

// Keys lists every configuration key, sorted.
func Keys() []string {
	var k []string
	for key := range Defaults() {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// FlagNames maps configuration keys to the command-line flags that set them.
// A command binds only the flags it defines.
var flagNames = map[string]string{
	"store.path":        "store",
	"fs.block_size":     "block-size",
	"cache.size":        "cache-size",
	"codec.policy":      "policy",
	"codec.workers":     "workers",
	"mount.allow_other": "allow-other",
	"mount.debug":       "debug",
	"log.level":         "log-level",
}

// Load reads the configuration. file is the --config flag's value (empty to
// search $XDG_CONFIG_HOME/lmfs/config.yaml, ~/.config/lmfs/config.yaml and
// /etc/lmfs/config.yaml); flags, if non-nil, are bound for the keys they
// define. It returns the file used ("" if none) with the config.
func Load(file string, flags *pflag.FlagSet) (*Config, string, error) {
	v := viper.New()
	for k, d := range Defaults() {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("LMFS")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if flags != nil {
		for key, name := range flagNames {
			if f := flags.Lookup(name); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, "", err
				}
			}
		}
	}
	used := ""
	if file != "" {
		used = file
	} else {
		for _, c := range searchPath() {
			if _, err := os.Stat(c); err == nil {
				used = c
				break
			}
		}
	}
	if used != "" {
		if err := checkFileKeys(used); err != nil {
			return nil, used, err
		}
		v.SetConfigFile(used)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, used, fmt.Errorf("read config %s: %w", used, err)
		}
	}
	var c Config
	if err := v.Unmarshal(&c, viper.DecodeHook(sizeHook())); err != nil {
		return nil, used, fmt.Errorf("config %s: %w", orDefaults(used), err)
	}
	if err := c.Validate(); err != nil {
		return nil, used, fmt.Errorf("config %s: %w", orDefaults(used), err)
	}
	return &c, used, nil
}

func orDefaults(f string) string {
	if f == "" {
		return "(defaults, environment and flags)"
	}
	return f
}

func searchPath() []string {
	var p []string
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		p = append(p, filepath.Join(d, "lmfs", "config.yaml"))
	} else if h, err := os.UserHomeDir(); err == nil {
		p = append(p, filepath.Join(h, ".config", "lmfs", "config.yaml"))
	}
	return append(p, "/etc/lmfs/config.yaml")
}

// checkFileKeys refuses a file with keys lmfs does not know, naming them, so a
// typo does not silently fall back to a default.
func checkFileKeys(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read config %s: %w", file, err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config %s is not valid YAML: %w", file, err)
	}
	known := map[string]bool{}
	sections := map[string]bool{}
	for _, k := range Keys() {
		known[k] = true
		sections[strings.SplitN(k, ".", 2)[0]] = true
	}
	var bad []string
	for sec, val := range m {
		if !sections[sec] {
			bad = append(bad, sec)
			continue
		}
		sub, ok := val.(map[string]any)
		if !ok {
			if val != nil {
				bad = append(bad, sec+" (must be a section)")
			}
			continue
		}
		for k := range sub {
			if !known[sec+"."+k] {
				bad = append(bad, sec+"."+k)
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("config %s has unknown keys: %s (known keys: %s)", file, strings.Join(bad, ", "), strings.Join(Keys(), ", "))
	}
	return nil
}

// Validate checks every value and says what is wrong with the first bad one.
func (c *Config) Validate() error {
	var errs []error
	if c.Store.Path == "" {
		errs = append(errs, errors.New("store.path is empty: set it to the directory that holds the store"))
	}
	if _, err := parseDuration(c.Store.GCInterval); err != nil {
		errs = append(errs, fmt.Errorf("store.gc_interval: %w", err))
	}
	if c.Store.MemTableSize < 1<<20 {
		errs = append(errs, fmt.Errorf("store.memtable_size %d is below the minimum of 1MiB", c.Store.MemTableSize))
	}
	bs := c.FS.BlockSize
	if bs < 4096 || bs > 16<<20 || bs&(bs-1) != 0 {
		errs = append(errs, fmt.Errorf("fs.block_size %d must be a power of two between 4KiB and 16MiB", bs))
	}
	if c.FS.WriteBuffer < 2*bs {
		errs = append(errs, fmt.Errorf("fs.write_buffer %d must hold at least two blocks (%d bytes)", c.FS.WriteBuffer, 2*bs))
	}
	if c.Cache.Size < bs {
		errs = append(errs, fmt.Errorf("cache.size %d must hold at least one block (%d bytes)", c.Cache.Size, bs))
	}
	switch c.Codec.Policy {
	case "fast", "balanced", "max":
	default:
		errs = append(errs, fmt.Errorf("codec.policy %q: use fast, balanced or max", c.Codec.Policy))
	}
	if c.Codec.ZstdLevel < 1 || c.Codec.ZstdLevel > 22 {
		errs = append(errs, fmt.Errorf("codec.zstd_level %d: use 1..22", c.Codec.ZstdLevel))
	}
	if c.Codec.CMMemory < 1<<20 || c.Codec.CMMemory > 4<<30 {
		errs = append(errs, fmt.Errorf("codec.cm_memory %d: use 1MiB..4GiB", c.Codec.CMMemory))
	}
	if c.Codec.Workers < 0 {
		errs = append(errs, fmt.Errorf("codec.workers %d: use 0 (one per core) or more", c.Codec.Workers))
	}
	switch c.Predictor.Device {
	case "auto", "cpu", "cuda":
	default:
		errs = append(errs, fmt.Errorf("predictor.device %q: use auto, cpu or cuda", c.Predictor.Device))
	}
	if c.Predictor.CUDABatch < 1 || c.Predictor.CUDABatch > 65536 {
		errs = append(errs, fmt.Errorf("predictor.cuda_batch %d: use 1..65536", c.Predictor.CUDABatch))
	}
	if _, err := parseDuration(c.Recompress.Idle); err != nil {
		errs = append(errs, fmt.Errorf("recompress.idle: %w", err))
	}
	if c.Recompress.Workers < 1 {
		errs = append(errs, fmt.Errorf("recompress.workers %d: use 1 or more", c.Recompress.Workers))
	}
	if l := c.Metrics.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("metrics.listen %q: use host:port (e.g. 127.0.0.1:9101 or :9101), or empty for no metrics", l))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	return errors.Join(errs...)
}

// YAML renders the configuration as a config file would hold it.
func (c *Config) YAML() ([]byte, error) { return yaml.Marshal(c) }
