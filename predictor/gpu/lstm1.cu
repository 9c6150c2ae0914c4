// lstm1.cu: the CUDA backend of the lmfs neural byte model, architectures
// lstm1 (predictor/lm/SPEC.md, "Architecture 2: lstm1") and lstm2
// ("Architecture 3": layer 0 adds T1[f], f from each block's match model,
// kept on the GPU and updated by match_kernel after every byte; Streams get f
// from the host). Every number that
// shapes a probability is computed with the integer arithmetic of the spec,
// so the frequencies are those of the Go reference bit for bit: integer sums
// are exact in any order.
//
// The library serves many blocks at once. Each block (a "stream") has its
// state (h and c of every layer) resident on the GPU; one step advances every
// active stream by one byte:
//
//   layer kernel (one per layer): the gate products of the layer as an int8
//       matrix product (dp4a, or int8 tensor cores: mma), 4 gates x G
//       streams per thread, then the cell update of the spec, writing the
//       new h to a scratch buffer;
//   or, on the GEMM path (the default where cuBLAS loads: LMFS_CUDA_KERNEL),
//       per layer one cuBLAS int8 GEMM with int32 sums (exact) into a
//       buffer of gate sums, then gate_kernel (the rest of the layer);
//   commit kernel: the new h becomes the current h;
//   head kernel: the output layer's logits (dp4a, mma, or a GEMM whose
//       requantisation the frequency kernel does);
//   freq kernel (one thread per stream): the frequency rule of the spec and
//       what the caller needs: the 8 bit-tree probabilities along the actual
//       byte (encoding, exactly coder/arith.go's symbolP), the binary
//       arithmetic decoder (decoding: a port of coder/arith.go's Decoder, so a
//       decode step needs no round trip to the host) or whole tables.
//
// The C ABI (extern "C", prefix lmfs_cuda_) is loaded by predictor/gpu with
// purego. Build: make cuda (nvcc -arch=sm_90). The same file builds without
// CUDA as a CPU emulation (g++ -x c++ -DLMFS_EMU) that runs every kernel as a
// loop over its threads: the Go tests use it to check the library's logic
// and ABI on machines without a GPU.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

// LMFS_FAST: the CUDA build's tensor-core and warp kernels (not in the
// emulation; -DLMFS_SAFE leaves them out of a CUDA build too).
#if !defined(LMFS_EMU) && !defined(LMFS_SAFE)
#define LMFS_FAST 1
// LMFS_GEMM: the GEMM path (cuBLAS, loaded at run time; -DLMFS_NO_GEMM
// leaves it out).
#ifndef LMFS_NO_GEMM
#define LMFS_GEMM 1
#endif
#endif

#ifdef LMFS_EMU
// ---- CPU emulation of the few CUDA facilities used here ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
typedef int cudaError_t;
static thread_local int64_t emu_gid;
#define GID() (emu_gid)
#define LAUNCH(kern, nthreads, ...)                                   \
  do {                                                                \
    int64_t emu_n_ = (int64_t)(nthreads);                             \
    for (emu_gid = 0; emu_gid < emu_n_; emu_gid++) kern(__VA_ARGS__); \
  } while (0)
static inline int dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; i++) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
  return c;
}
#else
#include <cuda_runtime.h>
#include <dlfcn.h>
#define GID() ((int64_t)blockIdx.x * blockDim.x + threadIdx.x)
#define LAUNCH(kern, nthreads, ...)                                                     \
  do {                                                                                  \
    int64_t n_ = (int64_t)(nthreads);                                                   \
    if (n_ > 0) kern<<<(unsigned)((n_ + 127) / 128), 128, 0, g->stream>>>(__VA_ARGS__); \
  } while (0)
// LAUNCH_BS launches with threads-per-block bs (a multiple of 32).
#define LAUNCH_BS(kern, bs, nthreads, ...)                                                     \
  do {                                                                                         \
    int64_t n_ = (int64_t)(nthreads);                                                          \
    if (n_ > 0) kern<<<(unsigned)((n_ + (bs)-1) / (bs)), (bs), 0, g->stream>>>(__VA_ARGS__); \
  } while (0)
// LAUNCH_GRID launches grid blocks of bs threads (grid-stride kernels).
#define LAUNCH_GRID(kern, grid, bs, ...) \
  do {                                  \
    kern<<<(grid), (bs), 0, g->stream>>>(__VA_ARGS__); \
  } while (0)
static __device__ __forceinline__ int dp4a(int a, int b, int c) { return __dp4a(a, b, c); }
#endif

namespace {

const int kABI = 2;  // 2: lstm2 models, the streams' push calls take match features
const int kG = 4;  // streams per thread in the matrix kernels

// ---- errors ----

std::mutex g_errmu;
std::string g_err = "no error";

void set_err(const std::string &s) {
  std::lock_guard<std::mutex> l(g_errmu);
  g_err = s;
}

// ---- device memory and copies (CUDA or emulation) ----

struct Ctx;

#ifdef LMFS_EMU
bool dev_alloc(void **p, size_t n, std::string *err) {
  *p = std::calloc(n ? n : 1, 1);
  if (!*p) {
    *err = "out of memory allocating " + std::to_string(n) + " bytes";
    return false;
  }
  return true;
}
void dev_free(void *p) { std::free(p); }
#endif

// ---- the model ----

struct Model {
  int NL, H, LF, E;
  // host copies
  std::vector<int32_t> sig, tanh_, t0, exp_;
  std::vector<std::vector<int32_t>> wt;  // per layer: [K/4][4H] packed int8x4
  std::vector<std::vector<int32_t>> b, m, s;
  std::vector<int32_t> wot;  // [H/4][256]
  std::vector<std::vector<int8_t>> wraw;  // per layer: row-major 4H x K
  std::vector<int8_t> woraw;              // row-major 256 x H
  std::vector<int32_t> bo, mo, so;
  int arch = 2;                // 2: lstm1, 3: lstm2
  std::vector<int16_t> t1;     // lstm2: [2049][4H] match-feature table (empty for lstm1)
};

// kMatchFeatures is lstm2's number of match features (rows of T1), kMatchSlots
// the entries of a block's match table MT (SPEC.md, "Architecture 3: lstm2").
const int kMatchFeatures = 2049;
const int64_t kMatchSlots = 1 << 16;

uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

struct Reader {
  const uint8_t *p;
  int64_t n, off;
  std::string err;
  bool take(int64_t k, const uint8_t **out) {
    if (!err.empty()) return false;
    if (k < 0 || k > n - off) {
      err = "model file ends at byte " + std::to_string(n) + ", " + std::to_string(k) + " more bytes needed (truncated or not a model file)";
      return false;
    }
    *out = p + off;
    off += k;
    return true;
  }
  uint32_t u32() {
    const uint8_t *q;
    if (!take(4, &q)) return 0;
    return rd32(q);
  }
  bool i32s(int64_t k, std::vector<int32_t> *v) {
    const uint8_t *q;
    if (!take(4 * k, &q)) return false;
    v->resize(k);
    for (int64_t i = 0; i < k; i++) (*v)[i] = (int32_t)rd32(q + 4 * i);
    return true;
  }
};

// parse reads and checks an lstm1 or lstm2 model file (SPEC.md, "Model file
// (arch 2)", "Model file (arch 3)" and their load-time checks).
bool parse(const uint8_t *data, int64_t n, Model *m, std::string *err) {
  Reader r{data, n, 0, ""};
  const uint8_t *q;
  if (!r.take(8, &q) || std::memcmp(q, "LMFSLM\0\1", 8) != 0) {
    *err = "the file does not start with the lmfs model magic";
    return false;
  }
  uint32_t format = r.u32(), arch = r.u32();
  if (r.err.empty() && format != 1) {
    *err = "model file format " + std::to_string(format) + ", this library reads format 1";
    return false;
  }
  if (r.err.empty() && arch != 2 && arch != 3) {
    *err = "architecture " + std::to_string(arch) + ": this library runs only lstm1 (2) and lstm2 (3)";
    return false;
  }
  m->arch = (int)arch;
  uint32_t NL = r.u32(), H = r.u32(), LF = r.u32(), E = r.u32(), TB = r.u32();
  if (!r.err.empty()) {
    *err = r.err;
    return false;
  }
  if (NL < 1 || NL > 4) { *err = "layers " + std::to_string(NL) + " not in [1, 4]"; return false; }
  if (H < 8 || H > 1024 || H % 8 != 0) { *err = "hidden width " + std::to_string(H) + " not a multiple of 8 in [8, 1024]"; return false; }
  if (LF > 16) { *err = "logit fraction bits " + std::to_string(LF) + " above 16"; return false; }
  if (E < 1 || E > 65536) { *err = "exp table length " + std::to_string(E) + " not in [1, 65536]"; return false; }
  if (TB != 16) { *err = "frequency total 2^" + std::to_string(TB) + ", this library codes with 2^16"; return false; }
  m->NL = NL; m->H = H; m->LF = LF; m->E = E;
  r.i32s(4096, &m->sig);
  r.i32s(4096, &m->tanh_);
  r.i32s((int64_t)257 * 4 * H, &m->t0);
  if (arch == 3 && r.take((int64_t)kMatchFeatures * 4 * H * 2, &q)) {
    m->t1.resize((size_t)kMatchFeatures * 4 * H);
    for (size_t i = 0; i < m->t1.size(); i++) m->t1[i] = (int16_t)(uint16_t)(q[2 * i] | q[2 * i + 1] << 8);
  }
  m->wt.resize(NL); m->b.resize(NL); m->m.resize(NL); m->s.resize(NL);
  for (uint32_t l = 0; l < NL; l++) {
    int64_t K = l == 0 ? H : 2 * H;
    if (!r.take(4 * H * K, &q)) break;
    for (int64_t i = 0; i < 4 * H * K; i++) {
      if ((int8_t)q[i] == -128) { *err = "weight -128 in layer " + std::to_string(l) + " (weights are in [-127, 127])"; return false; }
    }
    m->wraw.resize(NL);
    m->wraw[l].assign((const int8_t *)q, (const int8_t *)q + 4 * H * K);
    // pack: wt[k4][j] = W[j][4k4..4k4+3]
    std::vector<int32_t> &w = m->wt[l];
    w.resize((K / 4) * 4 * H);
    for (int64_t j = 0; j < 4 * H; j++)
      for (int64_t k4 = 0; k4 < K / 4; k4++) w[k4 * 4 * H + j] = (int32_t)rd32(q + j * K + 4 * k4);
    r.i32s(4 * H, &m->b[l]);
    r.i32s(4 * H, &m->m[l]);
    r.i32s(4 * H, &m->s[l]);
  }
  if (r.take(256 * (int64_t)H, &q)) {
    for (int64_t i = 0; i < 256 * (int64_t)H; i++) {
      if ((int8_t)q[i] == -128) { *err = "output weight -128 (weights are in [-127, 127])"; return false; }
    }
    m->woraw.assign((const int8_t *)q, (const int8_t *)q + 256 * H);
    m->wot.resize((H / 4) * 256);
    for (int64_t v = 0; v < 256; v++)
      for (int64_t k4 = 0; k4 < H / 4; k4++) m->wot[k4 * 256 + v] = (int32_t)rd32(q + v * H + 4 * k4);
  }
  r.i32s(256, &m->bo);
  r.i32s(256, &m->mo);
  r.i32s(256, &m->so);
  r.i32s(E, &m->exp_);
  if (r.err.empty() && (!r.take(8, &q) || std::memcmp(q, "LMFSEND\0", 8) != 0)) {
    if (r.err.empty()) { *err = "end marker missing: the file is damaged"; return false; }
  }
  if (!r.err.empty()) { *err = r.err; return false; }
  if (r.off != n) { *err = std::to_string(n - r.off) + " unexpected bytes after the end marker"; return false; }
  for (int k = 0; k < 4096; k++) {
    if (m->sig[k] < 0 || m->sig[k] > 4096 || (k > 0 && m->sig[k] < m->sig[k - 1])) { *err = "sigmoid table entry " + std::to_string(k) + " out of range or decreasing"; return false; }
    if (m->tanh_[k] < -4096 || m->tanh_[k] > 4096 || (k > 0 && m->tanh_[k] < m->tanh_[k - 1])) { *err = "tanh table entry " + std::to_string(k) + " out of range or decreasing"; return false; }
  }
  for (int32_t v : m->t0)
    if (v < -(1 << 20) || v > (1 << 20)) { *err = "input table entry out of [-2^20, 2^20]"; return false; }
  for (uint32_t l = 0; l < NL; l++)
    for (uint32_t j = 0; j < 4 * H; j++) {
      if (m->b[l][j] < -(1 << 20) || m->b[l][j] > (1 << 20)) { *err = "layer " + std::to_string(l) + " bias out of [-2^20, 2^20]"; return false; }
      if (m->m[l][j] < 0 || m->s[l][j] < 1 || m->s[l][j] > 62) { *err = "layer " + std::to_string(l) + " requantisation out of range"; return false; }
    }
  for (int v = 0; v < 256; v++) {
    if (m->bo[v] < -(1 << 30) || m->bo[v] > (1 << 30)) { *err = "output bias out of [-2^30, 2^30]"; return false; }
    if (m->mo[v] < 0 || m->so[v] < 1 || m->so[v] > 62) { *err = "output requantisation out of range"; return false; }
  }
  for (uint32_t i = 0; i < E; i++) {
    int32_t v = m->exp_[i];
    if (v < 0 || v > (1 << 24) || (i > 0 && v > m->exp_[i - 1]) || (i == 0 && v == 0)) { *err = "exp table entry " + std::to_string(i) + " out of range"; return false; }
  }
  return true;
}

// pack_a packs a row-major rows x K int8 matrix into mma.m16n8k32 A
// fragments: for 16-row tile m, K chunk kc and lane (g = lane/4, t = lane%4),
// four words: rows g and g+8 of the tile at fragment columns t*4 and 16+t*4
// of the chunk, which hold the chunk's bytes 8t..8t+3 and 8t+4..8t+7 (see
// below). orig maps a tile row to the matrix row.
template <class F>
std::vector<int32_t> pack_a(const int8_t *w, int rows, int K, F orig) {
  int mt = rows / 16, KC = K / 32;
  std::vector<int32_t> out((size_t)mt * KC * 32 * 4);
  auto word = [&](int r, int k) {
    const uint8_t *p = (const uint8_t *)w + (int64_t)r * K + k;
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
  };
  for (int m = 0; m < mt; m++)
    for (int kc = 0; kc < KC; kc++)
      for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        int32_t *o = &out[(((size_t)m * KC + kc) * 32 + lane) * 4];
        // The chunk's columns are permuted (the same way for the streams'
        // inputs, see mma_load): fragment columns 4t..4t+3 and 16+4t..16+4t+3
        // are the chunk's bytes 8t..8t+7, so a lane loads its input bytes
        // with one 8-byte load. Sums do not depend on the order.
        int k = kc * 32 + t * 8;
        o[0] = word(orig(m, g), k);
        o[1] = word(orig(m, g + 8), k);
        o[2] = word(orig(m, g), k + 4);
        o[3] = word(orig(m, g + 8), k + 4);
      }
  return out;
}

