package lmmix

func tuneConfigs() ([]string, []config) {
	base := stdConfig()
	a := base
	a.lmAPM = true
	b := base
	b.lsm = 2
	c := base
	c.lsm = 2
	c.lsmRate = 5
	d := base
	d.lmAPM = true
	d.lsm = 2
	return []string{"base", "lmapm", "lsm", "lsm5", "both"}, []config{base, a, b, c, d}
}
