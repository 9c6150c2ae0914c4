#!/bin/bash
# run.sh OUTDIR: on a GPU machine without Go, from the repository root, with
# this folder's bundle (make gpu-bundle: gpu.test and lstm1.cu next to this
# script): build the CUDA library with nvcc, run the GPU tests (every result
# against the Go reference) and the benchmarks, writing logs to OUTDIR.
# It also times PyTorch bf16 scoring of the same shape (torch_bf16.py).
# LMFS_GPU_KERNELS lists the kernel variants to test ("gemm mma dp4a" by
# default); LMFS_GPU_INFLIGHT and LMFS_GPU_CODECS narrow the benchmarks.
# BENCH names the benchmarks (BenchmarkGPU; BenchmarkLMCM measures lm+cm, its
# plan in LMFS_LMCM_BENCH), BENCH_FLAGS adds flags (-test.v prints their
# logs), SAN_RUN the tests run under compute-sanitizer. LMFS_CORPUS_SAMPLE
# names a folder of corpus files for TestLMCMCorpus.
set -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
mkdir -p "$out"
root=$(pwd)
{
	date -u
	nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
	nvcc --version | tail -2
} 2>&1
build() {
	nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -shared -Xcompiler -fPIC "$@" -o "$here/liblmfs_cuda.so" "$here/lstm1.cu" -ldl
}
kernels=${LMFS_GPU_KERNELS:-gemm mma dp4a}
if ! build >"$out/build.log" 2>&1; then
	echo "nvcc failed on the full build:"; grep -E "error" "$out/build.log" | head -20
	echo "building without the GEMM path (-DLMFS_NO_GEMM)"
	kernels=$(echo " $kernels " | sed 's/ gemm / /')
	if ! build -DLMFS_NO_GEMM >"$out/build-nogemm.log" 2>&1; then
		echo "building without the tensor-core and warp kernels (-DLMFS_SAFE)"
		kernels=dp4a
		build -DLMFS_SAFE >"$out/build-safe.log" 2>&1 || { echo "nvcc failed"; tail -30 "$out/build-safe.log"; exit 1; }
	fi
fi
grep -E "Function properties|registers|spill" "$out/build.log" | grep -v "^$" | head -40
grep -E -A2 "Compiling entry function '.*(lmcm|cm_|cum_)" "$out/build.log" | grep -E "entry|registers|spill" | head -20
# kvar: the LMFS_CUDA_KERNEL value for a variant; gemm is the default, which
# falls back to mma for models whose shapes cuBLAS or its check refuse
# (small random models of the tests) instead of failing to open.
kvar() { [ "$1" = gemm ] || echo "$1"; }
export LMFS_CUDA_LIB=$here/liblmfs_cuda.so
export LMFS_REPO_ROOT=$root  # the tests read the repository's files as data
cd "$here" || exit 1
status=0
if [ -n "$PROFILE" ]; then
	echo "=== step times (kernels: ${STEP_KERNELS:-$kernels})"
	for k in ${STEP_KERNELS:-$kernels}; do
		LMFS_CUDA_KERNEL=$(kvar $k) LMFS_GPU_PROFILE=all timeout 60 "$here/gpu.test" -test.v -test.run TestProfileSteps 2>&1 | grep -E "streams|device|FAIL|panic" | sed "s/^/$k /"
	done | tee "$out/steps.log"
	if command -v ncu >/dev/null; then
		echo "=== ncu: kernels of a step at $PROFILE streams"
		LMFS_GPU_PROFILE=$PROFILE LMFS_GPU_PROFILE_STEPS=16 timeout 90 ncu --clock-control none --section SpeedOfLight --section Occupancy --launch-skip 40 --launch-count 8 "$here/gpu.test" -test.run TestProfileSteps >"$out/ncu.log" 2>&1
		grep -E "^  [a-z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Theoretical Occ" "$out/ncu.log" | head -80
	fi
fi
for k in $kernels; do
	[ "${TEST_TIMEOUT:-150}" -gt 0 ] || continue
	echo "=== kernel $k: tests"
	LMFS_CUDA_KERNEL=$(kvar $k) timeout ${TEST_TIMEOUT:-150} "$here/gpu.test" -test.v -test.count=1 -test.run "${TEST_RUN:-.}" 2>&1 | tee "$out/test-$k.log" | grep -E "^(---|ok|PASS|FAIL|panic)|device_test|gpu_test|lmcm_" | head -60
	t=$?
	if grep -q "^PASS" "$out/test-$k.log"; then
		echo "=== kernel $k: benchmarks"
		re=${BENCH:-BenchmarkGPU}
		[ "$k" = dp4a ] && re=${BENCH_DP4A:-$re}
		LMFS_CUDA_KERNEL=$(kvar $k) timeout ${BENCH_TIMEOUT:-200} "$here/gpu.test" -test.run '^$' -test.bench "$re" -test.benchtime 1x -test.benchmem=false $BENCH_FLAGS 2>&1 | tee "$out/bench-$k.log" | grep -E "Benchmark|device|ok|FAIL|panic"
	else
		echo "kernel $k: tests failed, no benchmarks"; status=1
	fi
done
if [ "${TORCH_TIMEOUT:-60}" -gt 0 ]; then
	echo "=== PyTorch bf16 scoring of the same shape"
	timeout ${TORCH_TIMEOUT:-60} python3 "$here/torch_bf16.py" ${TORCH_INFLIGHT:-} 2>&1 | tee "$out/torch.log" | grep -v "^ " | tail -8
fi
if command -v compute-sanitizer >/dev/null && [ "${SAN_TIMEOUT:-60}" -gt 0 ]; then
	echo "=== compute-sanitizer memcheck (small tests)"
	timeout ${SAN_TIMEOUT:-60} compute-sanitizer --tool memcheck --print-limit 5 "$here/gpu.test" -test.run "${SAN_RUN:-TestTinyVectors|TestDecodeLM|TestStreams|TestLMCMDamaged|TestTinyLSTM2Vectors|TestLSTM2DecodeLM}" >"$out/memcheck.log" 2>&1
	tail -12 "$out/memcheck.log"
fi
exit $status
