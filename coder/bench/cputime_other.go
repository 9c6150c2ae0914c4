//go:build !linux

package bench

import "time"

var epoch = time.Now()

// threadCPU falls back to the wall clock where no per-thread CPU clock is
// available: busy time of the worker, which counts time it was preempted.
func threadCPU() time.Duration { return time.Since(epoch) }

const cpuClock = "worker busy time (wall clock)"

// processCPU falls back to the wall clock.
func processCPU() time.Duration { return time.Since(epoch) }