// ---- kernels ----

struct DevModel {
  int NL, H, E;
  const int32_t *sig, *tanh_, *t0, *exp_;
  const int32_t *wt[4], *b[4], *m[4], *s[4];
  const int32_t *wot, *bo, *mo, *so;
  const int16_t *t1;  // lstm2: [2049][4H] match-feature table; NULL for lstm1
};

struct DevState {
  int8_t *hcur;   // [NL][cap][H]
  int8_t *hnew;   // [NL][cap][H]
  int32_t *c;     // [NL][cap][H]
  int32_t *xcur;  // [cap] next input symbol
  int32_t *logit; // [cap][256]
  int32_t *gacc;  // [gcap][4H] the gate sums of one layer for one chunk of streams (GEMM path only, else NULL)
  int gcap;       // streams per chunk of the GEMM path
  // xcat[l] (l >= 1; GEMM path with LMFS_GEMM_CAT, else NULL): [cap][2H] the
  // input of layer l in one row per stream, h_{l-1} of this step then h_l,
  // so that the layer is one GEMM. The gate kernels write both halves, the
  // commit kernel the second.
  int8_t *xcat[4];
  int cap;
  // lstm2 only (else NULL): fcur [cap] the match feature of the next step;
  // mt [cap][2^16], mptr, mlen [cap]: each block's match model (SPEC.md,
  // "Match model"), updated on the GPU after each byte by match_kernel
  // (NULL for Streams, whose features come from the host).
  uint16_t *fcur;
  uint32_t *mt;
  int32_t *mptr, *mlen;
};

__device__ __forceinline__ int64_t requant(int32_t acc, int32_t mul, int32_t sh) {
  return ((int64_t)acc * (int64_t)mul + ((int64_t)1 << (sh - 1))) >> sh;
}

__device__ __forceinline__ int32_t clamp32(int64_t x, int64_t lo, int64_t hi) {
  return (int32_t)(x < lo ? lo : (x > hi ? hi : x));
}

// layer_kernel advances layer l of the streams idx[0..n-1]: thread (u, grp)
// computes the four gate rows of unit u for streams grp*kG .. grp*kG+kG-1.
__global__ void layer_kernel(DevModel M, DevState S, int l, const int32_t *__restrict__ idx, int n) {
  int64_t gid = GID();
  const int H = M.H;
  int64_t ngrp = (n + kG - 1) / kG;
  if (gid >= ngrp * H) return;
  int u = (int)(gid % H);
  int grp = (int)(gid / H);
  int b[kG];
  bool ok[kG];
#pragma unroll
  for (int g = 0; g < kG; g++) {
    int slot = grp * kG + g;
    ok[g] = slot < n;
    b[g] = idx[ok[g] ? slot : grp * kG];
  }
  int acc[4][kG];
#pragma unroll
  for (int q = 0; q < 4; q++)
#pragma unroll
    for (int g = 0; g < kG; g++) acc[q][g] = 0;
  const int H4 = H / 4;
  const int32_t *W = M.wt[l];
  const int64_t cap = S.cap;
  // first part of the input: h_0 (l = 0) or the updated h_{l-1}
  const int8_t *inA = l == 0 ? S.hcur : S.hnew + (int64_t)(l - 1) * cap * H;
  for (int k4 = 0; k4 < H4; k4++) {
    const int32_t *wr = W + (int64_t)k4 * 4 * H + u;
    int w0 = wr[0], w1 = wr[H], w2 = wr[2 * H], w3 = wr[3 * H];
#pragma unroll
    for (int g = 0; g < kG; g++) {
      int x = ((const int32_t *)(inA + (int64_t)b[g] * H))[k4];
      acc[0][g] = dp4a(w0, x, acc[0][g]);
      acc[1][g] = dp4a(w1, x, acc[1][g]);
      acc[2][g] = dp4a(w2, x, acc[2][g]);
      acc[3][g] = dp4a(w3, x, acc[3][g]);
    }
  }
  if (l > 0) {
    const int8_t *inB = S.hcur + (int64_t)l * cap * H;
    for (int k4 = 0; k4 < H4; k4++) {
      const int32_t *wr = W + (int64_t)(H4 + k4) * 4 * H + u;
      int w0 = wr[0], w1 = wr[H], w2 = wr[2 * H], w3 = wr[3 * H];
#pragma unroll
      for (int g = 0; g < kG; g++) {
        int x = ((const int32_t *)(inB + (int64_t)b[g] * H))[k4];
        acc[0][g] = dp4a(w0, x, acc[0][g]);
        acc[1][g] = dp4a(w1, x, acc[1][g]);
        acc[2][g] = dp4a(w2, x, acc[2][g]);
        acc[3][g] = dp4a(w3, x, acc[3][g]);
      }
    }
  }
  const int32_t *Bl = M.b[l], *Ml = M.m[l], *Sl = M.s[l];
#pragma unroll
  for (int g = 0; g < kG; g++) {
    if (!ok[g]) continue;
    int z[4];
    int x = S.xcur[b[g]];
#pragma unroll
    for (int q = 0; q < 4; q++) {
      int j = q * H + u;
      int64_t v = requant(acc[q][g], Ml[j], Sl[j]) + Bl[j];
      if (l == 0) v += M.t0[(int64_t)x * 4 * H + j];
      if (l == 0 && M.t1) v += M.t1[(int64_t)S.fcur[b[g]] * 4 * H + j];
      z[q] = clamp32(v, -2048, 2047);
    }
    int32_t ig = M.sig[z[0] + 2048], fg = M.sig[z[1] + 2048];
    int32_t gg = M.tanh_[z[2] + 2048], og = M.sig[z[3] + 2048];
    int64_t ci = ((int64_t)l * cap + b[g]) * H + u;
    int32_t c = (fg * S.c[ci] + ig * gg + 2048) >> 12;
    c = c < -(1 << 17) ? -(1 << 17) : (c > (1 << 17) ? (1 << 17) : c);
    int32_t tcx = c >> 4;
    tcx = tcx < -2048 ? -2048 : (tcx > 2047 ? 2047 : tcx);
    int32_t tc = M.tanh_[tcx + 2048];
    int32_t h = (og * tc + (1 << 16)) >> 17;
    h = h < -127 ? -127 : (h > 127 ? 127 : h);
    S.c[ci] = c;
    S.hnew[ci] = (int8_t)h;
  }
}

#ifdef LMFS_FAST
// ---- int8 tensor-core kernels (mma.sync m16n8k32 s8; H a multiple of 32) ----
//
// A warp computes a 16 x 64 tile: 16 weight rows by 64 streams (8 mma n-tiles
// of 8), over K in chunks of 32. The weights are packed on the host in the
// A-fragment order of the instruction (one 16-byte load per lane per chunk).
// For the gate matrices a 16-row tile holds the 4 gates of 4 units (row r:
// gate r >> 2, unit 4m + (r & 3)), so a lane and its partner (lane ^ 16) hold
// together all four gates of a unit for two streams: after one exchange,
// each does the cell update of one stream. Sums are exact int32 sums, so the
// result equals the dp4a kernel's bit for bit.

