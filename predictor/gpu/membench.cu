// membench.cu: how many random 32-byte sectors a second the GPU's memory
// serves, the bound of lm+cm's cm kernel at thousands of blocks
// (RESULTS.md, session 8): reads, and read-modify-writes, of one 4-byte
// word per sector at random over a buffer of 16 MiB (in L2), 256 MiB and
// 4 GiB, by 4096 to 270336 threads with 8 accesses in flight each.
// A measurement tool, not part of the library:
//   nvcc -O3 -arch=sm_90 -o membench predictor/gpu/membench.cu && ./membench
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>
__device__ __forceinline__ uint32_t h32(uint32_t x) {
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16; return x;
}
template <bool RMW>
__global__ void k(uint32_t *buf, uint64_t mask, int iters, uint32_t *sink) {
  uint32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  uint32_t acc = 0;
  for (int i = 0; i < iters; i++) {
    uint64_t a[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
      uint64_t r = ((uint64_t)h32(t * 0x9E3779B1u + i * 8 + j) << 20) ^ h32(t + 0x51ED27u * (i * 8 + j));
      a[j] = (r & mask) * 8;
    }
    uint32_t v[8];
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = buf[a[j]];
#pragma unroll
    for (int j = 0; j < 8; j++) {
      if (RMW) buf[a[j]] = v[j] + 1;
      acc += v[j];
    }
  }
  if (acc == 0x12345678) sink[0] = acc;
}
int main() {
  size_t F = (size_t)4 << 30;
  uint32_t *buf, *sink;
  cudaMalloc(&buf, F);
  cudaMalloc(&sink, 4);
  cudaMemset(buf, 0, F);
  size_t foot[] = {(size_t)16 << 20, (size_t)256 << 20, (size_t)4 << 30};
  int threads[] = {4096, 8192, 32768, 131072, 270336};
  for (size_t f : foot) for (int rmw = 0; rmw < 2; rmw++) for (int T : threads) {
    uint64_t mask = f / 32 - 1;
    int iters = (int)((1 << 27) / (8LL * T)); if (iters < 1) iters = 1;
    int bs = 256, grid = T / bs;
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    for (int rep = 0; rep < 2; rep++) {
      cudaEventRecord(e0);
      if (rmw) k<true><<<grid, bs>>>(buf, mask, iters, sink); else k<false><<<grid, bs>>>(buf, mask, iters, sink);
      cudaEventRecord(e1); cudaEventSynchronize(e1);
    }
    float ms; cudaEventElapsedTime(&ms, e0, e1);
    double acc = 8.0 * iters * T;
    printf("footprint %6zu MiB %s threads %6d: %.2f G sectors/s (%.1f ms, %s)\n", f >> 20, rmw ? "rmw " : "read", T, acc / ms / 1e6, ms,
           cudaGetErrorString(cudaGetLastError()));
  }
  return 0;
}
