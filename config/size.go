package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// Size is a byte count that config files may write as 65536, "64KiB", "64K",
// "16MiB", "1GiB" or "1G" (powers of 1024).
type Size int64

// MarshalYAML writes the size in the largest exact binary unit.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// String formats the size as e.g. "64KiB".
func (s Size) String() string {
	units := []string{"GiB", "MiB", "KiB"}
	for i, u := range units {
		m := Size(1) << (10 * (3 - i))
		if s != 0 && s%m == 0 {
			return fmt.Sprintf("%d%s", s/m, u)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// ParseSize parses a size such as "64KiB".
func ParseSize(str string) (Size, error) {
	t := strings.TrimSpace(str)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size: write a number of bytes or e.g. 64KiB, 16MiB, 1GiB", str)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", str)
	}
	return Size(n * mult), nil
}

func sizeHook() mapstructure.DecodeHookFunc {
	return func(_ reflect.Type, to reflect.Type, data any) (any, error) {
		if to != reflect.TypeOf(Size(0)) {
			return data, nil
		}
		switch d := data.(type) {
		case string:
			return ParseSize(d)
		case int:
			return Size(d), nil
		case int64:
			return Size(d), nil
		case float64:
			return Size(int64(d)), nil
		}
		return data, nil
	}
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write e.g. 30s, 5m, 1h", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return d, nil
}

// GCIntervalDuration returns store.gc_interval as a duration (validated).
func (c *Config) GCIntervalDuration() time.Duration {
	d, _ := parseDuration(c.Store.GCInterval)
	return d
}