__device__ __forceinline__ void mma_s8(int (&d)[4], const int4 &a, int b0, int b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

const int kNT = 8;      // n-tiles (of 8 streams) per warp
const int kMmaBS = 256;  // threads per block of the mma kernels: 8 warps, consecutive tiles of the same streams

// mma_tile accumulates the warp's tile: A fragments apack[(m*KC + kc)*32 +
// lane]; stream inputs: chunk kc < kcA from inA, else from inB (chunk kc - kcA).
// The loads of chunk kc+1 are issued before the products of chunk kc, so
// that their latency overlaps the tensor-core work.
__device__ __forceinline__ void mma_load(const int4 *__restrict__ apack, int m, int KC, int kcA, const int8_t *inA,
                                         const int8_t *inB, int H, const int (&b)[kNT], int lane, int kc, int4 &a,
                                         int (&b0)[kNT], int (&b1)[kNT]) {
  int t = lane & 3;
  a = apack[((int64_t)m * KC + kc) * 32 + lane];
  const int8_t *src = kc < kcA ? inA : inB;
  int k0 = (kc < kcA ? kc : kc - kcA) * 32 + t * 8;
#pragma unroll
  for (int j = 0; j < kNT; j++) {
    int2 v = *(const int2 *)(src + (int64_t)b[j] * H + k0);  // bytes 8t..8t+7 of the chunk (see pack_a)
    b0[j] = v.x;
    b1[j] = v.y;
  }
}

__device__ __forceinline__ void mma_tile(int (&acc)[kNT][4], const int4 *__restrict__ apack, int m, int KC, int kcA,
                                         const int8_t *inA, const int8_t *inB, int H, const int (&b)[kNT], int lane) {
  int4 a, an;
  int b0[kNT], b1[kNT], n0[kNT], n1[kNT];
  mma_load(apack, m, KC, kcA, inA, inB, H, b, lane, 0, a, b0, b1);
  for (int kc = 0; kc < KC; kc++) {
    if (kc + 1 < KC) mma_load(apack, m, KC, kcA, inA, inB, H, b, lane, kc + 1, an, n0, n1);
#pragma unroll
    for (int j = 0; j < kNT; j++) mma_s8(acc[j], a, b0[j], b1[j]);
    a = an;
#pragma unroll
    for (int j = 0; j < kNT; j++) {
      b0[j] = n0[j];
      b1[j] = n1[j];
    }
  }
}

__global__ void layer_kernel_mma(DevModel M, DevState S, int l, const int4 *__restrict__ apack, const int32_t *__restrict__ idx, int n) {
  // The gate tables in shared memory: their lookups are scattered.
  __shared__ int32_t ssig[4096], stanh[4096];
  for (int i = threadIdx.x; i < 4096; i += blockDim.x) {
    ssig[i] = M.sig[i];
    stanh[i] = M.tanh_[i];
  }
  __syncthreads();
  int64_t gid = GID();
  int warp = (int)(gid >> 5), lane = (int)(gid & 31);
  const int H = M.H;
  int mtiles = H / 4;
  int64_t nwt = (n + 8 * kNT - 1) / (8 * kNT);
  if (warp >= mtiles * nwt) return;  // whole warps exit together
  int m = warp % mtiles;
  int base = (warp / mtiles) * 8 * kNT;
  int g = lane >> 2, t = lane & 3;
  int b[kNT];
#pragma unroll
  for (int j = 0; j < kNT; j++) {
    int slot = base + j * 8 + g;
    b[j] = idx[slot < n ? slot : n - 1];
  }
  int acc[kNT][4];
#pragma unroll
  for (int j = 0; j < kNT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;
  const int64_t cap = S.cap;
  const int8_t *inA = l == 0 ? S.hcur : S.hnew + (int64_t)(l - 1) * cap * H;
  const int8_t *inB = S.hcur + (int64_t)l * cap * H;
  int KC = (l == 0 ? H : 2 * H) / 32;
  mma_tile(acc, apack, m, KC, H / 32, inA, inB, H, b, lane);
  bool hi = g >= 4;
  int u = 4 * m + (g & 3);
  const int32_t *Bl = M.b[l], *Ml = M.m[l], *Sl = M.s[l];
#pragma unroll
  for (int j = 0; j < kNT; j++) {
    int send0 = hi ? acc[j][0] : acc[j][1];
    int send1 = hi ? acc[j][2] : acc[j][3];
    int r0 = __shfl_xor_sync(0xffffffffu, send0, 16);
    int r1 = __shfl_xor_sync(0xffffffffu, send1, 16);
    int gate[4];  // i, f, g, o
    if (!hi) {
      gate[0] = acc[j][0]; gate[2] = acc[j][2]; gate[1] = r0; gate[3] = r1;
    } else {
      gate[1] = acc[j][1]; gate[3] = acc[j][3]; gate[0] = r0; gate[2] = r1;
    }
    int slot = base + j * 8 + 2 * t + (hi ? 1 : 0);
    if (slot >= n) continue;
    int bs = idx[slot];
    int x = S.xcur[bs];
    int z[4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
      int jr = q * H + u;
      int64_t v = requant(gate[q], Ml[jr], Sl[jr]) + Bl[jr];
      if (l == 0) v += M.t0[(int64_t)x * 4 * H + jr];
      if (l == 0 && M.t1) v += M.t1[(int64_t)S.fcur[bs] * 4 * H + jr];
      z[q] = clamp32(v, -2048, 2047);
    }
    int32_t ig = ssig[z[0] + 2048], fg = ssig[z[1] + 2048];
    int32_t gg = stanh[z[2] + 2048], og = ssig[z[3] + 2048];
    int64_t ci = ((int64_t)l * cap + bs) * H + u;
    int32_t c = (fg * S.c[ci] + ig * gg + 2048) >> 12;
    c = c < -(1 << 17) ? -(1 << 17) : (c > (1 << 17) ? (1 << 17) : c);
    int32_t tcx = c >> 4;
    tcx = tcx < -2048 ? -2048 : (tcx > 2047 ? 2047 : tcx);
    int32_t tc = stanh[tcx + 2048];
    int32_t h = (og * tc + (1 << 16)) >> 17;
    h = h < -127 ? -127 : (h > 127 ? 127 : h);
    S.c[ci] = c;
    S.hnew[ci] = (int8_t)h;
  }
}

__global__ void head_kernel_mma(DevModel M, DevState S, const int4 *__restrict__ apack, const int32_t *__restrict__ idx, int n) {
  int64_t gid = GID();
  int warp = (int)(gid >> 5), lane = (int)(gid & 31);
  const int H = M.H;
  const int mtiles = 16;
  int64_t nwt = (n + 8 * kNT - 1) / (8 * kNT);
  if (warp >= mtiles * nwt) return;
  int m = warp % mtiles;
  int base = (warp / mtiles) * 8 * kNT;
  int g = lane >> 2, t = lane & 3;
  int b[kNT];
#pragma unroll
  for (int j = 0; j < kNT; j++) {
    int slot = base + j * 8 + g;
    b[j] = idx[slot < n ? slot : n - 1];
  }
  int acc[kNT][4];
#pragma unroll
  for (int j = 0; j < kNT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;
  const int8_t *top = S.hcur + (int64_t)(M.NL - 1) * S.cap * H;
  mma_tile(acc, apack, m, H / 32, H / 32, top, top, H, b, lane);
#pragma unroll
  for (int j = 0; j < kNT; j++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      int v = 16 * m + g + (e >= 2 ? 8 : 0);
      int slot = base + j * 8 + 2 * t + (e & 1);
      if (slot >= n) continue;
      int bs = idx[slot];
      int64_t L = requant(acc[j][e], M.mo[v], M.so[v]) + M.bo[v];
      S.logit[(int64_t)bs * 256 + v] = clamp32(L, -(1 << 24), 1 << 24);
    }
  }
}

#endif

#ifdef LMFS_GEMM
// ---- GEMM path: the gate sums of a layer for streams 0..n-1 come from an
// int8 GEMM with int32 sums (cuBLAS, exact in any order), then gate_kernel
// does the rest of the layer (requantisation, bias, input table, gate
// tables, cell update) for 4 units of one stream per thread, with 16-byte
// loads. G[s*4H + q*H + u] is gate q of unit u of stream s.
__device__ __forceinline__ int4 ld4(const int32_t *p) { return __ldg((const int4 *)p); }

// gate_unit is the cell update of the spec for one unit, from its four gate
// pre-activations (already clamped to [-2048, 2047]) and its cell value c
// (updated in place); it returns the new h.
__device__ __forceinline__ uint32_t gate_unit(const int16_t *sg, const int16_t *th, int zi, int zf, int zg, int zo, int &c) {
  int32_t ig = sg[zi + 2048], fg = sg[zf + 2048];
  int32_t gg = th[zg + 2048], og = sg[zo + 2048];
  int32_t cn = (fg * c + ig * gg + 2048) >> 12;
  cn = cn < -(1 << 17) ? -(1 << 17) : (cn > (1 << 17) ? (1 << 17) : cn);
  int32_t tcx = cn >> 4;
  tcx = tcx < -2048 ? -2048 : (tcx > 2047 ? 2047 : tcx);
  int32_t tc = th[tcx + 2048];
  int32_t h = (og * tc + (1 << 16)) >> 17;
  h = h < -127 ? -127 : (h > 127 ? 127 : h);
  c = cn;
  return (uint32_t)(uint8_t)(int8_t)h;
}

// t1_add adds 4 entries of lstm2's match-feature table at p to t.
__device__ __forceinline__ int4 t1_add(int4 t, const int16_t *p) {
  int2 v = __ldg((const int2 *)p);
  t.x += (int)(int16_t)(v.x & 0xFFFF);
  t.y += v.x >> 16;
  t.z += (int)(int16_t)(v.y & 0xFFFF);
  t.w += v.y >> 16;
  return t;
}

// gate_pre returns the clamped pre-activations of gate q for 4 units; x and
// f are layer 0's input symbol and (lstm2) match feature.
__device__ __forceinline__ int4 gate_pre(const DevModel &M, const int32_t *Bl, const int32_t *Ml, const int32_t *Sl, bool first,
                                         const int32_t *g, int j, int x, int f) {
  int4 a = *(const int4 *)(g + j);
  int4 bb = ld4(Bl + j), mm = ld4(Ml + j), ss = ld4(Sl + j);
  int4 t = make_int4(0, 0, 0, 0);
  if (first) t = ld4(M.t0 + (int64_t)x * 4 * M.H + j);
  if (first && M.t1) t = t1_add(t, M.t1 + (int64_t)f * 4 * M.H + j);
  return make_int4(clamp32(requant(a.x, mm.x, ss.x) + bb.x + t.x, -2048, 2047), clamp32(requant(a.y, mm.y, ss.y) + bb.y + t.y, -2048, 2047),
                   clamp32(requant(a.z, mm.z, ss.z) + bb.z + t.z, -2048, 2047), clamp32(requant(a.w, mm.w, ss.w) + bb.w + t.w, -2048, 2047));
}

// gate_kernel finishes layer l for streams s0 .. s0+n-1, whose gate sums are
// the rows 0 .. n-1 of G. Bl, Ml, Sl: the layer's bias and requantisation;
// xnext, xself: S.xcat[l+1] and S.xcat[l] where they are used, else NULL;
// tabs: the sigmoid then the tanh table as int16 (every entry is within
// [-4096, 4096]). The tables' lookups are scattered: they are read from
// shared memory, loaded once per block of a grid-stride loop.
const int kGateBS = 512;
__global__ void __launch_bounds__(kGateBS) gate_kernel(DevModel M, DevState S, int l, const int32_t *__restrict__ Bl,
                                                      const int32_t *__restrict__ Ml, const int32_t *__restrict__ Sl, int8_t *xnext,
                                                      int8_t *xself, const int32_t *__restrict__ G, int s0, int n,
                                                      const int4 *__restrict__ tabs) {
  __shared__ int4 stab[2 * 4096 * 2 / 16];  // 8192 int16
  for (int i = threadIdx.x; i < 2 * 4096 * 2 / 16; i += blockDim.x) stab[i] = tabs[i];
  __syncthreads();
  const int16_t *sg = (const int16_t *)stab, *th = sg + 4096;
  const int H = M.H, H4 = H / 4;
  const bool first = l == 0;
  const int64_t total = (int64_t)n * H4;
  for (int64_t gid = GID(); gid < total; gid += (int64_t)gridDim.x * blockDim.x) {
    int r = (int)(gid / H4);
    int s = s0 + r;
    int u0 = (int)(gid % H4) * 4;
    const int32_t *g = G + (int64_t)r * 4 * H;
    int x = first ? S.xcur[s] : 0;
    int f = first && M.t1 ? S.fcur[s] : 0;
    int4 zi = gate_pre(M, Bl, Ml, Sl, first, g, u0, x, f), zf = gate_pre(M, Bl, Ml, Sl, first, g, H + u0, x, f);
    int4 zg = gate_pre(M, Bl, Ml, Sl, first, g, 2 * H + u0, x, f), zo = gate_pre(M, Bl, Ml, Sl, first, g, 3 * H + u0, x, f);
    int64_t ci = ((int64_t)l * S.cap + s) * H + u0;
    int4 c4 = *(const int4 *)(S.c + ci);
    uint32_t hw = gate_unit(sg, th, zi.x, zf.x, zg.x, zo.x, c4.x);
    hw |= gate_unit(sg, th, zi.y, zf.y, zg.y, zo.y, c4.y) << 8;
    hw |= gate_unit(sg, th, zi.z, zf.z, zg.z, zo.z, c4.z) << 16;
    hw |= gate_unit(sg, th, zi.w, zf.w, zg.w, zo.w, c4.w) << 24;
    *(int4 *)(S.c + ci) = c4;
    *(uint32_t *)(S.hnew + ci) = hw;
    if (xnext) *(uint32_t *)(xnext + (int64_t)s * 2 * H + u0) = hw;
    if (xself) *(uint32_t *)(xself + (int64_t)s * 2 * H + H + u0) = hw;
  }
}
#endif

// commit_kernel makes the new h of every layer the current one.
__global__ void commit_kernel(DevState S, int NL, int H, const int32_t *__restrict__ idx, int n) {
  int64_t gid = GID();
  int64_t H4 = H / 4;
  if (gid >= (int64_t)n * NL * H4) return;
  int64_t k = gid % H4;
  int64_t r = gid / H4;
  int l = (int)(r % NL);
  int slot = (int)(r / NL);
  int64_t off = ((int64_t)l * S.cap + idx[slot]) * H;
  int32_t w = ((const int32_t *)(S.hnew + off))[k];
  ((int32_t *)(S.hcur + off))[k] = w;
  if (l >= 1 && S.xcat[l]) ((int32_t *)(S.xcat[l] + (int64_t)idx[slot] * 2 * H + H))[k] = w;
}

// head_kernel computes the logits of streams idx[0..n-1]: thread (v, grp).
__global__ void head_kernel(DevModel M, DevState S, const int32_t *__restrict__ idx, int n) {
  int64_t gid = GID();
  int64_t ngrp = (n + kG - 1) / kG;
  if (gid >= ngrp * 256) return;
  int v = (int)(gid % 256);
  int grp = (int)(gid / 256);
  const int H = M.H;
  const int8_t *top = S.hcur + (int64_t)(M.NL - 1) * S.cap * H;
  int b[kG];
  bool ok[kG];
  int acc[kG];
#pragma unroll
  for (int g = 0; g < kG; g++) {
    int slot = grp * kG + g;
    ok[g] = slot < n;
    b[g] = idx[ok[g] ? slot : grp * kG];
    acc[g] = 0;
  }
  for (int k4 = 0; k4 < H / 4; k4++) {
    int w = M.wot[(int64_t)k4 * 256 + v];
#pragma unroll
    for (int g = 0; g < kG; g++) acc[g] = dp4a(w, ((const int32_t *)(top + (int64_t)b[g] * H))[k4], acc[g]);
  }
#pragma unroll
  for (int g = 0; g < kG; g++) {
    if (!ok[g]) continue;
    int64_t L = requant(acc[g], M.mo[v], M.so[v]) + M.bo[v];
    S.logit[(int64_t)b[g] * 256 + v] = clamp32(L, -(1 << 24), 1 << 24);
  }
}

// freqs computes the frequency table of SPEC.md ("Frequencies") from the
// logits L.
__device__ void freqs(const DevModel &M, const int32_t *L, uint32_t *f) {
  int32_t lmax = L[0];
  int vmax = 0;
  for (int v = 1; v < 256; v++)
    if (L[v] > lmax) { lmax = L[v]; vmax = v; }
  uint64_t s = 0;
  for (int v = 0; v < 256; v++) {
    int32_t d = lmax - L[v];
    if (d > M.E - 1) d = M.E - 1;
    f[v] = (uint32_t)M.exp_[d];
    s += f[v];
  }
  // floor(e * 65280 / s) for every v, exactly: a double-precision estimate
  // (off by at most one: the numerator is below 2^40) corrected with
  // integer arithmetic, which is cheaper on a GPU than 256 64-bit divisions.
  double rs = 1.0 / (double)s;
  uint32_t sum = 0;
  for (int v = 0; v < 256; v++) {
    uint64_t num = (uint64_t)f[v] * (65536 - 256);
    uint64_t q = (uint64_t)((double)num * rs);
    if (q * s > num) q--;
    else if ((q + 1) * s <= num) q++;
    f[v] = 1 + (uint32_t)q;
    sum += f[v];
  }
  f[vmax] += 65536 - sum;
}

// Modes of the freq kernel.
enum { kPathProbs = 0, kDecode = 1, kTables = 2 };

struct DecState {
  uint32_t *x1, *x2, *x;  // [cap]
  int64_t *pos;           // [cap] bytes read (as coder/arith.go's Decoder.pos)
  const uint8_t *in;      // payloads
  const int64_t *inoff;   // [cap] start of stream b's payload in in
  const int64_t *inend;   // [cap] its end
  int32_t *overrun;       // [cap] first position at which the decoder had read past the padding, or -1
};

__device__ __forceinline__ uint32_t dec_next(const DecState &D, int b) {
  int64_t p = D.pos[b]++;
  int64_t len = D.inend[b] - D.inoff[b];
  return p < len ? D.in[D.inoff[b] + p] : 0xFF;
}

// freq_kernel works on streams idx[0..n-1] at position t of their blocks.
//   kPathProbs: probs[(off[b]+t)*8 + k] = symbolP at bit k of the actual byte
//               data[off[b]+t]; the byte becomes the next input.
//   kTables:    tables[(off[b]+t)*256 + v] (or [slot*256+v] with off == NULL)
//               = the whole table; with data, the actual byte becomes the next input.
//   kDecode:    decodes byte t of block b into data[off[b]+t]; it becomes the
//               next input.
__global__ void freq_kernel(DevModel M, DevState S, const int32_t *__restrict__ idx, int n, int mode, int64_t t,
                            uint8_t *data, const int64_t *__restrict__ off, uint16_t *probs, uint32_t *tables, DecState D) {
  int64_t gid = GID();
  if (gid >= n) return;
  int b = idx[gid];
  uint32_t f[256];
  freqs(M, S.logit + (int64_t)b * 256, f);
  if (mode == kTables) {
    uint32_t *dst = tables + (off ? (off[b] + t) : gid) * 256;
    for (int v = 0; v < 256; v++) dst[v] = f[v];
    if (data) S.xcur[b] = data[off[b] + t];
    return;
  }
  // cumulative table: cum[v] = f[0] + ... + f[v-1], reused in f.
  uint32_t acc = 0;
  for (int v = 0; v < 256; v++) {
    uint32_t fv = f[v];
    f[v] = acc;
    acc += fv;
  }
#define CUM(i) ((i) == 256 ? 65536u : f[(i)])
  if (mode == kPathProbs) {
    int sym = data[off[b] + t];
    uint16_t *dst = probs + (off[b] + t) * 8;
    int lo = 0, hi = 256;
    for (int k = 0; k < 8; k++) {
      int mid = (lo + hi) / 2;
      uint64_t all = CUM(hi) - CUM(lo), one = CUM(hi) - CUM(mid);
      dst[k] = (uint16_t)((one << 16) / all);
      if (sym >= mid) lo = mid; else hi = mid;
    }
    S.xcur[b] = sym;
    return;
  }
  // kDecode: coder/arith.go's Decoder.DecodeSymbol.
  uint32_t x1 = D.x1[b], x2 = D.x2[b], x = D.x[b];
  int lo = 0, hi = 256;
  for (int k = 0; k < 8; k++) {
    int mid = (lo + hi) / 2;
    uint64_t all = CUM(hi) - CUM(lo), one = CUM(hi) - CUM(mid);
    uint32_t p = (uint32_t)((one << 16) / all);
    if (p < 1) p = 1;
    if (p > 65535) p = 65535;
    uint32_t r = x2 - x1;
    uint32_t xmid = x1 + (r >> 16) * p + (((r & 0xFFFF) * p) >> 16);
    if (x <= xmid) {
      x2 = xmid;
      lo = mid;
    } else {
      x1 = xmid + 1;
      hi = mid;
    }
    while (((x1 ^ x2) & 0xFF000000u) == 0) {
      x1 <<= 8;
      x2 = (x2 << 8) | 0xFF;
      x = (x << 8) | dec_next(D, b);
    }
  }
#undef CUM
  D.x1[b] = x1;
  D.x2[b] = x2;
  D.x[b] = x;
  int64_t len = D.inend[b] - D.inoff[b];
  if (D.overrun[b] < 0 && D.pos[b] > len + 3) D.overrun[b] = (int32_t)t;
  data[off[b] + t] = (uint8_t)lo;
  S.xcur[b] = lo;
}

#ifdef LMFS_FAST
// freq_warp_kernel is freq_kernel with one warp per stream: lane l holds the
// logits and frequencies of bytes 8l .. 8l+7; maxima, sums and the
// cumulative table come from warp shuffles. Every lane walks the bit tree
// (and runs the decoder) redundantly; lane 0 writes the results.
__device__ __forceinline__ uint32_t pick9(const uint32_t (&c)[9], int i) {
  uint32_t r = c[0];
#pragma unroll
  for (int k = 1; k < 9; k++) r = i == k ? c[k] : r;
  return r;
}

__global__ void freq_warp_kernel(DevModel M, DevState S, const int32_t *__restrict__ idx, int n, int mode, int64_t t,
                                 uint8_t *data, const int64_t *__restrict__ off, uint16_t *probs, uint32_t *tables, DecState D,
                                 int raw) {
  int64_t gid = GID();
  int64_t w = gid >> 5;
  int lane = (int)(gid & 31);
  if (w >= n) return;  // whole warps
  const unsigned full = 0xffffffffu;
  int b = idx[w];
  const int32_t *L = S.logit + (int64_t)b * 256 + lane * 8;
  int32_t l8[8];
  {
    int4 v0 = *(const int4 *)L, v1 = *(const int4 *)(L + 4);
    l8[0] = v0.x; l8[1] = v0.y; l8[2] = v0.z; l8[3] = v0.w;
    l8[4] = v1.x; l8[5] = v1.y; l8[6] = v1.z; l8[7] = v1.w;
  }
  if (raw) {
    // the output layer's int32 sums (GEMM path): its requantisation here
#pragma unroll
    for (int i = 0; i < 8; i++) {
      int v = lane * 8 + i;
      l8[i] = clamp32(requant(l8[i], __ldg(M.mo + v), __ldg(M.so + v)) + __ldg(M.bo + v), -(1 << 24), 1 << 24);
    }
  }
  // Lmax and the smallest v holding it
  int32_t mx = l8[0];
  int mv = lane * 8;
#pragma unroll
  for (int i = 1; i < 8; i++)
    if (l8[i] > mx) { mx = l8[i]; mv = lane * 8 + i; }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    int32_t om = __shfl_xor_sync(full, mx, o);
    int ov = __shfl_xor_sync(full, mv, o);
    if (om > mx || (om == mx && ov < mv)) { mx = om; mv = ov; }
  }
  uint32_t e8[8];
  unsigned long long sum = 0;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    int32_t d = mx - l8[i];
    if (d > M.E - 1) d = M.E - 1;
    e8[i] = (uint32_t)M.exp_[d];
    sum += e8[i];
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(full, sum, o);
  double rs = 1.0 / (double)sum;
  uint32_t f8[8];
  uint32_t fs = 0;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    uint64_t num = (uint64_t)e8[i] * (65536 - 256);
    uint64_t q = (uint64_t)((double)num * rs);
    if (q * sum > num) q--;
    else if ((q + 1) * sum <= num) q++;
    f8[i] = 1 + (uint32_t)q;
    fs += f8[i];
  }
  uint32_t tot = fs;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) tot += __shfl_xor_sync(full, tot, o);
  if ((mv >> 3) == lane) {
    uint32_t rem = 65536 - tot;
#pragma unroll
    for (int i = 0; i < 8; i++)
      if (lane * 8 + i == mv) f8[i] += rem;
    fs += rem;
  }
  if (mode == kTables) {
    uint32_t *dst = tables + (off ? (off[b] + t) : w) * 256 + lane * 8;
#pragma unroll
    for (int i = 0; i < 8; i++) dst[i] = f8[i];
    if (data && lane == 0) S.xcur[b] = data[off[b] + t];
    return;
  }
  // exclusive prefix of the lane sums, then the lane's cumulative values
  uint32_t incl = fs;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    uint32_t y = __shfl_up_sync(full, incl, o);
    if (lane >= o) incl += y;
  }
  uint32_t c9[9];
  c9[0] = incl - fs;
