# benchratio.awk reads `go test -bench BenchmarkFS` output and prints, for
# every rate metric (MB/s, creates/s, ...), lmfs against the plain directory
# of the same run. Used by `make bench-fs`.
/^BenchmarkFS/ && !/^BenchmarkFSReadCM/ {
	name = $1
	sub(/-[0-9]+$/, "", name)
	n = split(name, part, "/")
	target = part[n]
	key = substr(name, 1, length(name) - length(target) - 1)
	for (i = 3; i < NF; i++) {
		if ($(i + 1) ~ /\/s$/) {
			k = key " " $(i + 1)
			val[k, target] = $i
			if (!(k in seen)) { seen[k] = 1; order[++count] = k }
		}
	}
}
END {
	if (count) printf "%-36s %12s %12s %8s\n", "benchmark", "lmfs", "plain", "ratio"
	for (j = 1; j <= count; j++) {
		k = order[j]
		if (val[k, "plain"] > 0)
			printf "%-36s %12.1f %12.1f %8.3f\n", k, val[k, "lmfs"], val[k, "plain"], val[k, "lmfs"] / val[k, "plain"]
	}
}
# BenchmarkFSReadCM: cat of a cm-coded file through the mount against
# `lmfs decompress` of the same file (target: ratio at least 0.8).
/^BenchmarkFSReadCM/ {
	for (i = 3; i < NF; i++) {
		if ($(i + 1) == "mount-MB/s") cmMount = $i
		if ($(i + 1) == "decompress-MB/s") cmDec = $i
	}
}
END {
	if (cmDec > 0)
		printf "%-36s %12.2f %12.2f %8.3f   (mount MB/s, lmfs decompress MB/s, ratio)\n", "read cm file", cmMount, cmDec, cmMount / cmDec
}
