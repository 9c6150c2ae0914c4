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
	return c
}

// tuneConfigs lists the configurations TestTune compares with cm, lm+cm.1
// and Mixer.
func tuneConfigs() ([]string, []config) {
	var names []string
	var cfgs []config
	add := func(n string, c config) { names = append(names, n); cfgs = append(cfgs, c) }
	add("final", finalConfig())
	c := finalConfig()
	c.gsel = [4]int{9, 4, 2, 0}
	add("c2b", c)
	c.gsel = [4]int{3, 4, 11, 0}
	add("c1cf", c)
	c.gsel = [4]int{3, 4, 2, 9}
	c.offMix = 0
	c.full = 15
	add("+c21h", c)
	return names, cfgs
}