#pragma unroll
  for (int i = 0; i < 8; i++) c9[i + 1] = c9[i] + f8[i];
  // cum(x) for x in [0, 256]
#define WCUM(x) ((x) >= 256 ? 65536u : __shfl_sync(full, pick9(c9, (x) & 7), (x) >> 3))
  if (mode == kPathProbs) {
    int sym = data[off[b] + t];
    int lo = 0, hi = 256;
    uint16_t pr[8];
#pragma unroll
    for (int k = 0; k < 8; k++) {
      int mid = (lo + hi) / 2;
      uint32_t clo = WCUM(lo), cmid = WCUM(mid), chi = WCUM(hi);
      uint64_t all = chi - clo, one = chi - cmid;
      pr[k] = (uint16_t)((uint32_t)(one << 16) / (uint32_t)all);  // one < 2^16: 32-bit division
      if (sym >= mid) lo = mid; else hi = mid;
    }
    if (lane == 0) {
      uint16_t *dst = probs + (off[b] + t) * 8;
#pragma unroll
      for (int k = 0; k < 8; k++) dst[k] = pr[k];
      S.xcur[b] = sym;
    }
    return;
  }
  // kDecode: every lane runs the decoder on the same values; lane 0 stores.
  uint32_t x1 = D.x1[b], x2 = D.x2[b], x = D.x[b];
  int64_t pos = D.pos[b];
  const int64_t plen = D.inend[b] - D.inoff[b];
  const uint8_t *in = D.in + D.inoff[b];
  int lo = 0, hi = 256;
#pragma unroll
  for (int k = 0; k < 8; k++) {
    int mid = (lo + hi) / 2;
    uint32_t clo = WCUM(lo), cmid = WCUM(mid), chi = WCUM(hi);
    uint64_t all = chi - clo, one = chi - cmid;
    uint32_t p = (uint32_t)(one << 16) / (uint32_t)all;  // one < 2^16: 32-bit division
    if (p < 1) p = 1;
    if (p > 65535) p = 65535;
    uint32_t r = x2 - x1;
    uint32_t xmid = x1 + (r >> 16) * p + (((r & 0xFFFF) * p) >> 16);
    if (x <= xmid) {
      x2 = xmid;
      lo = mid;
    } else {
      x1 = xmid + 1;
      hi = mid;
    }
    while (((x1 ^ x2) & 0xFF000000u) == 0) {
      x1 <<= 8;
      x2 = (x2 << 8) | 0xFF;
      uint32_t nb = pos < plen ? in[pos] : 0xFF;
      pos++;
      x = (x << 8) | nb;
    }
  }
#undef WCUM
  if (lane == 0) {
    D.x1[b] = x1;
    D.x2[b] = x2;
    D.x[b] = x;
    D.pos[b] = pos;
    if (D.overrun[b] < 0 && pos > plen + 3) D.overrun[b] = (int32_t)t;
    data[off[b] + t] = (uint8_t)lo;
    S.xcur[b] = lo;
  }
}
#endif

