package lmmix

// finalConfig is the configuration Mixer implements.
func finalConfig() config {
	c := stdConfig()
	c.lmAPM = true
	c.lsm = 2
	c.skip = 24
	c.drop = 1 << 11 // cm's Final: no gain
	c.lsmOrd = [2]int{0, 1}
	c.sel2 = 4
	c.advShift = 5
	c.advT = 4096
	c.gsel = [4]int{3, 4, 2, 0} // c2, c0, c1
	c.full = 1 | 2 | 4
	c.offMix = 8
	c.lsmM = true // slot 11, in place of cm's Final
	c.drop = 0
	c.sel2 = 6
	return c
}

// tuneConfigs lists the configurations TestTune compares with cm, lm+cm.1
// and Mixer: edit it to try a variant (config's fields name what can vary;
// SPEC.md says what was tried).
func tuneConfigs() ([]string, []config) {
	var names []string
	var cfgs []config
	add := func(n string, c config) { names = append(names, n); cfgs = append(cfgs, c) }
	add("final", finalConfig())
	c := finalConfig()
	c.gsel = [4]int{3, 4, 2, 12} // a fourth mixer with a single weight set
	c.full = 15
	c.offMix = 0
	add("+global", c)
	c = finalConfig()
	c.offMix = 8 | 1 // without the c2 mixer: about a sixth less CPU
	add("-c2", c)
	return names, cfgs
}
