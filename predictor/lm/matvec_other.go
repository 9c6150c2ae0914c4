//go:build !amd64 || purego

package lm

// kernels returns the matrix-vector kernels this build has for this machine,
// fastest first: pure Go only here (not amd64, or built with the purego tag).
func kernels() []kernel {
	return []kernel{{"swar", matvecSWAR, nil, requantGo, addI16Go, gatesGo}, {"go", matvecGo, nil, requantGo, addI16Go, gatesGo}}
}

// hasVNNIPanel reports whether this build runs the panel kernel: never here.
func hasVNNIPanel() bool { return false }