// dec_init_kernel primes the decoders of streams 0..n-1 (Decoder.Reset).
__global__ void dec_init_kernel(DecState D, int n) {
  int64_t gid = GID();
  if (gid >= n) return;
  int b = (int)gid;
  D.x1[b] = 0;
  D.x2[b] = 0xFFFFFFFFu;
  D.pos[b] = 0;
  D.overrun[b] = -1;
  uint32_t x = 0;
  for (int i = 0; i < 4; i++) x = (x << 8) | dec_next(D, b);
  D.x[b] = x;
}

// reset_kernel zeroes the state of streams idx[0..n-1] and sets their input to BOS.
__global__ void reset_kernel(DevState S, int NL, int H, const int32_t *__restrict__ idx, int n) {
  int64_t gid = GID();
  int64_t per = (int64_t)NL * H;
  if (gid >= (int64_t)n * per) return;
  int slot = (int)(gid / per);
  int64_t r = gid % per;
  int l = (int)(r / H), u = (int)(r % H);
  int b = idx[slot];
  int64_t ci = ((int64_t)l * S.cap + b) * H + u;
  S.hcur[ci] = 0;
  S.hnew[ci] = 0;
  S.c[ci] = 0;
  if (l >= 1 && S.xcat[l]) {
    S.xcat[l][(int64_t)b * 2 * H + u] = 0;
    S.xcat[l][(int64_t)b * 2 * H + H + u] = 0;
  }
  if (l == 0 && u == 0) {
    S.xcur[b] = 256;
    if (S.fcur) S.fcur[b] = 0;
    if (S.mptr) S.mptr[b] = S.mlen[b] = 0;
  }
}

// set_input_kernel sets the next input of streams idx[i] to syms[i] and,
// for lstm2 (feats not NULL), their match feature to feats[i].
__global__ void set_input_kernel(DevState S, const int32_t *__restrict__ idx, const uint8_t *__restrict__ syms,
                                 const uint16_t *__restrict__ feats, int n) {
  int64_t gid = GID();
  if (gid >= n) return;
  S.xcur[idx[gid]] = syms[gid];
  if (feats) S.fcur[idx[gid]] = feats[gid];
}

// ---- lstm2's match model (SPEC.md, "Architecture 3: lstm2", "Match model") ----

__device__ __forceinline__ int match_bucket(int32_t len) {
  return len < 8 ? 0 : len < 12 ? 1 : len < 16 ? 2 : len < 24 ? 3 : len < 32 ? 4 : len < 64 ? 5 : len < 256 ? 6 : 7;
}

// match_push updates a block's match model (table mt, ptr, len) once byte
// x[k-1] is known (k bytes known) and returns the feature f_k.
__device__ __forceinline__ uint32_t match_push(const uint8_t *x, int64_t k, uint32_t *mt, int32_t &ptr, int32_t &len) {
  int64_t i = k - 1;
  if (ptr != 0) {
    if (x[ptr] == x[i]) {
      ptr++;
      if (len < 65535) len++;
    } else {
      ptr = 0;
      len = 0;
    }
  }
  if (k >= 5) {
    uint32_t h = 0;
    for (int64_t j = k - 5; j < k; j++) h = (h + (uint32_t)x[j] + 1u) * 0x2F0B4A27u;
    h >>= 16;
    uint32_t c = mt[h];
    if (ptr == 0 && c != 0) {
      int l = 0;
      while (l < 32 && (int64_t)c - 1 - l >= 0 && x[(int64_t)c - 1 - l] == x[k - 1 - l]) l++;
      if (l >= 5) {
        ptr = (int32_t)c;
        len = l;
      }
    }
    mt[h] = (uint32_t)k;
  }
  return ptr != 0 ? 1 + (uint32_t)x[ptr] * 8 + (uint32_t)match_bucket(len) : 0;
}

// match_kernel: byte t of the blocks of streams idx[0..n-1] (at
// data[off[b]+t]) is known; their match models take it, and the feature for
// their next step goes to S.fcur.
__global__ void match_kernel(DevState S, const int32_t *__restrict__ idx, int n, const uint8_t *data, const int64_t *__restrict__ off,
                             int64_t t) {
  int64_t gid = GID();
  if (gid >= n) return;
  int b = idx[gid];
  int32_t ptr = S.mptr[b], len = S.mlen[b];
  S.fcur[b] = (uint16_t)match_push(data + off[b], t + 1, S.mt + (int64_t)b * kMatchSlots, ptr, len);
  S.mptr[b] = ptr;
  S.mlen[b] = len;
}

// ---- host side ----

#ifdef LMFS_GEMM
// Blas is cuBLAS, loaded at run time (dlopen): the library builds and runs
// without it, with the mma kernels. Only cublasGemmEx with int8 inputs and
// int32 sums (CUBLAS_COMPUTE_32I) is used: exact integer sums, so the result
// does not depend on cuBLAS's choice of algorithm.
struct Blas {
  typedef int (*CreateFn)(void **);
  typedef int (*DestroyFn)(void *);
  typedef int (*SetStreamFn)(void *, cudaStream_t);
  typedef int (*GemmExFn)(void *, int, int, int, int, int, const void *, const void *, int, int, const void *, int, int,
                          const void *, void *, int, int, int, int);
  void *lib = nullptr;
  void *h = nullptr;
  std::string name;  // the file loaded
  DestroyFn destroy = nullptr;
  GemmExFn gemmEx = nullptr;
  // cuBLAS constants (cublas_api.h; the header is not needed to build)
  static constexpr int kOpN = 0, kOpT = 1, kCompute32I = 72, kGemmDefault = -1;

  // load opens cuBLAS and a handle on stream st; false (with why) if it cannot.
  bool load(cudaStream_t st, std::string *why) {
    const char *env = std::getenv("LMFS_CUBLAS_LIB");
    const char *names[] = {env, "libcublas.so.13", "libcublas.so.12", "libcublas.so", "/usr/local/cuda/lib64/libcublas.so.13",
                           "/usr/local/cuda/lib64/libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so"};
    for (const char *nm : names) {
      if (!nm || !*nm) continue;
      lib = dlopen(nm, RTLD_NOW | RTLD_LOCAL);
      if (lib) { name = nm; break; }
    }
    if (!lib) { *why = "cuBLAS not found (set LMFS_CUBLAS_LIB to libcublas.so)"; return false; }
    CreateFn create = (CreateFn)dlsym(lib, "cublasCreate_v2");
    SetStreamFn setStream = (SetStreamFn)dlsym(lib, "cublasSetStream_v2");
    destroy = (DestroyFn)dlsym(lib, "cublasDestroy_v2");
    gemmEx = (GemmExFn)dlsym(lib, "cublasGemmEx");
    if (!create || !setStream || !destroy || !gemmEx) { *why = name + " lacks cublasCreate_v2/cublasGemmEx"; return false; }
    int st1 = create(&h);
    if (st1 != 0) { h = nullptr; *why = "cublasCreate failed with status " + std::to_string(st1); return false; }
    int st2 = setStream(h, st);
    if (st2 != 0) { *why = "cublasSetStream failed with status " + std::to_string(st2); return false; }
    return true;
  }
  ~Blas() {
    if (h && destroy) destroy(h);
    // the library stays loaded: other handles may use it
  }
};
#endif

struct Ctx {
  Model host;
  DevModel dm{};
  bool mma = false;              // use the tensor-core kernels
  bool warpfreq = false;         // use the warp-per-stream frequency kernel
  const int32_t *apack[4] = {};  // per layer: A fragments (int4 per lane)
  const int32_t *apackO = nullptr;
  bool gemm = false;             // the GEMM path (cuBLAS + gate_kernel) where streams are a prefix
  bool gcat = false;             // the GEMM path's layers above 0 in one GEMM (DevState.xcat)
  int gchunk = 0;                // streams per GEMM chunk (a multiple of 16; 0: all at once)
  const int32_t *host_b[4] = {}, *host_m[4] = {}, *host_s[4] = {};  // = dm.b, dm.m, dm.s (device pointers, for launches)
  const int16_t *tab16 = nullptr;  // the sigmoid and tanh tables as int16 (GEMM path)
  int nsm = 132;                   // multiprocessors of the GPU
  const int8_t *wdev[5] = {};    // row-major int8 weights of layers 0..NL-1 and (at NL) the output layer
  std::vector<void *> allocs;  // model buffers
  int device = 0;
  std::string name;
  std::mutex mu;  // one call at a time
  std::atomic<int64_t> cancel{0};
#ifndef LMFS_EMU
  cudaStream_t stream = nullptr;
#endif
#ifdef LMFS_GEMM
  Blas blas;
#endif
};

#ifndef LMFS_EMU
bool cuda_ok(cudaError_t e, const char *what, std::string *err) {
  if (e == cudaSuccess) return true;
  *err = std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  return false;
}
bool dev_alloc(void **p, size_t n, std::string *err) {
  cudaError_t e = cudaMalloc(p, n ? n : 1);
  if (e != cudaSuccess) {
    *p = nullptr;
    cudaGetLastError();
    *err = "cudaMalloc of " + std::to_string(n) + " bytes: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return false;
  }
  return true;
}
void dev_free(void *p) {
  if (p) cudaFree(p);
}
#endif

bool h2d(Ctx *g, void *dst, const void *src, size_t n, std::string *err) {
  if (n == 0) return true;
#ifdef LMFS_EMU
  (void)g; (void)err;
  std::memcpy(dst, src, n);
  return true;
#else
  return cuda_ok(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, g->stream), "copy to the GPU", err);
#endif
}

bool d2h(Ctx *g, void *dst, const void *src, size_t n, std::string *err) {
  if (n == 0) return true;
#ifdef LMFS_EMU
  (void)g; (void)err;
  std::memcpy(dst, src, n);
  return true;
#else
  return cuda_ok(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, g->stream), "copy from the GPU", err);
#endif
}

// zero clears n bytes of GPU memory at p (in stream order).
bool zero(Ctx *g, void *p, size_t n, std::string *err) {
  if (n == 0) return true;
#ifdef LMFS_EMU
  (void)g; (void)err;
  std::memset(p, 0, n);
  return true;
#else
  return cuda_ok(cudaMemsetAsync(p, 0, n, g->stream), "clear GPU memory", err);
#endif
}

// sync waits for the work queued so far and reports any error of it.
bool sync(Ctx *g, std::string *err) {
#ifdef LMFS_EMU
  (void)g; (void)err;
  return true;
#else
  if (!cuda_ok(cudaGetLastError(), "kernel launch", err)) return false;
  return cuda_ok(cudaStreamSynchronize(g->stream), "GPU work", err);
#endif
}

bool launched(Ctx *g, std::string *err) {
#ifdef LMFS_EMU
  (void)g; (void)err;
  return true;
#else
  (void)g;
  return cuda_ok(cudaGetLastError(), "kernel launch", err);
#endif
}

#ifdef LMFS_GEMM
// gemm_i8 computes C (m x n, column-major, ldc) = A^T B (+ C if accumulate)
// in int32: A is k x m column-major (a row-major m x k weight matrix, lda),
// B is k x n column-major (n streams' inputs of k bytes, ldb).
bool gemm_i8(Ctx *g, int m, int n, int k, const int8_t *A, int lda, const int8_t *B, int ldb, int32_t *C, int ldc, bool accumulate,
             std::string *err) {
  int32_t alpha = 1, beta = accumulate ? 1 : 0;
  int st = g->blas.gemmEx(g->blas.h, Blas::kOpT, Blas::kOpN, m, n, k, &alpha, A, CUDA_R_8I, lda, B, CUDA_R_8I, ldb, &beta, C,
                          CUDA_R_32I, ldc, Blas::kCompute32I, Blas::kGemmDefault);
  if (st != 0) {
    *err = "cuBLAS int8 GEMM " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " failed with status " +
           std::to_string(st) + " (LMFS_CUDA_KERNEL=mma avoids cuBLAS)";
    return false;
  }
  return true;
}

// gemm_n is the number of streams the GEMMs run on for streams 0..n-1: n
// rounded up to a multiple of 16 (the state has room for them: alloc_state),
// so that cuBLAS sees aligned shapes; the extra columns are not used.
int gemm_n(int n, int cap) {
  int p = (n + 15) & ~15;
  return p < cap ? p : cap;
}

// gemm_layer puts the gate sums of layer l for streams 0..n-1 in G: inputs
// inA (h of the layer below, or h_0 for layer 0) and, above layer 0, inB
// (the layer's own h), each n rows of H bytes.
bool gemm_layer(Ctx *g, int l, const int8_t *inA, const int8_t *inB, int n, int32_t *G, std::string *err) {
  const int H = g->host.H, K = l == 0 ? H : 2 * H;
  if (!gemm_i8(g, 4 * H, n, H, g->wdev[l], K, inA, H, G, 4 * H, false, err)) return false;
  if (l > 0 && !gemm_i8(g, 4 * H, n, H, g->wdev[l] + H, K, inB, H, G, 4 * H, true, err)) return false;
  return true;
}
#endif

