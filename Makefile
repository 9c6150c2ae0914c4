# lmfs build and test entry points. See README.md.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/lmfs
STORE ?= /var/lib/lmfs-demo
MNT ?= /mnt/lmfs
FUZZTIME ?= 30000x

.PHONY: all build deps run test test-short vet fmt-check fuzz bench bench-corpus bench-fs clean cuda cuda-emu test-gpu gpu-bundle

all: build

# deps installs what building and mounting need on Debian (run as root).
deps:
	@command -v fusermount3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null; }
	@command -v $(GO) >/dev/null || { echo "Go 1.26 is needed: install it to /usr/local/go (https://go.dev/doc/install)"; exit 1; }

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/lmfs

# run installs what is missing, builds, and mounts a demo store at $(MNT) in
# the foreground (Ctrl-C unmounts). POLICY=max also codes with the embedded
# neural LM (slow on a CPU: it runs in the background recompressor).
run: deps build
	mkdir -p $(MNT) $(STORE)
	./$(BIN) mount --store $(STORE) $(if $(POLICY),--policy $(POLICY)) $(MNT)

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# fuzz runs every fuzz target for $(FUZZTIME) (a count of inputs: a time limit
# can end a run with a spurious "context deadline exceeded" from the fuzzer).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

# test is what CI runs: vet, gofmt, every test with the race detector, then
# the fuzz targets for a short while.
test: deps vet fmt-check
	$(GO) test -race -timeout 45m ./...
	$(MAKE) fuzz

test-short:
	$(GO) test -short ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# bench-corpus runs `lmfs bench` over the public benchmark corpus (read in
# place, never copied) at $(BENCH_BLOCK) blocks, as a table and as JSON in
# $(BENCH_JSON). BENCH_FLAGS adds flags, e.g. BENCH_FLAGS='--codecs zstd,cm'.
CORPUS ?= ../shared/eval/corpus
BENCH_BLOCK ?= 64KiB
BENCH_JSON ?= bin/bench-corpus.json
BENCH_FLAGS ?=
bench-corpus: build
	@test -d $(CORPUS) || { echo "no corpus at $(CORPUS): set CORPUS=/path/to/corpus"; exit 1; }
	./$(BIN) bench --block-size $(BENCH_BLOCK) --json-out $(BENCH_JSON) $(BENCH_FLAGS) $(CORPUS)

# bench-fs measures the mounted filesystem against a plain directory on the
# same disk in the same run (root, /dev/fuse) and prints the ratios.
BENCHTIME ?= 3x
bench-fs:
	mkdir -p bin
	set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkFS' -benchtime $(BENCHTIME) -timeout 30m ./mount | tee bin/bench-fs.txt
	@awk -f mount/testdata/benchratio.awk bin/bench-fs.txt

# cuda builds the CUDA backend of the neural LM (predictor/gpu/lstm1.cu, which
# includes cm.cu: cm, the lm+cm mixer and the arithmetic coder) into
# bin/liblmfs_cuda.so, next to bin/lmfs, where lmfs looks for it (see
# predictor.cuda_lib). Needs nvcc (CUDA 12 or later); the Go build never does.
# The library loads cuBLAS (libcublas.so.13/.12, or $$LMFS_CUBLAS_LIB) at run
# time for its int8 GEMM path, and runs without it (mma kernels): no -lcublas.
NVCC ?= nvcc
CUDA_ARCH ?= sm_90
CUDA_LIB ?= bin/liblmfs_cuda.so
cuda: $(CUDA_LIB)
$(CUDA_LIB): predictor/gpu/lstm1.cu predictor/gpu/cm.cu
	mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -arch=$(CUDA_ARCH) -shared -Xcompiler -fPIC -o $@ $< -ldl

# cuda-emu builds the same source as a CPU emulation (no CUDA needed): what
# the predictor/gpu tests load when no GPU library is given.
cuda-emu:
	mkdir -p bin
	g++ -x c++ -std=c++17 -O2 -DLMFS_EMU -shared -fPIC -o bin/liblmfs_emu.so predictor/gpu/lstm1.cu

# test-gpu runs the GPU tests and benchmarks on a machine with nvcc, Go and
# an NVIDIA GPU: every result checked against the Go reference.
test-gpu: cuda
	cd predictor/gpu && LMFS_CUDA_LIB=$(CURDIR)/$(CUDA_LIB) $(GO) test -count=1 -v -timeout 20m -run . -bench 'BenchmarkGPU|BenchmarkLMCM' -benchtime 1x .

# gpu-bundle prepares a GPU machine without Go: the test binary (pure Go,
# CGO_ENABLED=0) and the kernel source in bin/gpu; there run
# bin/gpu/run.sh OUTDIR, which builds with nvcc, tests and benchmarks.
gpu-bundle:
	mkdir -p bin/gpu
	CGO_ENABLED=0 $(GO) test -c -o bin/gpu/gpu.test ./predictor/gpu
	cp predictor/gpu/lstm1.cu predictor/gpu/cm.cu predictor/gpu/run.sh predictor/gpu/torch_bf16.py bin/gpu/

clean:
	rm -rf bin
