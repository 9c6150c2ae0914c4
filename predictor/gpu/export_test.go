package gpu

// SetLMCMStreamCap sets the room the library gets for the lm+cm stream of an
// n-byte block, so that tests can make streams outgrow it.
func SetLMCMStreamCap(m *Model, room func(n int64) int64) { m.lmcmCap = room }