// Buffers owns device allocations of one call.
struct Buffers {
  std::vector<void *> p;
  ~Buffers() {
    for (void *q : p) dev_free(q);
  }
  template <class T>
  bool alloc(T **out, size_t count, std::string *err) {
    void *q;
    if (!dev_alloc(&q, count * sizeof(T), err)) return false;
    p.push_back(q);
    *out = (T *)q;
    return true;
  }
};

template <class T>
bool upload(Ctx *g, Buffers *bf, const std::vector<T> &v, const T **out, std::string *err) {
  T *d;
  if (!bf->alloc(&d, v.size(), err)) return false;
  if (!h2d(g, d, v.data(), v.size() * sizeof(T), err)) return false;
  *out = d;
  return true;
}

#ifdef LMFS_GEMM
// gemm_selfcheck runs the GEMMs of every layer and of the output layer on
// pseudo-random inputs of a few streams and compares them with sums computed
// here: the GEMM path is used only if cuBLAS gives the exact int32 sums.
bool gemm_selfcheck(Ctx *g, std::string *why) {
  const Model &m = g->host;
  const int H = m.H, n = 32;
  std::vector<int8_t> xa((size_t)n * H), xb((size_t)n * H);
  uint32_t r = 12345;
  auto next = [&r]() {
    r = r * 1664525u + 1013904223u;
    return (int8_t)((int)((r >> 24) % 255) - 127);
  };
  for (auto &v : xa) v = next();
  for (auto &v : xb) v = next();
  Buffers bf;
  int8_t *dxa, *dxb;
  int32_t *dc;
  std::string err;
  size_t rowsmax = std::max(4 * H, 256);
  if (!bf.alloc(&dxa, xa.size(), &err) || !bf.alloc(&dxb, xb.size(), &err) || !bf.alloc(&dc, rowsmax * n, &err) ||
      !h2d(g, dxa, xa.data(), xa.size(), &err) || !h2d(g, dxb, xb.data(), xb.size(), &err)) {
    *why = "self-check: " + err;
    return false;
  }
  std::vector<int32_t> got(rowsmax * n);
  for (int l = 0; l <= m.NL; l++) {
    bool outl = l == m.NL;
    int rows = outl ? 256 : 4 * H, K = (l == 0 || outl) ? H : 2 * H;
    const int8_t *W = outl ? m.woraw.data() : m.wraw[l].data();
    bool ok = outl ? gemm_i8(g, 256, n, H, g->wdev[m.NL], H, dxa, H, dc, 256, false, &err) : gemm_layer(g, l, dxa, dxb, n, dc, &err);
    if (!ok || !d2h(g, got.data(), dc, (size_t)rows * n * sizeof(int32_t), &err) || !sync(g, &err)) {
      *why = "self-check: " + err;
      return false;
    }
    for (int st = 0; st < n; st++)
      for (int j = 0; j < rows; j++) {
        int32_t want = 0;
        for (int k = 0; k < H; k++) want += (int32_t)W[(size_t)j * K + k] * xa[(size_t)st * H + k];
        if (K == 2 * H)
          for (int k = 0; k < H; k++) want += (int32_t)W[(size_t)j * K + H + k] * xb[(size_t)st * H + k];
        if (got[(size_t)st * rows + j] != want) {
          *why = "self-check: cuBLAS int8 GEMM of layer " + std::to_string(l) + " gave " + std::to_string(got[(size_t)st * rows + j]) +
                 " instead of " + std::to_string(want);
          return false;
        }
      }
  }
  return true;
}
#endif

// alloc_state allocates the state of cap streams. For lstm2 it adds each
// stream's feature and, with match (every call but Streams, whose features
// come from the host), its match model: 2^16 x 4 bytes of table, zeroed.
bool alloc_state(Ctx *g, Buffers *bf, int cap, DevState *S, std::string *err, bool match = true) {
  const Model &m = g->host;
  if (g->gemm) cap = (cap + 15) & ~15;  // the GEMMs run on whole groups of 16 streams (see gemm_n)
  size_t per = (size_t)m.NL * cap * m.H;
  S->cap = cap;
  S->gacc = nullptr;
  S->gcap = g->gchunk > 0 ? std::min(cap, g->gchunk) : cap;
  for (int l = 0; l < 4; l++) S->xcat[l] = nullptr;
  if (g->gemm && !bf->alloc(&S->gacc, (size_t)S->gcap * 4 * m.H, err)) return false;
  for (int l = 1; g->gemm && g->gcat && l < m.NL; l++)
    if (!bf->alloc(&S->xcat[l], (size_t)cap * 2 * m.H, err)) return false;
  S->fcur = nullptr;
  S->mt = nullptr;
  S->mptr = S->mlen = nullptr;
  if (m.arch == 3) {
    if (!bf->alloc(&S->fcur, (size_t)cap, err)) return false;
    if (match && (!bf->alloc(&S->mt, (size_t)cap * kMatchSlots, err) || !bf->alloc(&S->mptr, (size_t)cap, err) ||
                  !bf->alloc(&S->mlen, (size_t)cap, err) || !zero(g, S->mt, (size_t)cap * kMatchSlots * sizeof(uint32_t), err)))
      return false;
  }
  return bf->alloc(&S->hcur, per, err) && bf->alloc(&S->hnew, per, err) && bf->alloc(&S->c, per, err) &&
         bf->alloc(&S->xcur, (size_t)cap, err) && bf->alloc(&S->logit, (size_t)cap * 256, err);
}

// match_step (lstm2; nothing for lstm1): byte t of the blocks of streams
// idx[0..n-1] is in data at off[b]+t; their match models take it and give
// the feature of their next step.
bool match_step(Ctx *g, DevState &S, const int32_t *idx, int n, const uint8_t *data, const int64_t *off, int64_t t, std::string *err) {
  if (!S.mt || n <= 0) return true;
  LAUNCH(match_kernel, n, S, idx, n, data, off, t);
  return launched(g, err);
}

// step advances streams idx[0..n-1] by their input symbol. With lockstep
// (every stream that will be used again steps together, as in a batch), the
// new h buffers simply become the current ones; otherwise the commit kernel
// copies the new h of the streams that stepped.
// prefix: idx is 0..n-1 (the GEMM kernels need contiguous rows).
bool step(Ctx *g, DevState &S, const int32_t *idx, int n, bool prefix, std::string *err, bool lockstep = false) {
  if (n <= 0) return true;
  const Model &m = g->host;
  int64_t ngrp = (n + kG - 1) / kG;
#ifdef LMFS_GEMM
  if (g->gemm && prefix) {
    // The streams go in chunks of S.gcap (16 or more), whose gate sums stay
    // in the L2 cache between the GEMM and the gate kernel.
    const int H = m.H;
    const int np = gemm_n(n, S.cap);
    for (int l = 0; l < m.NL; l++) {
      const int8_t *inA = l == 0 ? S.hcur : S.hnew + (int64_t)(l - 1) * S.cap * H;
      const int8_t *inB = S.hcur + (int64_t)l * S.cap * H;
      int8_t *xnext = l + 1 < m.NL ? S.xcat[l + 1] : nullptr;
      int8_t *xself = l >= 1 ? S.xcat[l] : nullptr;
      for (int c0 = 0; c0 < n; c0 += S.gcap) {
        int cn = std::min(S.gcap, n - c0), cp = std::min(S.gcap, np - c0);
        if (xself) {
          if (!gemm_i8(g, 4 * H, cp, 2 * H, g->wdev[l], 2 * H, xself + (int64_t)c0 * 2 * H, 2 * H, S.gacc, 4 * H, false, err)) return false;
        } else if (!gemm_layer(g, l, inA + (int64_t)c0 * H, inB + (int64_t)c0 * H, cp, S.gacc, err)) {
          return false;
        }
        int64_t work = (int64_t)cn * (H / 4);
        int grid = (int)std::min<int64_t>((work + kGateBS - 1) / kGateBS, (int64_t)g->nsm * 4);
        LAUNCH_GRID(gate_kernel, grid, kGateBS, g->dm, S, l, g->host_b[l], g->host_m[l], g->host_s[l], xnext, xself, S.gacc, c0, cn,
                    (const int4 *)g->tab16);
      }
    }
  } else
#endif
#ifdef LMFS_FAST
  if (g->mma) {
    int64_t warps = (int64_t)(m.H / 4) * ((n + 8 * kNT - 1) / (8 * kNT));
    for (int l = 0; l < m.NL; l++) LAUNCH_BS(layer_kernel_mma, kMmaBS, warps * 32, g->dm, S, l, (const int4 *)g->apack[l], idx, n);
  } else
#endif
    for (int l = 0; l < m.NL; l++) LAUNCH(layer_kernel, ngrp * m.H, g->dm, S, l, idx, n);
  if (lockstep) std::swap(S.hcur, S.hnew);
  else LAUNCH(commit_kernel, (int64_t)n * m.NL * (m.H / 4), S, m.NL, m.H, idx, n);
  return launched(g, err);
}

// freq launches the frequency kernel for streams idx[0..n-1].
// raw: the logits buffer holds the output layer's int32 sums (head's GEMM
// path), which only the warp kernel requantises.
bool freq(Ctx *g, DevState &S, const int32_t *idx, int n, int mode, int64_t t, uint8_t *data, const int64_t *off, uint16_t *probs,
          uint32_t *tables, DecState &D, bool raw, std::string *err) {
#ifdef LMFS_FAST
  if (g->warpfreq) {
    LAUNCH(freq_warp_kernel, (int64_t)n * 32, g->dm, S, idx, n, mode, t, data, off, probs, tables, D, raw ? 1 : 0);
    return launched(g, err);
  }
#endif
  if (raw) { *err = "internal: raw logits without the warp frequency kernel"; return false; }
  LAUNCH(freq_kernel, n, g->dm, S, idx, n, mode, t, data, off, probs, tables, D);
  return launched(g, err);
}

// head computes the logits of streams idx[0..n-1]. prefix: idx is 0..n-1.
// *raw is set when the logits buffer holds the int32 sums (GEMM path), to be
// requantised by the frequency kernel.
bool head(Ctx *g, DevState &S, const int32_t *idx, int n, bool prefix, bool *raw, std::string *err) {
  int64_t ngrp = (n + kG - 1) / kG;
  *raw = false;
  if (n <= 0) return true;
#ifdef LMFS_GEMM
  if (g->gemm && prefix) {
    const int H = g->host.H;
    const int8_t *top = S.hcur + (int64_t)(g->host.NL - 1) * S.cap * H;
    *raw = true;
    return gemm_i8(g, 256, gemm_n(n, S.cap), H, g->wdev[g->host.NL], H, top, H, S.logit, 256, false, err) && launched(g, err);
  }
#endif
#ifdef LMFS_FAST
  if (g->mma) {
    int64_t warps = (int64_t)16 * ((n + 8 * kNT - 1) / (8 * kNT));
    LAUNCH_BS(head_kernel_mma, kMmaBS, warps * 32, g->dm, S, (const int4 *)g->apackO, idx, n);
    return launched(g, err);
  }
#endif
  LAUNCH(head_kernel, ngrp * 256, g->dm, S, idx, n);
  return launched(g, err);
}

// Batch holds a call's blocks in decreasing length order: at position t the
// active blocks are a prefix of order.
struct Batch {
  std::vector<int32_t> order;
  std::vector<int64_t> active;  // active[t] = number of blocks longer than t
};

Batch plan(int nb, const int64_t *lens) {
  Batch B;
  B.order.resize(nb);
  for (int i = 0; i < nb; i++) B.order[i] = i;
  std::stable_sort(B.order.begin(), B.order.end(), [&](int a, int b) { return lens[a] > lens[b]; });
  int64_t maxlen = nb ? lens[B.order[0]] : 0;
  B.active.assign(maxlen + 1, 0);
  int64_t k = nb;
  for (int64_t t = 0; t <= maxlen; t++) {
    while (k > 0 && lens[B.order[k - 1]] <= t) k--;
    B.active[t] = k;
  }
  return B;
}

bool cancelled(Ctx *g, int64_t token) { return token != 0 && g->cancel.load() == token; }

// pace follows step t of a loop over positions: every 256 steps it checks
// for cancellation (-2, err "cancelled"), and every 1024 it waits for the
// GPU, which keeps the host at most a few thousand launches ahead (-1 on an
// error). 0: go on.
int pace(Ctx *g, int64_t token, int64_t t, std::string *err) {
  if ((t & 255) != 255) return 0;
  if (cancelled(g, token)) {
    sync(g, err);
    *err = "cancelled";
    return -2;
  }
  if ((t & 1023) == 1023 && !sync(g, err)) return -1;
  return 0;
}

