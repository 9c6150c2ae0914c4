//go:build !amd64 || purego

package lm

// bestMatvec returns the fastest kernel for this machine: pure Go here (not
// amd64, or built with the purego tag).
func bestMatvec() (matvecFunc, string) { return matvecGo, "go" }