// run_batch runs every position of nb blocks (lens[b] bytes, data at
// off[b]) in one of the freq kernel's modes. The streams' state is kept in
// decreasing length order (stream i is block order[i]), so that the streams
// active at any position are the prefix 0..n-1: the GEMM kernels work on
// contiguous rows. The data, probabilities and tables stay where the caller
// has them: the kernels find them through the permuted offsets.
int run_batch(Ctx *g, int nb, const int64_t *lens, int mode, uint8_t *hdata, uint16_t *hprobs, uint32_t *htables,
              const uint8_t *pay, const int64_t *payoff, int32_t *overrun, int64_t token, std::string *err) {
  const Model &m = g->host;
  if (nb < 0) { *err = "negative block count"; return -1; }
  if (nb == 0) return 0;
  std::vector<int64_t> off(nb + 1, 0);
  for (int i = 0; i < nb; i++) {
    if (lens[i] < 0 || lens[i] > (1 << 30)) { *err = "block length out of range"; return -1; }
    off[i + 1] = off[i] + lens[i];
  }
  int64_t total = off[nb];
  Batch B = plan(nb, lens);
  std::vector<int32_t> ident(nb);
  std::vector<int64_t> soff(nb);  // soff[i] = off[order[i]]
  for (int i = 0; i < nb; i++) {
    ident[i] = i;
    soff[i] = off[B.order[i]];
  }
  Buffers bf;
  DevState S;
  if (!alloc_state(g, &bf, nb, &S, err)) return -1;
  int32_t *didx;
  int64_t *doff;
  uint8_t *ddata;
  uint16_t *dprobs = nullptr;
  uint32_t *dtables = nullptr;
  DecState D{};
  if (!bf.alloc(&didx, nb, err) || !bf.alloc(&doff, nb, err) || !bf.alloc(&ddata, total, err)) return -1;
  if (!h2d(g, didx, ident.data(), nb * sizeof(int32_t), err) || !h2d(g, doff, soff.data(), nb * sizeof(int64_t), err)) return -1;
  if (mode != kDecode && !h2d(g, ddata, hdata, total, err)) return -1;
  if (mode == kPathProbs && !bf.alloc(&dprobs, total * 8, err)) return -1;
  if (mode == kTables && !bf.alloc(&dtables, total * 256, err)) return -1;
  std::vector<int64_t> pstart(nb), pend(nb);
  if (mode == kDecode) {
    for (int i = 0; i < nb; i++) {
      pstart[i] = payoff[B.order[i]];
      pend[i] = payoff[B.order[i] + 1];
    }
    uint8_t *din;
    int64_t *dinoff, *dinend;
    int64_t plen = payoff[nb];
    if (!bf.alloc(&din, plen, err) || !bf.alloc(&dinoff, nb, err) || !bf.alloc(&dinend, nb, err) || !bf.alloc(&D.x1, nb, err) ||
        !bf.alloc(&D.x2, nb, err) || !bf.alloc(&D.x, nb, err) || !bf.alloc(&D.pos, nb, err) || !bf.alloc(&D.overrun, nb, err))
      return -1;
    if (!h2d(g, din, pay, plen, err) || !h2d(g, dinoff, pstart.data(), nb * sizeof(int64_t), err) ||
        !h2d(g, dinend, pend.data(), nb * sizeof(int64_t), err))
      return -1;
    D.in = din;
    D.inoff = dinoff;
    D.inend = dinend;
    LAUNCH(dec_init_kernel, nb, D, nb);
  }
  LAUNCH(reset_kernel, (int64_t)nb * m.NL * m.H, S, m.NL, m.H, didx, nb);
  if (!step(g, S, didx, nb, true, err, true)) return -1;  // step(BOS)
  int64_t maxlen = (int64_t)B.active.size() - 1;
  for (int64_t t = 0; t < maxlen; t++) {
    int n = (int)B.active[t];
    bool raw = false;
    if (!head(g, S, didx, n, true, &raw, err)) return -1;
    if (!freq(g, S, didx, n, mode, t, ddata, doff, dprobs, dtables, D, raw, err)) return -1;
    if (!match_step(g, S, didx, (int)B.active[t + 1], ddata, doff, t, err)) return -1;
    if (!step(g, S, didx, (int)B.active[t + 1], true, err, true)) return -1;
    if (int r = pace(g, token, t, err)) return r;
  }
  if (mode == kPathProbs && !d2h(g, hprobs, dprobs, total * 8 * sizeof(uint16_t), err)) return -1;
  if (mode == kTables && !d2h(g, htables, dtables, total * 256 * sizeof(uint32_t), err)) return -1;
  if (mode == kDecode) {
    std::vector<int64_t> pos(nb);
    std::vector<int32_t> sover(nb);
    if (!d2h(g, hdata, ddata, total, err) || !d2h(g, sover.data(), D.overrun, nb * sizeof(int32_t), err) ||
        !d2h(g, pos.data(), D.pos, nb * sizeof(int64_t), err) || !sync(g, err))
      return -1;
    // Decoder.Finish: a valid stream is consumed to exactly its length + 3.
    for (int i = 0; i < nb; i++) {
      int b = B.order[i];
      int64_t plen = pend[i] - pstart[i];
      overrun[b] = sover[i];
      if (overrun[b] < 0 && lens[b] > 0 && pos[i] != plen + 3) overrun[b] = (int32_t)lens[b];
    }
    return 0;
  }
  return sync(g, err) ? 0 : -1;
}

struct Streams {
  Ctx *g;
  Buffers bf;
  DevState S;
  int n;
  int32_t *didx;
  uint8_t *dsyms;
  uint16_t *dfeats = nullptr;  // lstm2: the pushed bytes' match features
  uint32_t *dtables;
  uint32_t *pinned = nullptr;  // page-locked staging for the tables (faster copies)
  ~Streams() {
#ifndef LMFS_EMU
    if (pinned) cudaFreeHost(pinned);
#endif
  }
};

// is_prefix reports whether ids[0..k-1] is 0..k-1: the streams the GEMM path
// can serve as they are (other sets take the per-stream kernels).
bool is_prefix(const int32_t *ids, int k) {
  for (int i = 0; i < k; i++)
    if (ids[i] != i) return false;
  return true;
}

// tables_out copies k tables of streams s from the GPU to dst and waits.
bool tables_out(Streams *s, uint32_t *dst, int k, std::string *err) {
  size_t bytes = (size_t)k * 256 * sizeof(uint32_t);
  if (!s->pinned) return d2h(s->g, dst, s->dtables, bytes, err) && sync(s->g, err);
  if (!d2h(s->g, s->pinned, s->dtables, bytes, err) || !sync(s->g, err)) return false;
  std::memcpy(dst, s->pinned, bytes);
  return true;
}

}  // namespace

extern "C" {

// lmfs_cuda_abi returns the version of this C ABI.
int lmfs_cuda_abi(void) { return kABI; }

// lmfs_cuda_last_error returns the message of the last failed call.
const char *lmfs_cuda_last_error(void) {
  static thread_local std::string copy;
  std::lock_guard<std::mutex> l(g_errmu);
  copy = g_err;
  return copy.c_str();
}

// lmfs_cuda_devices returns the number of usable GPUs, or -1 (see last error).
int lmfs_cuda_devices(void) {
#ifdef LMFS_EMU
  const char *e = std::getenv("LMFS_EMU_DEVICES");
  return e ? std::atoi(e) : 1;
#else
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    set_err(std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")");
    return -1;
  }
  return n;
#endif
}

// lmfs_cuda_open parses an lstm1 or lstm2 model file and puts it on GPU device. It
// returns a handle, or NULL (see last error).
void *lmfs_cuda_open(const uint8_t *model, int64_t len, int device) {
  Ctx *g = new (std::nothrow) Ctx;
  if (!g) { set_err("out of host memory"); return nullptr; }
  std::string err;
  if (!parse(model, len, &g->host, &err)) {
    set_err("bad lm model file: " + err);
    delete g;
    return nullptr;
  }
  g->device = device;
#ifdef LMFS_EMU
  g->name = "emulated GPU (CPU)";
#else
  cudaDeviceProp prop;
  if (!cuda_ok(cudaSetDevice(device), "select GPU", &err) || !cuda_ok(cudaGetDeviceProperties(&prop, device), "GPU properties", &err) ||
      !cuda_ok(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), "create stream", &err)) {
    set_err(err);
    delete g;
    return nullptr;
  }
  g->name = std::string("cuda:") + std::to_string(device) + " " + prop.name;
  if (prop.multiProcessorCount > 0) g->nsm = prop.multiProcessorCount;
#endif
  const Model &m = g->host;
  Buffers bf;
  DevModel &d = g->dm;
  d.NL = m.NL; d.H = m.H; d.E = m.E;
  bool ok = upload(g, &bf, m.sig, &d.sig, &err) && upload(g, &bf, m.tanh_, &d.tanh_, &err) && upload(g, &bf, m.t0, &d.t0, &err) &&
            upload(g, &bf, m.exp_, &d.exp_, &err) && upload(g, &bf, m.wot, &d.wot, &err) && upload(g, &bf, m.bo, &d.bo, &err) &&
            upload(g, &bf, m.mo, &d.mo, &err) && upload(g, &bf, m.so, &d.so, &err);
  for (int l = 0; ok && l < m.NL; l++)
    ok = upload(g, &bf, m.wt[l], &d.wt[l], &err) && upload(g, &bf, m.b[l], &d.b[l], &err) && upload(g, &bf, m.m[l], &d.m[l], &err) &&
         upload(g, &bf, m.s[l], &d.s[l], &err);
  d.t1 = nullptr;
  if (ok && m.arch == 3) ok = upload(g, &bf, m.t1, &d.t1, &err);
  // LMFS_CUDA_KERNEL chooses the kernels: gemm (the default: cuBLAS int8
  // GEMMs and the fused gate kernel where cuBLAS loads and passes its check,
  // else mma), mma (the tensor-core kernels; H a multiple of 32) or dp4a.
  const char *kenv = std::getenv("LMFS_CUDA_KERNEL");
  std::string kern = kenv ? kenv : "";
  if (kern != "" && kern != "gemm" && kern != "mma" && kern != "dp4a") {
    set_err("LMFS_CUDA_KERNEL=" + kern + ": use gemm, mma or dp4a");
    delete g;
    return nullptr;
  }
  std::string nogemm;  // why the GEMM path is off
#ifdef LMFS_FAST
  g->mma = m.H % 32 == 0 && kern != "dp4a";
  g->warpfreq = kern != "dp4a";
#endif
#ifdef LMFS_GEMM
  bool want_gemm = kern == "" || kern == "gemm";
  // LMFS_GEMM_CAT=0: the layers above 0 as two GEMMs (the first version);
  // LMFS_GEMM_CHUNK: streams per GEMM chunk (default 0: all at once, which
  // measured faster than chunks of 2048 to 8192 on an H200).
  const char *cat = std::getenv("LMFS_GEMM_CAT");
  g->gcat = !(cat && std::string(cat) == "0");
  const char *chunk = std::getenv("LMFS_GEMM_CHUNK");
  g->gchunk = chunk ? std::atoi(chunk) : 0;
  g->gchunk = g->gchunk <= 0 ? 0 : std::max(16, (g->gchunk + 15) & ~15);
#else
  nogemm = kern == "gemm" ? "this build has no GEMM path" : "";
#endif
  if (ok && g->mma) {
    for (int l = 0; ok && l < m.NL; l++) {
      int K = l == 0 ? m.H : 2 * m.H, H = m.H;
      std::vector<int32_t> p = pack_a(m.wraw[l].data(), 4 * H, K, [H](int mt, int r) { return (r >> 2) * H + 4 * mt + (r & 3); });
      ok = upload(g, &bf, p, &g->apack[l], &err);
    }
    if (ok) {
      std::vector<int32_t> p = pack_a(m.woraw.data(), 256, m.H, [](int mt, int r) { return 16 * mt + r; });
      ok = upload(g, &bf, p, &g->apackO, &err);
    }
  }
  if (ok) ok = sync(g, &err);
#ifdef LMFS_GEMM
  if (ok && want_gemm) {
    for (int l = 0; ok && l < m.NL; l++) ok = upload(g, &bf, m.wraw[l], &g->wdev[l], &err);
    for (int l = 0; l < m.NL; l++) {
      g->host_b[l] = d.b[l];
      g->host_m[l] = d.m[l];
      g->host_s[l] = d.s[l];
    }
    std::vector<int16_t> t16(2 * 4096);
    for (int i = 0; i < 4096; i++) {
      t16[i] = (int16_t)m.sig[i];
      t16[4096 + i] = (int16_t)m.tanh_[i];
    }
    if (ok) ok = upload(g, &bf, t16, &g->tab16, &err) && sync(g, &err);
    if (ok) ok = upload(g, &bf, m.woraw, &g->wdev[m.NL], &err) && sync(g, &err);
    if (ok && g->blas.load(g->stream, &nogemm)) {
      g->gemm = true;
      if (!gemm_selfcheck(g, &nogemm)) g->gemm = false;
      cudaGetLastError();
    }
    if (!g->gemm && kern == "gemm" && ok) {
      err = "LMFS_CUDA_KERNEL=gemm: " + nogemm;
      ok = false;
    }
  }
#else
  if (ok && kern == "gemm") {
    err = "LMFS_CUDA_KERNEL=gemm: " + nogemm;
    ok = false;
  }
#endif
  if (!ok) {
    set_err(err);
    delete g;  // bf frees the buffers
    return nullptr;
  }
  g->name += g->gemm ? " (int8 GEMM (cuBLAS) + fused gates" : (g->mma ? " (int8 tensor cores" : " (dp4a");
  if (m.arch == 3) g->name += ", lstm2 match model";
  if (g->gemm && g->gcat) g->name += ", one GEMM per layer";
  if (g->gemm && g->gchunk) g->name += ", chunks of " + std::to_string(g->gchunk) + " streams";
  g->name += g->warpfreq ? ", warp frequencies" : "";
  if (!g->gemm && !nogemm.empty()) g->name += "; no GEMM path: " + nogemm;
  g->name += ")";
  g->allocs.swap(bf.p);
  return g;
}

// lmfs_cuda_free releases a handle.
void lmfs_cuda_free(void *h) {
  Ctx *g = (Ctx *)h;
  if (!g) return;
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
#ifdef LMFS_GEMM
  if (g->blas.h) {
    g->blas.destroy(g->blas.h);
    g->blas.h = nullptr;
  }
#endif
  for (void *p : g->allocs) dev_free(p);
#ifndef LMFS_EMU
  if (g->stream) cudaStreamDestroy(g->stream);
#endif
  delete g;
}

// lmfs_cuda_name copies the device's name into buf (NUL-terminated).
void lmfs_cuda_name(void *h, char *buf, int cap) {
  Ctx *g = (Ctx *)h;
  if (cap <= 0) return;
  std::snprintf(buf, (size_t)cap, "%s", g->name.c_str());
}

// lmfs_cuda_bytes_per_stream returns the GPU memory one block in flight
// needs for its state, not counting its data (1 byte per byte, plus 16 per
// byte for encoding's probabilities and its payload for decoding). For
// lstm2 that includes the block's match model (256 KiB of table, its
// pointer, length and feature).
int64_t lmfs_cuda_bytes_per_stream(void *h) {
  Ctx *g = (Ctx *)h;
  const Model &m = g->host;
  return (int64_t)m.NL * m.H * (1 + 1 + 4) + 4 + 256 * 4 + 4 + 8 + 8 + 3 * 4 + 4 + 8 + (g->gemm && g->gchunk == 0 ? (int64_t)16 * m.H : 0) +
         (g->gcat ? (int64_t)(m.NL - 1) * 2 * m.H : 0) + (m.arch == 3 ? kMatchSlots * 4 + 4 + 4 + 2 : 0);
}

// lmfs_cuda_free_memory returns the free memory of the handle's GPU in
// bytes, or -1 where unknown.
int64_t lmfs_cuda_free_memory(void *h) {
#ifdef LMFS_EMU
  (void)h;
  return -1;
#else
  Ctx *g = (Ctx *)h;
  std::lock_guard<std::mutex> l(g->mu);
  cudaSetDevice(g->device);
  size_t fr = 0, tot = 0;
  if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return (int64_t)fr;
#endif
}

// lmfs_cuda_cancel asks the call running with token to stop.
void lmfs_cuda_cancel(void *h, int64_t token) { ((Ctx *)h)->cancel.store(token); }

// lmfs_cuda_encode scores nb blocks (block i is lens[i] bytes of data at the
// prefix sum of lens) and writes, for every byte, the 8 probabilities of the
// bit tree along that byte (coder/arith.go's symbolP, most significant bit
// first) to probs[8*(offset+t) .. +7]. Returns 0, -1 on error (see last
// error), -2 if cancelled.
int lmfs_cuda_encode(void *h, int nb, const uint8_t *data, const int64_t *lens, uint16_t *probs, int64_t token) {
  Ctx *g = (Ctx *)h;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  std::string err;
  int rc = run_batch(g, nb, lens, kPathProbs, (uint8_t *)data, probs, nullptr, nullptr, nullptr, nullptr, token, &err);
  if (rc != 0) set_err(err);
  return rc;
}

// lmfs_cuda_tables writes the whole frequency table (256 uint32) of every
// position of nb blocks to tables[256*(offset+t)].
int lmfs_cuda_tables(void *h, int nb, const uint8_t *data, const int64_t *lens, uint32_t *tables, int64_t token) {
  Ctx *g = (Ctx *)h;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  std::string err;
  int rc = run_batch(g, nb, lens, kTables, (uint8_t *)data, nullptr, tables, nullptr, nullptr, nullptr, token, &err);
  if (rc != 0) set_err(err);
  return rc;
}

// lmfs_cuda_decode decodes nb blocks of codec lm: payload i is the coder
// stream at pay[payoff[i]..payoff[i+1]), block i has lens[i] bytes, written
// to out at the prefix sum of lens. bad[i] is -1 for a block whose stream
// was consumed exactly as a valid one, else the position at which it went
// wrong (the block is corrupt). Returns 0, -1 on error, -2 if cancelled.
int lmfs_cuda_decode(void *h, int nb, const uint8_t *pay, const int64_t *payoff, const int64_t *lens, uint8_t *out, int32_t *bad,
                     int64_t token) {
  Ctx *g = (Ctx *)h;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  std::string err;
  int rc = run_batch(g, nb, lens, kDecode, out, nullptr, nullptr, pay, payoff, bad, token, &err);
  if (rc != 0) set_err(err);
  return rc;
}

// lmfs_cuda_streams_open starts n cold streams for stepwise decoding
// (predictor.ByteStreams): NULL on error.
void *lmfs_cuda_streams_open(void *h, int n) {
  Ctx *g = (Ctx *)h;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  std::string err;
  Streams *s = new (std::nothrow) Streams;
  if (!s || n < 1) {
    set_err(s ? "streams: need at least one" : "out of host memory");
    delete s;
    return nullptr;
  }
  s->g = g;
  s->n = n;
  std::vector<int32_t> all(n);
  for (int i = 0; i < n; i++) all[i] = i;
  bool ok = alloc_state(g, &s->bf, n, &s->S, &err, false) && s->bf.alloc(&s->didx, n, &err) && s->bf.alloc(&s->dsyms, n, &err) &&
            s->bf.alloc(&s->dtables, (size_t)n * 256, &err) && h2d(g, s->didx, all.data(), n * sizeof(int32_t), &err);
  if (ok && g->host.arch == 3) ok = s->bf.alloc(&s->dfeats, n, &err);
#ifndef LMFS_EMU
  if (ok && cudaMallocHost((void **)&s->pinned, (size_t)n * 256 * sizeof(uint32_t)) != cudaSuccess) {
    cudaGetLastError();
    s->pinned = nullptr;  // copy through pageable memory instead
  }
#endif
  if (ok) {
    LAUNCH(reset_kernel, (int64_t)n * g->host.NL * g->host.H, s->S, g->host.NL, g->host.H, s->didx, n);
    ok = step(g, s->S, s->didx, n, true, &err) && sync(g, &err);
  }
  if (!ok) {
    set_err(err);
    delete s;
    return nullptr;
  }
  return s;
}

// lmfs_cuda_streams_predict writes the table of the next byte of streams
// ids[0..k-1] to tables[256*i].
int lmfs_cuda_streams_predict(void *sp, int k, const int32_t *ids, uint32_t *tables) {
  Streams *s = (Streams *)sp;
  Ctx *g = s->g;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  std::string err;
  if (k < 0 || k > s->n) { set_err("streams: bad count"); return -1; }
  for (int i = 0; i < k; i++)
    if (ids[i] < 0 || ids[i] >= s->n) { set_err("streams: id out of range"); return -1; }
  if (k == 0) return 0;
  DecState D{};
  bool raw = false, pre = is_prefix(ids, k);
  bool ok = h2d(g, s->didx, ids, k * sizeof(int32_t), &err) && head(g, s->S, s->didx, k, pre, &raw, &err);
  if (ok) {
    ok = freq(g, s->S, s->didx, k, (int)kTables, 0, nullptr, nullptr, nullptr, s->dtables, D, raw, &err) && tables_out(s, tables, k, &err);
  }
  if (!ok) { set_err(err); return -1; }
  return 0;
}

// stream_feats checks that feats is given exactly for an lstm2 model and
// copies it to the GPU: the match feature of each pushed byte (the feature
// after it, SPEC.md "Match model"), which the caller computes from the
// block's bytes (predictor/lm's Matcher).
bool stream_feats(Streams *s, int k, const uint16_t *feats, std::string *err) {
  if ((s->dfeats != nullptr) != (feats != nullptr)) {
    *err = s->dfeats ? "streams: an lstm2 model needs the match feature of every pushed byte" : "streams: match features given to an lstm1 model";
    return false;
  }
  return !feats || h2d(s->g, s->dfeats, feats, k * sizeof(uint16_t), err);
}

// lmfs_cuda_streams_push advances streams ids[0..k-1] by syms[i] (and, for
// lstm2, the match features feats[i]; NULL for lstm1).
int lmfs_cuda_streams_push(void *sp, int k, const int32_t *ids, const uint8_t *syms, const uint16_t *feats) {
  Streams *s = (Streams *)sp;
  Ctx *g = s->g;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  std::string err;
  if (k < 0 || k > s->n) { set_err("streams: bad count"); return -1; }
  for (int i = 0; i < k; i++)
    if (ids[i] < 0 || ids[i] >= s->n) { set_err("streams: id out of range"); return -1; }
  if (k == 0) return 0;
  bool ok = h2d(g, s->didx, ids, k * sizeof(int32_t), &err) && h2d(g, s->dsyms, syms, k, &err) && stream_feats(s, k, feats, &err);
  if (ok) {
    LAUNCH(set_input_kernel, k, s->S, s->didx, s->dsyms, s->dfeats, k);
    ok = launched(g, &err) && step(g, s->S, s->didx, k, is_prefix(ids, k), &err) && sync(g, &err);
  }
  if (!ok) { set_err(err); return -1; }
  return 0;
}

// lmfs_cuda_streams_push_predict advances streams ids[0..k-1] by syms[i]
// (if syms is not NULL; for lstm2 with the match features feats[i]) and
// then writes the table of their next byte to tables[256*i]: one round trip
// per decoded byte.
int lmfs_cuda_streams_push_predict(void *sp, int k, const int32_t *ids, const uint8_t *syms, const uint16_t *feats, uint32_t *tables) {
  Streams *s = (Streams *)sp;
  Ctx *g = s->g;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  std::string err;
  if (k < 0 || k > s->n) { set_err("streams: bad count"); return -1; }
  for (int i = 0; i < k; i++)
    if (ids[i] < 0 || ids[i] >= s->n) { set_err("streams: id out of range"); return -1; }
  if (k == 0) return 0;
  DecState D{};
  bool raw = false, pre = is_prefix(ids, k);
  bool ok = h2d(g, s->didx, ids, k * sizeof(int32_t), &err);
  if (ok && syms) {
    ok = h2d(g, s->dsyms, syms, k, &err) && stream_feats(s, k, feats, &err);
    if (ok) {
      LAUNCH(set_input_kernel, k, s->S, s->didx, s->dsyms, s->dfeats, k);
      ok = launched(g, &err) && step(g, s->S, s->didx, k, pre, &err);
    }
  }
  ok = ok && head(g, s->S, s->didx, k, pre, &raw, &err) &&
       freq(g, s->S, s->didx, k, (int)kTables, 0, nullptr, nullptr, nullptr, s->dtables, D, raw, &err) && tables_out(s, tables, k, &err);
  if (!ok) { set_err(err); return -1; }
  return 0;
}

// lmfs_cuda_streams_free releases streams.
void lmfs_cuda_streams_free(void *sp) {
  Streams *s = (Streams *)sp;
  if (!s) return;
#ifndef LMFS_EMU
  std::lock_guard<std::mutex> l(s->g->mu);
  cudaSetDevice(s->g->device);
#endif
  delete s;
}

}  // extern "C"

#include "cm.cu"
