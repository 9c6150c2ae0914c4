// cm.cu: the lm+cm codecs on the GPU, one block per thread (for id 7, where a
// call's blocks fit on the GPU at once, one per warp), bit for bit the
// Go reference: predictor/cm (the context-mixing bit model), the mixing stage
// of lm+cm id 7 or id 6 (predictor/lmmix's Mixer7 and Mixer, SPEC.md there) or of lm+cm.1 id 5
// (coder/lmcm.go: predictor/mix's mixer and APM), chosen per call, and the
// binary arithmetic coder of coder/arith.go, encoder and decoder. Every
// number that shapes a probability is an integer computed in the Go code's
// order; the Go code's operator precedence (<< and >> bind tighter than + and
// - in Go, looser in C) is spelled out with parentheses here.
//
// Included at the end of lstm1.cu (same library, same emulation build: under
// -DLMFS_EMU every kernel runs as a loop over its threads on the CPU).
//
// Entry points (C ABI, loaded by predictor/gpu):
//   lmfs_cuda_lmcm_encode: the LM scores every position (lstm1.cu's path
//       probabilities, kept on the GPU), and a kernel runs cm, the mixer and
//       the arithmetic encoder over chunks of positions of every block, on a
//       second CUDA stream so that it overlaps the LM's next chunk; only the
//       payloads (and one sample block's LM probabilities) come back.
//   lmfs_cuda_lmcm_decode: per byte position, the LM step, the frequency
//       tables (made cumulative on the GPU), then a kernel that decodes the 8
//       bits of every block with cm, the mixer and the decoder and feeds the
//       byte back to the LM: no round trip to the host per byte.
//   lmfs_cuda_lmcm_block_bytes: GPU memory one block in flight needs.
//
// Per block, the GPU holds cm's tables (16 bytes per hash slot, 2^params
// slots, plus about 700 KiB of fixed tables and 4 bytes per match-table
// entry) and the small state of the coder (CMState).

// TAB reads a read-only table entry through the read-only data cache.
#ifdef LMFS_EMU
#define TAB(x) (x)
#else
#define TAB(x) __ldg(&(x))
#endif

namespace {

// ---- constants of predictor/cm and coder/lmcm.go (changing any changes the coded bits) ----

constexpr int kCMHashed = 5;          // orders 2, 3, 4, 6 and word
constexpr int kCMInputs = 9;          // 2 direct + 5 hashed + match + bias
constexpr int kCMRow = 12;            // weights per set in memory: 9 padded to 48 bytes (16-byte loads)
constexpr int kCMWeightSets = 256 * 8 * 3;
constexpr int kCMApmBins = 33;
constexpr int kCMMinSlotsLog = 10, kCMMaxSlotsLog = 24;
constexpr int kLMCMSets = 8 * 4;      // lm+cm (id 5): bit position x LM-confidence bucket
constexpr int kLMCMRateShift = 11;
constexpr int kLMCMAPMRate = 7;
constexpr int kLMCMAPMCtx = 256 * 4;

// CMTabs holds the read-only tables of cm and mix (built on the host from
// the same integer code as the Go packages').
struct CMTabs {
  int32_t squash[4096];    // cm: squash[d+2048]
  int32_t stretch[4096];   // cm: stretch[p12]
  int32_t msquash[4096];   // mix: squash[d+2048]
  int32_t mstretch[4096];  // mix: stretch[p12]
  uint8_t next[256][2];
  uint8_t prio[256];
  int32_t smRate[1024];
  uint32_t smInit[256];    // smInitStates
  uint16_t apmRow[kCMApmBins];
  int32_t mixApmRow[33];   // mix.NewAPM's starting row
};

// The lm+cm mixing stage of codec id 6 (predictor/lmmix, SPEC.md there): the LM's stretched
// probability, an APM of it and two state maps keyed by it are inputs of
// three mixers next to cm's nine inputs and cm's final probability; a second
// layer mixes the three; two APMs refine the result. Its constants:
namespace mix6 {
constexpr int nIn = 15, nMix = 3, sets2 = 3 * 4 * 6 * 8, nBins = 33, lmQ = 16;
constexpr int64_t rate0 = 24, rate1 = 12, rate2 = 4;
constexpr int rateBits = 1 << 15;
constexpr int64_t skipErr = 24;
constexpr int apmRate = 7, smRate = 6, advShift = 5;
constexpr int32_t advT = 4096;
constexpr int inLM = 0, inCM = 1, inCMP = 10, inLMA = 11, inSM = 12, inSMM = 14;
constexpr int kRow = 16;  // weights per set in memory: nIn padded to 64 bytes
// byte offsets in the mixer area
constexpr int64_t oW = 0;                                    // int32[nMix x 256 x kRow]
constexpr int64_t oW2 = oW + (int64_t)nMix * 256 * kRow * 4;  // int32[sets2 x nMix]
constexpr int64_t oAL = oW2 + (int64_t)sets2 * nMix * 4;     // uint16[256 x 33]: the LM's APM
constexpr int64_t oA1 = oAL + 256 * nBins * 2;               // uint16[256 x 33]
constexpr int64_t oA2 = oA1 + 256 * nBins * 2;               // uint16[lmQ x 8 x 33]
constexpr int64_t oSM = oA2 + (int64_t)lmQ * 8 * nBins * 2;  // uint16[2][lmQ x 256], then uint16[lmQ x 32] (match state)
constexpr int64_t bytes = oSM + 2 * lmQ * 256 * 2 + lmQ * 32 * 2;
}  // namespace mix6

// The mixing stage of codec id 5 (coder/lmcm.go): byte offsets in the mixer area.
namespace mix5 {
constexpr int64_t oW = 0;                                // int32[64] (2 inputs x 32 sets)
constexpr int64_t oAPM = 64 * 4;                         // int32[1024 x 33]
constexpr int64_t bytes = oAPM + (int64_t)kLMCMAPMCtx * 33 * 4;
}  // namespace mix5

// The mixing stage of codec id 7 (predictor/lmmix's Mixer7, SPEC.md there): id 6's with nine
// more inputs from contexts of its own, each a bit history in a per-block table of cm's kind
// (the "context table", after cm's hash table in the block's region).
namespace mix7 {
constexpr int nCx = 9, nIn = 24, kRow = 24;
// Lmcm7State is the stage's small state between launches (in the mixer area).
struct Lmcm7State {
  uint32_t word0, word1, word2, mask;  // mask: the context table's slots - 1
  int64_t lineStart, prevLine;
  uint32_t h[nCx];
  uint32_t slot[nCx];
};
// byte offsets in the mixer area
constexpr int64_t oW = 0;                                                // int32[nMix x 256 x kRow]
constexpr int64_t oW2 = oW + (int64_t)mix6::nMix * 256 * kRow * 4;         // int32[sets2 x nMix]
constexpr int64_t oAL = oW2 + (int64_t)mix6::sets2 * mix6::nMix * 4;       // uint16[256 x 33]
constexpr int64_t oA1 = oAL + 256 * mix6::nBins * 2;                     // uint16[256 x 33]
constexpr int64_t oA2 = oA1 + 256 * mix6::nBins * 2;                     // uint16[lmQ x 8 x 33]
constexpr int64_t oSM = oA2 + (int64_t)mix6::lmQ * 8 * mix6::nBins * 2;  // as id 6's
constexpr int64_t oCSM = oSM + 2 * mix6::lmQ * 256 * 2 + mix6::lmQ * 32 * 2;  // uint32[nCx x 256]
constexpr int64_t oIND = oCSM + (int64_t)nCx * 256 * 4;                  // uint16[256]
constexpr int64_t oIND2 = oIND + 256 * 2;                                // uint16[4096]
constexpr int64_t oST = oIND2 + 4096 * 2;                                // Lmcm7State
constexpr int64_t bytes = oST + (int64_t)sizeof(Lmcm7State);
static_assert(oCSM % 16 == 0 && oST % 16 == 0, "mix7 tables stay aligned");
}  // namespace mix7

// Lay6 and Lay7 say where ids 6 and 7 keep the tables they share (id 6's)
// in a block's mixer memory, and their mixers' inputs and row widths, for
// the code the two stages share (lmcm6_inputs, lmcm6_mix, lmcm6_train).
struct Lay6 {
  static constexpr int nIn = mix6::nIn, kRow = mix6::kRow;
  static constexpr int64_t oW = mix6::oW, oW2 = mix6::oW2, oAL = mix6::oAL, oA1 = mix6::oA1, oA2 = mix6::oA2, oSM = mix6::oSM;
};
struct Lay7 {
  static constexpr int nIn = mix7::nIn, kRow = mix7::kRow;
  static constexpr int64_t oW = mix7::oW, oW2 = mix7::oW2, oAL = mix7::oAL, oA1 = mix7::oA1, oA2 = mix7::oA2, oSM = mix7::oSM;
};

// lmcm7_slots_log is the log2 of the id 7 context table's 16-byte slots for
// a block of n bytes: the smallest lg >= 10 with 2^lg >= (9n) >> 2, at most 22.
__host__ __device__ __forceinline__ int lmcm7_slots_log(int64_t n) {
  int lg = 10;
  while (((int64_t)1 << lg) < ((n * 9) >> 2) && lg < 22) lg++;
  return lg;
}

constexpr int64_t kMix56 = mix5::bytes > mix6::bytes ? mix5::bytes : mix6::bytes;
constexpr int64_t kMixBytes = ((kMix56 > mix7::bytes ? kMix56 : mix7::bytes) + 15) & ~(int64_t)15;

// Byte offsets of a block's tables inside its region (16-byte aligned).
constexpr int64_t kOffO1 = 0;                                          // uint32[65536]
constexpr int64_t kOffW = kOffO1 + 65536 * 4;                           // int32[weightSets x kCMRow]
constexpr int64_t kOffMix = kOffW + (int64_t)kCMWeightSets * kCMRow * 4;  // the mixing stage's tables
constexpr int64_t kOffAPM = kOffMix + kMixBytes;                       // uint16[256*33]
constexpr int64_t kOffSM = kOffAPM + 256 * kCMApmBins * 2;              // uint32[5][256]
constexpr int64_t kOffO0 = kOffSM + kCMHashed * 256 * 4;               // uint32[256]
constexpr int64_t kOffMSM = kOffO0 + 256 * 4;                          // uint32[128]
constexpr int64_t kOffFW = kOffMSM + 128 * 4;                          // int32[256]
constexpr int64_t kOffMT = kOffFW + 256 * 4;                           // int32[ms]
constexpr int64_t kFixedBytes = kOffMT;
static_assert(kOffMT % 16 == 0, "hash slots must stay 16-byte aligned");
static_assert(kOffMix % 64 == 0, "id 6 weight rows must start on 64-byte lines");

// cm_match_size is the match table's entries for a block of n bytes.
__host__ __device__ __forceinline__ int64_t cm_match_size(int64_t n) {
  int64_t ms = 1 << 10;
  while (ms < n && ms < (1 << 22)) ms *= 2;
  return ms;
}

// cm_region_bytes is the GPU memory of one block's tables.
int64_t cm_region_bytes(int64_t n, int lg) {
  int64_t b = kFixedBytes + 4 * cm_match_size(n) + ((int64_t)16 << lg);
  return (b + 255) & ~(int64_t)255;
}

// CMState is a block's small state between launches.
struct CMState {
  uint32_t c0, c4, c8, word;
  uint32_t h[kCMHashed];
  uint32_t slot[kCMHashed];  // byte offset of each hashed context's slot in ht
  uint32_t mask, mmask;
  int32_t bits, mptr, mlen, nbits;
  int32_t mixn;    // id 6: bits the mixer has been trained on
  int32_t eL, eC;  // id 6: recent absolute errors of the LM and cm
  int32_t miss;    // id 6: bits of this byte the LM gave a probability below 1/2
  int64_t n;       // bytes coded so far (len(buf))
  // arithmetic coder
  uint32_t x1, x2, x;
  int64_t io;      // encoder: bytes written; decoder: bytes read (Decoder.pos)
  int32_t bad;     // -1, or the position where the block went wrong
  int32_t pad;
};

// CMBlocks describes the blocks of a call, indexed by stream slot (the
// LM's streams, blocks in decreasing length order).
struct CMBlocks {
  int rule;               // 5, 6 or 7: the mixing stage
  const CMTabs *T;
  CMState *st;            // [nb], by block
  uint8_t *region;        // cm tables
  const int64_t *roff;    // [nb] region offset
  const int32_t *lg;      // [nb] log2 slots by block
  uint8_t *data;          // block bytes (encode: input; decode: output)
  const int64_t *off;     // [nb+1] data offsets
  const int64_t *len;     // [nb]
  uint8_t *io;            // encode: output streams; decode: input streams
  const int64_t *ioS, *ioE;  // [nb] each stream's bytes in io
};

__device__ __forceinline__ uint32_t cm_hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// One block's working view: its state in registers, its tables in memory.
struct CMCtx {
  CMState s;
  const CMTabs *T;
  uint8_t *ht;
  uint32_t *o1, *sm, *o0, *msm;
  int32_t *w, *fw, *mt;
  uint8_t *mix;  // the mixing stage's tables
  uint16_t *apm;
  const uint8_t *buf;
  // predict's results, used by train
  int32_t x[kCMInputs];
  uint32_t cp[kCMHashed];
  uint8_t st[kCMHashed];
  int32_t o1i, mbit, mcx, wsel, mp, sqmp, fsel, fdot, pmix, apmIdx, pr;
  // lm+cm mixing stage, id 5
  int32_t mx[2], mset, mpr, aidx;
  // id 6
  int32_t x6[mix6::nIn];
  int32_t sel[mix6::nMix], dot[mix6::nMix], pm[mix6::nMix];
  int32_t sel2, d2, p2, iL, is[2], iM, i1, i2, pL, pC;
  // id 7 (with id 6's fields above)
  uint8_t *ht7;  // the context table
  int32_t x7[mix7::nIn];
  uint32_t cp7[mix7::nCx];
  uint8_t st7[mix7::nCx];
};

__device__ __forceinline__ void cm_view(CMCtx &c, const CMBlocks &B, int b) {
  c.T = B.T;
  uint8_t *r = B.region + B.roff[b];
  c.o1 = (uint32_t *)(r + kOffO1);
  c.w = (int32_t *)(r + kOffW);
  c.mix = r + kOffMix;
  c.apm = (uint16_t *)(r + kOffAPM);
  c.sm = (uint32_t *)(r + kOffSM);
  c.o0 = (uint32_t *)(r + kOffO0);
  c.msm = (uint32_t *)(r + kOffMSM);
  c.fw = (int32_t *)(r + kOffFW);
  c.mt = (int32_t *)(r + kOffMT);
  c.ht = r + kOffMT + 4 * (int64_t)cm_match_size(B.len[b]);
  c.ht7 = c.ht + ((int64_t)16 << B.lg[b]);  // id 7 only: its region holds the context table there
  c.buf = B.data + B.off[b];
}

__device__ __forceinline__ int32_t cm_squash(const CMTabs *T, int32_t d) {
  if (d > 2047) d = 2047;
  if (d < -2047) d = -2047;
  return TAB(T->squash[(d + 2048) & 4095]);
}

__device__ __forceinline__ int32_t cm_clampSt(int32_t d) { return d > 2047 ? 2047 : (d < -2047 ? -2047 : d); }

// slots_find is cm.Slots.Find on table t (mask+1 slots of 16 bytes) for N
// hashes in turn (hs[j] + k), the byte offsets of their slots in out (cm's
// Model.find and id 7's contexts): for each, the slot at hash32(h) & mask,
// ^1 or ^2 whose checksum byte is hash32(h) >> 24, or else the one of them
// whose first state has the lowest replacement priority (the first such),
// cleared and given the checksum. Every candidate's checksum and first
// state is loaded before any slot is replaced; a slot an earlier hash
// replaced is then taken as it is after the replacement (its checksum,
// state 0), so the slots found, and the table after the stores, are those
// of the hashes found one after another.
template <int N>
__device__ __forceinline__ void slots_find(const CMTabs *T, uint8_t *t, uint32_t mask, const uint32_t *hs, uint32_t k,
                                           uint32_t *out) {
  uint32_t b0[N];
  uint8_t ck[N];
  uint32_t v[N][3];  // checksum | first state << 8
#pragma unroll
  for (int j = 0; j < N; j++) {
    uint32_t h = cm_hash32(hs[j] + k);
    ck[j] = (uint8_t)(h >> 24);
    b0[j] = (h & mask) * 16;
  }
#pragma unroll
  for (int j = 0; j < N; j++) {
#pragma unroll
    for (int q = 0; q < 3; q++) v[j][q] = *(const uint16_t *)(t + (b0[j] ^ (16u * q)));  // slots are 16-byte aligned
  }
  bool rep[N];
#pragma unroll
  for (int j = 0; j < N; j++) {
    uint32_t bq[3] = {b0[j], b0[j] ^ 16u, b0[j] ^ 32u};
#pragma unroll
    for (int i = 0; i < j; i++) {
#pragma unroll
      for (int q = 0; q < 3; q++)
        if (rep[i] && bq[q] == out[i]) v[j][q] = ck[i];
    }
    rep[j] = false;
    if ((v[j][0] & 0xFF) == ck[j]) out[j] = bq[0];
    else if ((v[j][1] & 0xFF) == ck[j]) out[j] = bq[1];
    else if ((v[j][2] & 0xFF) == ck[j]) out[j] = bq[2];
    else {
      int32_t pr[3];
#pragma unroll
      for (int q = 0; q < 3; q++) {
        pr[q] = TAB(T->prio[v[j][q] >> 8]);
      }
      int qb = 0;
      if (pr[1] < pr[qb]) qb = 1;
      if (pr[2] < pr[qb]) qb = 2;
      out[j] = bq[qb];
      rep[j] = true;
    }
  }
#pragma unroll
  for (int j = 0; j < N; j++) {
    if (!rep[j]) continue;
    uint8_t *p = t + out[j];
#ifdef LMFS_EMU
    std::memset(p, 0, 16);
#else
    *(uint4 *)p = make_uint4(0, 0, 0, 0);
#endif
    *p = ck[j];
  }
}

__device__ __forceinline__ void cm_byteUpdate(CMCtx &c) {
  uint32_t c4 = c.s.c4, c8 = c.s.c8;
  c.s.h[0] = (c4 & 0xFFFFu) * 0x2F0B4C75u + 0x1000000u;
  c.s.h[1] = (c4 & 0xFFFFFFu) * 0x7A3F5E93u + 0x3000000u;
  c.s.h[2] = c4 * 0x3C6EF372u + 0x5000000u;
  c.s.h[3] = cm_hash32(c4 * 0x9E3779B1u + 0x7000000u) + (c8 & 0xFFFFu) * 0x6F4F2A35u;
  c.s.h[4] = cm_hash32(c.s.word * 0x2545F491u) + 0x9000000u;
}

// cm_wordNext is the word hash after byte ch (cm's word and id 7's word0);
// *letter says whether ch continues a word.
__device__ __forceinline__ uint32_t cm_wordNext(uint32_t word, uint32_t ch, bool *letter) {
  uint32_t lc = ch;
  if (lc >= 'A' && lc <= 'Z') lc += 'a' - 'A';
  *letter = (lc >= 'a' && lc <= 'z') || lc >= 0x80;
  return *letter ? (word + lc + 1) * 0x3D4D51CBu : 0;
}

// cm_nibbleUpdate is Model.nibbleUpdate: the hashed contexts' slots (Model.find).
__device__ __forceinline__ void cm_nibbleUpdate(CMCtx &c) {
  slots_find<kCMHashed>(c.T, c.ht, c.s.mask, c.s.h, c.s.c0 * 0x1D8E4E27u, c.s.slot);
}

__device__ __forceinline__ int cm_matchBucket(int l) {
  if (l < 16) return l;
  if (l < 48) return 16 + (l - 16) / 4;
  if (l < 176) return 24 + (l - 48) / 16;
  int v = 32 + (l - 176) / 64;
  return v < 63 ? v : 63;
}

// load_row and store_row move a weight row of N int32 (N a multiple of 4,
// 16-byte aligned) in 16-byte accesses.
template <int N>
__device__ __forceinline__ void load_row(int32_t (&w)[N], const int32_t *p) {
#ifdef LMFS_EMU
  for (int i = 0; i < N; i++) w[i] = p[i];
#else
#pragma unroll
  for (int q = 0; q < N / 4; q++) {
    int4 v = ((const int4 *)p)[q];
    w[4 * q] = v.x, w[4 * q + 1] = v.y, w[4 * q + 2] = v.z, w[4 * q + 3] = v.w;
  }
#endif
}
template <int N>
__device__ __forceinline__ void store_row(int32_t *p, const int32_t (&w)[N]) {
#ifdef LMFS_EMU
  for (int i = 0; i < N; i++) p[i] = w[i];
#else
#pragma unroll
  for (int q = 0; q < N / 4; q++) ((int4 *)p)[q] = make_int4(w[4 * q], w[4 * q + 1], w[4 * q + 2], w[4 * q + 3]);
#endif
}

// cm_final is the end of Model.predict: the final mixer's P pmix (12 bits)
// averaged with the APM's entries a0, a1 interpolated at weight wt (of 128).
__device__ __forceinline__ int32_t cm_final(int32_t pmix, int32_t a0, int32_t a1, int32_t wt) {
  int32_t pr = (pmix + ((a0 * (128 - wt) + a1 * wt) >> 11) + 1) >> 1;
  return pr < 1 ? 1 : (pr > 4095 ? 4095 : pr);
}

// cm_predict is Model.predict: P(1) of the next bit, 12 bits, in c.pr.
__device__ __forceinline__ void cm_predict(CMCtx &c) {
  const CMTabs *T = c.T;
  uint32_t node;
  int bits = c.s.bits;
  if (bits < 4) node = c.s.c0;
  else node = (1u << (bits - 4)) | (c.s.c0 & ((1u << (bits - 4)) - 1));
  c.x[0] = TAB(T->stretch[c.o0[c.s.c0 & 0xFF] >> 20]);
  c.o1i = (int32_t)(((c.s.c4 & 0xFF) << 8) | (c.s.c0 & 0xFF));
  c.x[1] = TAB(T->stretch[c.o1[c.o1i] >> 20]);
#pragma unroll
  for (int i = 0; i < kCMHashed; i++) {
    uint32_t cp = c.s.slot[i] + node;
    c.cp[i] = cp;
    uint8_t st = c.ht[cp];
    c.st[i] = st;
    c.x[2 + i] = TAB(T->stretch[c.sm[i * 256 + st] >> 20]);
  }
  if (c.s.mlen > 0) {
    uint8_t pb = c.buf[c.s.mptr];
    c.mbit = (pb >> (7 - bits)) & 1;
    c.mcx = cm_matchBucket(c.s.mlen) * 2 + c.mbit;
    c.x[7] = TAB(T->stretch[((int32_t)(c.msm[c.mcx & 127] >> 20)) & 4095]);
  } else {
    c.mcx = 0;
    c.x[7] = 0;
  }
  c.x[8] = 256;
  int ms = 0;
  if (c.s.mlen > 0) ms = 1 + c.mbit;
  c.wsel = ((int32_t)(((c.s.c4 & 0xFF) << 3) | (uint32_t)bits) * 3 + ms) * kCMRow;
  int32_t w[kCMRow];
  load_row(w, c.w + c.wsel);
  int64_t dot = 0;
#pragma unroll
  for (int i = 0; i < kCMInputs; i++) dot += (int64_t)c.x[i] * (int64_t)w[i];
  c.mp = cm_clampSt((int32_t)(dot >> 16));
  c.sqmp = cm_squash(T, c.mp);  // for train
  c.fsel = (int32_t)(c.s.c0 & 0xFF);
  c.fdot = cm_clampSt((int32_t)(((int64_t)c.mp * (int64_t)c.fw[c.fsel & 0xFF]) >> 16));
  int32_t pr = cm_squash(T, c.fdot);
  c.pmix = pr;
  int32_t s = c.fdot + 2048;
  int32_t wt = s & 127;
  int32_t i = (int32_t)(c.s.c0 & 0xFF) * kCMApmBins + (s >> 7);
  c.apmIdx = i + (wt >> 6);
  c.pr = cm_final(pr, (int32_t)c.apm[i], (int32_t)c.apm[i + 1], wt);
}

// cm_ctrNext is ctrUpdate's new value of the counter t, whose adaptation
// rate is rate (smRate[t & 1023]).
__device__ __forceinline__ uint32_t cm_ctrNext(uint32_t t, int y, uint32_t limit, int32_t rate) {
  uint32_t n = t & 1023;
  int32_t p = (int32_t)(t >> 10);
  p += ((((int32_t)y << 22) - p) >> 7) * rate >> 9;
  if (n < limit) n++;
  return ((uint32_t)p << 10) | n;
}

// cm_train is Model.train. Every value it trains is loaded before the first
// store: the tables are distinct, but the compiler cannot tell them apart
// and keeps the program's order, so a store between two loads would make
// each load wait for the one before it (a memory latency each, most of the
// kernel's time when they alternated).
__device__ __forceinline__ void cm_train(CMCtx &c, int y) {
  const CMTabs *T = c.T;
  uint32_t *p0 = &c.o0[c.s.c0 & 0xFF], *p1 = &c.o1[c.o1i & 0xFFFF], *pm = &c.msm[c.mcx & 127];
  int32_t *pf = &c.fw[c.fsel & 0xFF];
  uint16_t *pa = &c.apm[c.apmIdx];
  bool match = c.s.mlen > 0;
  int64_t lr = 7;
  if (c.s.nbits < (1 << 14)) lr = 20;
  else if (c.s.nbits < (1 << 16)) lr = 12;
  c.s.nbits++;
  int64_t err = (int64_t)(y << 12) - (int64_t)c.sqmp;
  bool trainW = err > 24 || err < -24;
  // loads
  uint32_t t0 = *p0, t1 = *p1, tm = match ? *pm : 0;
  uint32_t smv[kCMHashed];
  uint8_t nx[kCMHashed];
#pragma unroll
  for (int i = 0; i < kCMHashed; i++) {
    smv[i] = c.sm[i * 256 + c.st[i]];
    nx[i] = TAB(T->next[c.st[i]][y]);
  }
  int32_t w[kCMRow];
  if (trainW) load_row(w, c.w + c.wsel);
  int32_t fw = *pf;
  int32_t av = (int32_t)*pa;
  int32_t r0 = TAB(T->smRate[t0 & 1023]), r1 = TAB(T->smRate[t1 & 1023]), rm = match ? TAB(T->smRate[tm & 1023]) : 0;
  // stores
  *p0 = cm_ctrNext(t0, y, 60, r0);
  *p1 = cm_ctrNext(t1, y, 60, r1);
#pragma unroll
  for (int i = 0; i < kCMHashed; i++) {
    int32_t d = (((int32_t)y << 22) - (int32_t)(smv[i] >> 10)) >> 8;
    c.sm[i * 256 + c.st[i]] = smv[i] + ((uint32_t)d << 10);
    c.ht[c.cp[i]] = nx[i];
  }
  if (match) *pm = cm_ctrNext(tm, y, 1023, rm);
  if (trainW) {
    int64_t e = err * lr;
#pragma unroll
    for (int i = 0; i < kCMInputs; i++) w[i] += (int32_t)(((int64_t)c.x[i] * e + (1 << 13)) >> 14);
    store_row(c.w + c.wsel, w);
  }
  int64_t e = ((int64_t)(y << 12) - (int64_t)c.pmix) * lr;
  *pf = fw + (int32_t)(((int64_t)c.mp * e + (1 << 13)) >> 14);
  int32_t g = (y << 16) + (y << 7) - y - y;
  *pa = (uint16_t)(av + ((g - av) >> 7));
}

// cm_byteHistory is what Model.update does with the byte ch at its end
// before the hashes: the byte joins cm's history.
__device__ __forceinline__ void cm_byteHistory(CMState &s, uint32_t ch) {
  s.n++;
  s.c8 = (s.c8 << 8) | (s.c4 >> 24);
  s.c4 = (s.c4 << 8) | (ch & 0xFF);
  s.c0 = 1;
  s.bits = 0;
  bool letter;
  s.word = cm_wordNext(s.word, ch & 0xFF, &letter);
}

// cm_matchFind is matchUpdate up to its store: the match moves on, or one
// is looked up in the match table mt (buf holds the block's bytes so far).
// It returns the table entry that is to get the position s.n, or -1 (fewer
// than 8 bytes).
__device__ __forceinline__ int64_t cm_matchFind(CMState &s, const uint8_t *buf, const int32_t *mt) {
  int64_t n = s.n;
  if (s.mlen > 0) {
    s.mptr++;
    if (s.mlen < 65535) s.mlen++;
  }
  if (n < 8) return -1;
  uint32_t h = cm_hash32((s.c4 * 0x2F0B4C75u) ^ cm_hash32(s.c8 + 0x9E3779B9u)) & s.mmask;
  if (s.mlen == 0) {
    int64_t p = mt[h];
    if (p > 0 && p < n) {
      int l = 0;
      while (l < 255 && l < p && buf[p - 1 - l] == buf[n - 1 - l]) l++;
      if (l >= 8) {
        s.mptr = (int32_t)p;
        s.mlen = l;
      }
    }
  }
  return h;
}

// cm_advance is the rest of Model.Update after train: the bit joins the
// history; the byte, at its end, the buffer (buf[n] must already hold it).
__device__ __forceinline__ void cm_advance(CMCtx &c, int y) {
  c.s.c0 = (c.s.c0 << 1) | (uint32_t)y;
  c.s.bits++;
  if (c.s.mlen > 0 && c.mbit != y) c.s.mlen = 0;
  if (c.s.bits == 8) {
    cm_byteHistory(c.s, c.s.c0);
    cm_byteUpdate(c);
    int64_t h = cm_matchFind(c.s, c.buf, c.mt);
    if (h >= 0) c.mt[h] = (int32_t)c.s.n;
    cm_nibbleUpdate(c);
  } else if (c.s.bits == 4) {
    cm_nibbleUpdate(c);
  }
}

// ---- the lm+cm mixing stage (coder/lmcm.go, codec id 5) ----

__device__ __forceinline__ int32_t mix_stretch(const CMTabs *T, int32_t p12) {
  return TAB(T->mstretch[p12 < 0 ? 0 : (p12 > 4095 ? 4095 : p12)]);
}
__device__ __forceinline__ int32_t mix_squash(const CMTabs *T, int32_t d) {
  return TAB(T->msquash[(d < -2047 ? -2047 : (d > 2047 ? 2047 : d)) + 2048]);
}

// lmcm5_p is lmcmState.p: the mixed P(1) (16 bits) for bit k of the byte,
// whose bits so far put it in the bit-tree node starting at symbol lo, from
// the LM's probability pl and cm's (c.pr, 12 bits).
__device__ __forceinline__ int32_t lmcm5_p(CMCtx &c, int k, int lo, int32_t pl) {
  const CMTabs *T = c.T;
  const int32_t *mixw = (const int32_t *)(c.mix + mix5::oW), *mixapm = (const int32_t *)(c.mix + mix5::oAPM);
  int32_t in1 = c.pr << 4;
  int32_t st = mix_stretch(T, pl >> 4);
  if (st < 0) st = -st;
  int conf = 0;
  if (st >= 1536) conf = 3;
  else if (st >= 768) conf = 2;
  else if (st >= 256) conf = 1;
  // Mixer.P
  int set = (k * 4 + conf) * 2;
  c.mset = set;
  c.mx[0] = mix_stretch(T, pl >> 4);
  c.mx[1] = mix_stretch(T, in1 >> 4);
  int64_t dot = (int64_t)mixw[set] * c.mx[0] + (int64_t)mixw[set + 1] * c.mx[1];
  int64_t d16 = dot >> 16;
  d16 = d16 > 2047 ? 2047 : (d16 < -2047 ? -2047 : d16);
  c.mpr = mix_squash(T, (int32_t)d16);
  int32_t p = c.mpr << 4;
  // APM.Refine in context c0*4+conf
  int c0 = (1 << k) | (lo >> (8 - k));
  int cx = c0 * 4 + conf;
  int32_t s = mix_stretch(T, p >> 4) + 2048;
  int32_t alo = s >> 7, w = s & 127;
  c.aidx = cx * 33 + alo + (w >= 64 ? 1 : 0);
  int32_t r = (mixapm[cx * 33 + alo] * (128 - w) + mixapm[cx * 33 + alo + 1] * w) >> 7;
  r = r < 16 ? 16 : (r > 65520 ? 65520 : r);
  return (p + 3 * r) / 4;
}

// lmcm5_update is lmcmState.update's mixer and APM part (cm is trained by
// the caller).
__device__ __forceinline__ void lmcm5_update(CMCtx &c, int bit) {
  int32_t *mixw = (int32_t *)(c.mix + mix5::oW), *mixapm = (int32_t *)(c.mix + mix5::oAPM);
  int32_t err = (bit << 12) - c.mpr;
  mixw[c.mset] += (c.mx[0] * err) >> kLMCMRateShift;
  mixw[c.mset + 1] += (c.mx[1] * err) >> kLMCMRateShift;
  int32_t g = (bit << 16) + (bit << kLMCMAPMRate) - bit - bit;
  mixapm[c.aidx] += (g - mixapm[c.aidx]) >> kLMCMAPMRate;
}

// ---- the lm+cm mixing stage of codec id 6 (predictor/lmmix) ----

__device__ __forceinline__ int32_t mix6_clampSt(int64_t d) { return (int32_t)(d > 2047 ? 2047 : (d < -2047 ? -2047 : d)); }


// interp6 is lmmix's interp: the APM row value at stretch s+2048 and (in
// *idx) the point Update trains.
__device__ __forceinline__ int32_t interp6(const uint16_t *t, int row, int32_t s, int32_t *idx) {
  int32_t w = s & 127;
  int lo = row + (int)(s >> 7);
  *idx = lo + (int)(w >> 6);
  return ((int32_t)t[lo] * (128 - w) + (int32_t)t[lo + 1] * w) >> 7;
}

// lmcm6_inputs sets the inputs ids 6 and 7 share in x (the LM's stretched
// probability, cm's inputs and P, the LM's APM, the two state maps and the
// match state map), from the LM's probability pl and cm's state for the bit
// (after cm_predict). It returns the stretched pl and sets *lqOut to pl
// quantised for the state maps.
template <class L>
__device__ __forceinline__ int32_t lmcm6_inputs(CMCtx &c, int32_t pl, int32_t *x, int *lqOut) {
  using namespace mix6;
  const CMTabs *T = c.T;
  const uint16_t *AL = (const uint16_t *)(c.mix + L::oAL), *SM = (const uint16_t *)(c.mix + L::oSM);
  int c0 = (int)(c.s.c0 & 0xFF);
  int32_t stL = mix_stretch(T, pl >> 4);
  x[inLM] = stL;
#pragma unroll
  for (int i = 0; i < kCMInputs; i++) x[inCM + i] = c.x[i];
  x[inCMP] = mix_stretch(T, c.pr);
  int32_t q = interp6(AL, c0 * nBins, stL + 2048, &c.iL);
  x[inLMA] = mix_stretch(T, q >> 4);
  int lq = (int)((stL + 2048) >> 8);
#pragma unroll
  for (int j = 0; j < 2; j++) {
    c.is[j] = lq * 256 + c.st[j];
    x[inSM + j] = mix_stretch(T, (int32_t)SM[j * lmQ * 256 + c.is[j]] >> 4);
  }
  int mb = 0;
  if (c.s.mlen > 0) mb = (c.s.mlen < 15 ? c.s.mlen : 15) * 2 + c.mbit;
  c.iM = lq * 32 + mb;
  x[inSMM] = mix_stretch(T, (int32_t)SM[2 * lmQ * 256 + c.iM] >> 4);
  *lqOut = lq;
  return stL;
}

// mix6_sel2 is the second layer's weight set (times nMix) for a bit at
// position bits: from the LM's stretched probability stL, the recent errors
// eL and eC and the byte's misses so far.
__device__ __forceinline__ int mix6_sel2(int32_t stL, int32_t eL, int32_t eC, int32_t misses, int bits) {
  using namespace mix6;
  int32_t ast = stL < 0 ? -stL : stL;
  int cf = ast < 128 ? 0 : ast < 384 ? 1 : ast < 768 ? 2 : ast < 1280 ? 3 : ast < 1792 ? 4 : 5;
  int32_t dd = eL - eC;
  int adv = dd < -advT ? 0 : dd < 0 ? 1 : dd < advT ? 2 : 3;
  int miss = misses < 2 ? misses : 2;
  return (((miss * 4 + adv) * 6 + cf) * 8 + bits) * nMix;
}

// mix6_final is the stage's P(1) (16 bits) from the second layer's P p2
// (12 bits) and the two APMs' values q1, q2.
__device__ __forceinline__ int32_t mix6_final(int32_t p2, int32_t q1, int32_t q2) {
  int32_t p = (p2 * 32 + q1 + q2 + 2) >> 2;
  return p < 16 ? 16 : (p > 65520 ? 65520 : p);
}

// lmcm6_mix is the rest of Mixer.P and Mixer7.P: three mixers over the
// L::nIn inputs x, the second layer and the APMs; stL and lq as
// lmcm6_inputs gave them. It returns the mixed P(1) (16 bits).
template <class L>
__device__ __forceinline__ int32_t lmcm6_mix(CMCtx &c, int32_t pl, const int32_t *x, int32_t stL, int lq) {
  using namespace mix6;
  const CMTabs *T = c.T;
  const int32_t *W = (const int32_t *)(c.mix + L::oW), *W2 = (const int32_t *)(c.mix + L::oW2);
  const uint16_t *A1 = (const uint16_t *)(c.mix + L::oA1), *A2 = (const uint16_t *)(c.mix + L::oA2);
  int bits = c.s.bits;
  int c0 = (int)(c.s.c0 & 0xFF), c1 = (int)(c.s.c4 & 0xFF), c2 = (int)((c.s.c4 >> 8) & 0xFF);
  c.sel[0] = (0 * 256 + c2) * L::kRow;
  c.sel[1] = (1 * 256 + c0) * L::kRow;
  c.sel[2] = (2 * 256 + c1) * L::kRow;
#pragma unroll
  for (int k = 0; k < nMix; k++) {
    int32_t w[L::kRow];
    load_row(w, W + c.sel[k]);
    int64_t d = 0;
#pragma unroll
    for (int i = 0; i < L::nIn; i++) d += (int64_t)x[i] * (int64_t)w[i];
    c.dot[k] = mix6_clampSt(d >> 16);
    c.pm[k] = mix_squash(T, c.dot[k]);
  }
  if (bits == 0) c.s.miss = 0;
  c.sel2 = mix6_sel2(stL, c.s.eL, c.s.eC, c.s.miss, bits);
  const int32_t *w2 = W2 + c.sel2;
  int64_t d2 = (int64_t)c.dot[0] * w2[0] + (int64_t)c.dot[1] * w2[1] + (int64_t)c.dot[2] * w2[2];
  c.d2 = mix6_clampSt(d2 >> 16);
  c.p2 = mix_squash(T, c.d2);
  c.pL = pl >> 4;
  c.pC = c.pr;
  int32_t q1 = interp6(A1, c0 * nBins, c.d2 + 2048, &c.i1);
  int32_t q2 = interp6(A2, (lq * 8 + bits) * nBins, c.d2 + 2048, &c.i2);
  return mix6_final(c.p2, q1, q2);
}

// lmcm6_p is lmmix.Mixer.P: the mixed P(1) (16 bits) from the LM's
// probability pl and cm's state for the bit (after cm_predict).
__device__ __forceinline__ int32_t lmcm6_p(CMCtx &c, int32_t pl) {
  int lq;
  int32_t stL = lmcm6_inputs<Lay6>(c, pl, c.x6, &lq);
  return lmcm6_mix<Lay6>(c, pl, c.x6, stL, lq);
}

// apm_next is the value an APM or state-map entry v is trained to (rate r).
__device__ __forceinline__ uint16_t apm_next(int32_t v, int32_t y, int r) {
  int32_t g = (y << 16) + (y << r) - y - y;
  return (uint16_t)(v + ((g - v) >> r));
}

__device__ __forceinline__ int32_t abs32(int32_t v) { return v < 0 ? -v : v; }

// lmcm6_train is the training that Mixer.Update and Mixer7.Update share:
// the three mixers over the L::nIn inputs x, the second layer, the
// advantage and miss statistics, the APMs and the state maps. As in
// cm_train, every value is loaded before the first store (the entries are
// distinct).
template <class L>
__device__ __forceinline__ void lmcm6_train(CMCtx &c, const int32_t *x, int bit) {
  using namespace mix6;
  int32_t *W = (int32_t *)(c.mix + L::oW), *W2 = (int32_t *)(c.mix + L::oW2);
  uint16_t *AL = (uint16_t *)(c.mix + L::oAL), *A1 = (uint16_t *)(c.mix + L::oA1);
  uint16_t *A2 = (uint16_t *)(c.mix + L::oA2), *SM = (uint16_t *)(c.mix + L::oSM);
  int32_t y = bit & 1;
  int64_t lr = rate1;
  if (c.s.mixn < rateBits) lr = rate0;
  c.s.mixn++;
  // loads: the second layer's weights, the APMs' and state maps' entries;
  // then each mixer's weight row in turn (three rows at once would not fit
  // in the registers)
  int32_t *w2 = W2 + c.sel2;
  int32_t w2v[nMix];
#pragma unroll
  for (int i = 0; i < nMix; i++) w2v[i] = w2[i];
  uint16_t *pa[6] = {A1 + c.i1, A2 + c.i2, AL + c.iL, SM + c.is[0], SM + lmQ * 256 + c.is[1], SM + 2 * lmQ * 256 + c.iM};
  int32_t av[6];
#pragma unroll
  for (int i = 0; i < 6; i++) av[i] = (int32_t)*pa[i];
#pragma unroll
  for (int k = 0; k < nMix; k++) {
    int64_t err = (int64_t)((y << 12) - c.pm[k]);
    if (err <= skipErr && err >= -skipErr) continue;
    int64_t e = err * lr;
    int32_t w[L::kRow];
    load_row(w, W + c.sel[k]);
#pragma unroll
    for (int i = 0; i < L::nIn; i++) w[i] += (int32_t)(((int64_t)x[i] * e + (1 << 13)) >> 14);
    store_row(W + c.sel[k], w);
  }
  int64_t e = (int64_t)((y << 12) - c.p2) * rate2;
#pragma unroll
  for (int i = 0; i < nMix; i++) w2[i] = w2v[i] + (int32_t)(((int64_t)c.dot[i] * e + (1 << 13)) >> 14);
  if ((y == 1) != (c.pL >= 2048)) c.s.miss++;
  c.s.eL += ((abs32((y << 12) - c.pL) << 4) - c.s.eL) >> advShift;
  c.s.eC += ((abs32((y << 12) - c.pC) << 4) - c.s.eC) >> advShift;
#pragma unroll
  for (int i = 0; i < 6; i++) *pa[i] = apm_next(av[i], y, i < 3 ? apmRate : smRate);
}

// lmcm6_update is lmmix.Mixer.Update (cm is trained by the caller, after).
__device__ __forceinline__ void lmcm6_update(CMCtx &c, int bit) { lmcm6_train<Lay6>(c, c.x6, bit); }

// ---- the lm+cm mixing stage of codec id 7 (predictor/lmmix's Mixer7) ----

// lmcm7_hashes is Mixer7.byteUpdate: the contexts' hashes from the history
// (cm's c4, c8 and n = bytes coded, the stage's words, lines and tables).
__device__ __forceinline__ void lmcm7_hashes(CMCtx &c) {
  using namespace mix7;
  Lmcm7State *m = (Lmcm7State *)(c.mix + oST);
  const uint16_t *IND = (const uint16_t *)(c.mix + oIND), *IND2 = (const uint16_t *)(c.mix + oIND2);
  uint32_t c4 = c.s.c4, c8 = c.s.c8, c1 = c4 & 0xFF;
  int64_t pos = c.s.n;
  int64_t col = pos - m->lineStart;
  int64_t colc = col < 255 ? col : 255;
  uint32_t aboveC = 0, above = 0;
  if (m->prevLine >= 0 && m->prevLine + colc < m->lineStart) aboveC = (uint32_t)c.buf[m->prevLine + colc] + 256;
  if (m->prevLine >= 0 && m->prevLine + col < m->lineStart) above = (uint32_t)c.buf[m->prevLine + col] + 256;
  uint32_t c12 = 0;
  if (pos >= 12)
    c12 = ((uint32_t)c.buf[pos - 12] << 24) | ((uint32_t)c.buf[pos - 11] << 16) | ((uint32_t)c.buf[pos - 10] << 8) |
          (uint32_t)c.buf[pos - 9];
  uint32_t i2 = ((c4 & 0xFFFFu) * 0x9E3779B1u) >> 20;
  m->h[0] = cm_hash32(m->word0 * 0x2545F491u + cm_hash32(m->word1 + 0x1000193u)) + 0x0B000000u;  // word bigram
  m->h[1] = ((aboveC << 8) | (uint32_t)colc) * 0x6F4F2A35u + 0x0D000000u;                     // column
  m->h[2] = (c1 | ((uint32_t)IND[c1] << 8)) * 0x2F0B4C75u + 0x13000000u;                      // indirect
  m->h[3] = ((above << 8) | c1) * 0x7FEB352Du + 0x17000000u;                                   // above, byte -1
  m->h[4] = (c4 & 0xFF00FF00u) * 0x846CA68Bu + 0x19000000u;                                    // bytes -2, -4
  m->h[5] = cm_hash32(m->word1 * 0x2F0B4C75u + cm_hash32(m->word2 + 0x1B000000u)) + 0x1B000000u;  // words 1, 2
  m->h[6] = cm_hash32(m->word0 * 0x7A3F5E93u + cm_hash32(m->word2 + 0x1D000000u)) + 0x1D000000u;  // words 0, 2
  m->h[7] = cm_hash32(cm_hash32(c4 * 0x9E3779B1u + 0x1F000000u) + c8 * 0x6F4F2A35u) + c12 * 0x3C6EF372u;  // order 12
  m->h[8] = ((c4 & 0xFFFFu) | ((uint32_t)IND2[i2] << 16)) * 0x2545F491u + 0x21000000u;          // indirect, 2 bytes
}

// lmcm7_lookups is Mixer7.nibbleUpdate (c0 = cm's partial byte).
__device__ __forceinline__ void lmcm7_lookups(CMCtx &c) {
  using namespace mix7;
  Lmcm7State *m = (Lmcm7State *)(c.mix + oST);
  uint32_t h[nCx], slot[nCx];
#pragma unroll
  for (int j = 0; j < nCx; j++) h[j] = m->h[j];
  slots_find<nCx>(c.T, c.ht7, m->mask, h, c.s.c0 * 0x1D8E4E27u, slot);
#pragma unroll
  for (int j = 0; j < nCx; j++) m->slot[j] = slot[j];
}

// lmcm7_start is the end of Mixer7.Reset (the tables were set by
// cm_init_kernel): history, hashes and lookups at the block's start.
__device__ __forceinline__ void lmcm7_start(CMCtx &c, int64_t len) {
  using namespace mix7;
  Lmcm7State *m = (Lmcm7State *)(c.mix + oST);
  m->word0 = m->word1 = m->word2 = 0;
  m->mask = (1u << lmcm7_slots_log(len)) - 1;
  m->lineStart = 0;
  m->prevLine = -1;
  lmcm7_hashes(c);
  lmcm7_lookups(c);
}

// lmcm7_history is what Mixer7.Update does with the byte ch at its end to
// the stage's words and lines (n: bytes coded, ch included).
__device__ __forceinline__ void lmcm7_history(uint32_t &word0, uint32_t &word1, uint32_t &word2, int64_t &lineStart, int64_t &prevLine,
                                              uint32_t ch, int64_t n) {
  bool letter;
  uint32_t w0 = cm_wordNext(word0, ch, &letter);
  if (letter) {
    word0 = w0;
  } else if (word0 != 0) {
    word2 = word1;
    word1 = word0;
    word0 = 0;
  }
  if (ch == '\n') {
    prevLine = lineStart;
    lineStart = n;
  }
}

// lmcm7_advance is the rest of Mixer7.Update after training: called after
// cm_advance (cm's history then holds the bit, and at a byte's end the byte,
// which buf already holds).
__device__ __forceinline__ void lmcm7_advance(CMCtx &c) {
  using namespace mix7;
  if (c.s.bits == 4) {
    lmcm7_lookups(c);
    return;
  }
  if (c.s.bits != 0) return;
  Lmcm7State *m = (Lmcm7State *)(c.mix + oST);
  uint16_t *IND = (uint16_t *)(c.mix + oIND), *IND2 = (uint16_t *)(c.mix + oIND2);
  uint32_t ch = c.s.c4 & 0xFF, prev = c.s.c4 >> 8;  // prev: c4 before the byte (low 24 bits)
  uint32_t c1 = prev & 0xFF;
  IND[c1] = (uint16_t)((IND[c1] << 8) | ch);
  uint32_t i2 = ((prev & 0xFFFFu) * 0x9E3779B1u) >> 20;
  IND2[i2] = (uint16_t)((IND2[i2] << 8) | ch);
  lmcm7_history(m->word0, m->word1, m->word2, m->lineStart, m->prevLine, ch, c.s.n);
  lmcm7_hashes(c);
  lmcm7_lookups(c);
}

// lmcm7_p is lmmix.Mixer7.P: id 6's inputs, the contexts' nine, three
// mixers of 24 inputs, then id 6's second layer and APMs.
__device__ __forceinline__ int32_t lmcm7_p(CMCtx &c, int32_t pl) {
  using namespace mix6;
  const CMTabs *T = c.T;
  const uint32_t *CSM = (const uint32_t *)(c.mix + mix7::oCSM);
  const mix7::Lmcm7State *m = (const mix7::Lmcm7State *)(c.mix + mix7::oST);
  int bits = c.s.bits;
  int32_t *x = c.x7;
  int lq;
  int32_t stL = lmcm6_inputs<Lay7>(c, pl, x, &lq);
  uint32_t node;
  if (bits < 4) node = c.s.c0;
  else node = (1u << (bits - 4)) | (c.s.c0 & ((1u << (bits - 4)) - 1));
#pragma unroll
  for (int j = 0; j < mix7::nCx; j++) {
    uint32_t cp = m->slot[j] + node;
    c.cp7[j] = cp;
    uint8_t st = c.ht7[cp];
    c.st7[j] = st;
    x[nIn + j] = TAB(T->stretch[CSM[j * 256 + st] >> 20]);
  }
  return lmcm6_mix<Lay7>(c, pl, x, stL, lq);
}

// lmcm7_update is lmmix.Mixer7.Update's training (cm is trained by the
// caller, after; the history moves on in lmcm7_advance, after cm's). Each
// context's state steps from the one lmcm7_p read (st7), or, where an
// earlier context shares its slot byte, from the state that one left
// (Slots.Update on the slot as it is now); the loads come before the stores,
// as in cm_train.
__device__ __forceinline__ void lmcm7_update(CMCtx &c, int bit) {
  using namespace mix7;
  uint32_t *CSM = (uint32_t *)(c.mix + oCSM);
  const CMTabs *T = c.T;
  int32_t y = bit & 1;
  lmcm6_train<Lay7>(c, c.x7, bit);
  uint32_t v[nCx];
  uint8_t nw[nCx];
#pragma unroll
  for (int j = 0; j < nCx; j++) {
    v[j] = CSM[j * 256 + c.st7[j]];
    nw[j] = TAB(T->next[c.st7[j]][y]);
  }
#pragma unroll
  for (int j = 1; j < nCx; j++) {
#pragma unroll
    for (int i = 0; i < j; i++)
      if (c.cp7[i] == c.cp7[j]) nw[j] = TAB(T->next[nw[i]][y]);
  }
#pragma unroll
  for (int j = 0; j < nCx; j++) {
    int32_t d = ((y << 22) - (int32_t)(v[j] >> 10)) >> 8;
    CSM[j * 256 + c.st7[j]] = v[j] + ((uint32_t)d << 10);
    c.ht7[c.cp7[j]] = nw[j];
  }
}

// lmcm_p and lmcm_update dispatch to the codec's mixing stage.
__device__ __forceinline__ int32_t lmcm_p(CMCtx &c, int rule, int k, int lo, int32_t pl) {
  return rule == 7 ? lmcm7_p(c, pl) : rule == 6 ? lmcm6_p(c, pl) : lmcm5_p(c, k, lo, pl);
}
__device__ __forceinline__ void lmcm_update(CMCtx &c, int rule, int bit) {
  if (rule == 7) lmcm7_update(c, bit);
  else if (rule == 6) lmcm6_update(c, bit);
  else lmcm5_update(c, bit);
}

// ---- the arithmetic coder (coder/arith.go) ----

__device__ __forceinline__ uint32_t ac_split(uint32_t x1, uint32_t x2, uint32_t p) {
  uint32_t r = x2 - x1;
  return x1 + (r >> 16) * p + (((r & 0xFFFFu) * p) >> 16);
}
__device__ __forceinline__ uint32_t ac_clamp(int32_t p) { return (uint32_t)(p < 1 ? 1 : (p > 65535 ? 65535 : p)); }

// ---- kernels ----

// cm_init_kernel resets the tables of blocks idx[0..n-1] (Model.reset and
// the lm+cm mixer's and APM's starting values): 256 threads per block. The
// region was zeroed before.
__global__ void cm_init_kernel(CMBlocks B, int n) {
  int64_t gid = GID();
  const int T = 256;
  if (gid >= (int64_t)n * T) return;
  int b = (int)(gid / T);
  int j = (int)(gid % T);
  CMCtx c;
  cm_view(c, B, b);
  const CMTabs *tb = B.T;
  for (int i = j; i < 65536; i += T) c.o1[i] = 1u << 31;
  for (int i = j; i < kCMWeightSets * kCMRow; i += T) c.w[i] = i % kCMRow < kCMInputs ? 1 << 14 : 0;
  if (B.rule == 7) {
    using namespace mix6;
    int32_t *W = (int32_t *)(c.mix + mix7::oW), *W2 = (int32_t *)(c.mix + mix7::oW2);
    uint16_t *A = (uint16_t *)(c.mix + mix7::oAL);  // the LM's APM, a1 and a2 follow each other
    uint16_t *SM = (uint16_t *)(c.mix + mix7::oSM);
    uint32_t *CSM = (uint32_t *)(c.mix + mix7::oCSM);
    for (int i = j; i < nMix * 256 * mix7::kRow; i += T) {
      int r = i % mix7::kRow;
      W[i] = (r == inLM || r == inCMP) ? 1 << 15 : 0;
    }
    for (int i = j; i < sets2 * nMix; i += T) W2[i] = 65536 / nMix;
    for (int i = j; i < (256 + 256 + lmQ * 8) * nBins; i += T) A[i] = (uint16_t)tb->mixApmRow[i % nBins];
    for (int i = j; i < 2 * lmQ * 256 + lmQ * 32; i += T) SM[i] = 1 << 15;
    for (int i = j; i < mix7::nCx * 256; i += T) CSM[i] = tb->smInit[i & 255];
  } else if (B.rule == 6) {
    using namespace mix6;
    int32_t *W = (int32_t *)(c.mix + oW), *W2 = (int32_t *)(c.mix + oW2);
    uint16_t *A = (uint16_t *)(c.mix + oAL);  // the LM's APM, a1 and a2 follow each other
    uint16_t *SM = (uint16_t *)(c.mix + oSM);
    for (int i = j; i < nMix * 256 * kRow; i += T) {
      int r = i % kRow;
      W[i] = (r == inLM || r == inCMP) ? 1 << 15 : 0;
    }
    for (int i = j; i < sets2 * nMix; i += T) W2[i] = 65536 / nMix;
    for (int i = j; i < (256 + 256 + lmQ * 8) * nBins; i += T) A[i] = (uint16_t)tb->mixApmRow[i % nBins];
    for (int i = j; i < 2 * lmQ * 256 + lmQ * 32; i += T) SM[i] = 1 << 15;
  } else {
    int32_t *mixw = (int32_t *)(c.mix + mix5::oW), *mixapm = (int32_t *)(c.mix + mix5::oAPM);
    for (int i = j; i < kLMCMAPMCtx * 33; i += T) mixapm[i] = tb->mixApmRow[i % 33];
    if (j < 2 * kLMCMSets) mixw[j] = 32768;
  }
  for (int i = j; i < 256 * kCMApmBins; i += T) c.apm[i] = tb->apmRow[i % kCMApmBins];
  for (int i = j; i < kCMHashed * 256; i += T) c.sm[i] = tb->smInit[i & 255];
  c.o0[j] = 1u << 31;
  if (j < 128) c.msm[j] = 1u << 31;
  c.fw[j] = 65536;
}

// cm_start_kernel sets the small state of blocks 0..n-1 and does what
// Model.reset does after the tables (byteUpdate, nibbleUpdate); the decoder
// is primed with the first 4 bytes of the stream (Decoder.Reset).
__global__ void cm_start_kernel(CMBlocks B, int n, int decode) {
  int64_t gid = GID();
  if (gid >= n) return;
  int b = (int)gid;
  CMCtx c;
  cm_view(c, B, b);
  CMState &s = c.s;
  s.c0 = 1; s.c4 = 0; s.c8 = 0; s.word = 0;
  s.bits = 0; s.mptr = 0; s.mlen = 0; s.nbits = 0; s.n = 0; s.mixn = 0; s.eL = 0; s.eC = 0; s.miss = 0;
  for (int i = 0; i < kCMHashed; i++) { s.h[i] = 0; s.slot[i] = 0; }
  s.mask = (1u << B.lg[b]) - 1;
  s.mmask = (uint32_t)cm_match_size(B.len[b]) - 1;
  s.x1 = 0; s.x2 = 0xFFFFFFFFu; s.x = 0; s.io = 0; s.bad = -1; s.pad = 0;
  if (decode) {
    const uint8_t *in = B.io + B.ioS[b];
    int64_t plen = B.ioE[b] - B.ioS[b];
    for (int i = 0; i < 4; i++) {
      s.x = (s.x << 8) | (s.io < plen ? in[s.io] : 0xFFu);
      s.io++;
    }
  }
  cm_byteUpdate(c);
  cm_nibbleUpdate(c);
  if (B.rule == 7) lmcm7_start(c, B.len[b]);
  B.st[b] = s;
}

// lmcm_encode_kernel codes positions [t0, t1) of the blocks idx[0..n-1]
// (those longer than t0): probs holds the LM's 8 path probabilities per
// byte (at the block's data offset). The stream goes to io at ioS[b], at
// most ioE[b]-ioS[b] bytes: a block whose stream would not fit gets
// bad = its position (the caller codes it another way). At the block's end
// the encoder is flushed (Encoder.Finish) and st.io is the stream length.
// RULE is the mixing stage (5, 6 or 7, as B.rule): a kernel per rule holds
// only the registers its own stage needs.
template <int RULE>
__global__ void lmcm_encode_kernel(CMBlocks B, const int32_t *__restrict__ idx, int n, const uint16_t *__restrict__ probs,
                                   int64_t t0, int64_t t1) {
  constexpr int rule = RULE;
  int64_t gid = GID();
  if (gid >= n) return;
  int b = idx[gid];
  CMCtx c;
  cm_view(c, B, b);
  c.s = B.st[b];
  int64_t len = B.len[b];
  int64_t end = t1 < len ? t1 : len;
  uint8_t *out = B.io + B.ioS[b];
  int64_t cap = B.ioE[b] - B.ioS[b];
  uint32_t x1 = c.s.x1, x2 = c.s.x2;
  int64_t io = c.s.io;
  for (int64_t t = t0; t < end && c.s.bad < 0; t++) {
    const uint16_t *pp = probs + (B.off[b] + t) * 8;  // 16-byte aligned
    // the 8 probabilities in two 64-bit words (not an array: the bit loop is
    // not unrolled, and an array indexed by k would live in local memory)
    uint64_t p03 = 0, p47 = 0;
#ifdef LMFS_EMU
    for (int k = 0; k < 4; k++) p03 |= (uint64_t)pp[k] << (16 * k), p47 |= (uint64_t)pp[4 + k] << (16 * k);
#else
    uint4 pv = *(const uint4 *)pp;
    p03 = (uint64_t)pv.x | (uint64_t)pv.y << 32;
    p47 = (uint64_t)pv.z | (uint64_t)pv.w << 32;
#endif
    int sym = c.buf[t];
    int lo = 0;
    for (int k = 0; k < 8; k++) {
      int bit = (sym >> (7 - k)) & 1;
      cm_predict(c);
      uint32_t p = ac_clamp(lmcm_p(c, rule, k, lo, (int32_t)(((k < 4 ? p03 : p47) >> (16 * (k & 3))) & 0xFFFF)));
      uint32_t xmid = ac_split(x1, x2, p);
      if (bit) x2 = xmid;
      else x1 = xmid + 1;
      while (((x1 ^ x2) & 0xFF000000u) == 0) {
        if (io < cap) out[io] = (uint8_t)(x2 >> 24);
        io++;
        x1 <<= 8;
        x2 = (x2 << 8) | 0xFF;
      }
      lmcm_update(c, rule, bit);
      cm_train(c, bit);
      cm_advance(c, bit);
      if (rule == 7) lmcm7_advance(c);
      if (bit) lo += 128 >> k;
    }
    if (io >= cap) c.s.bad = (int32_t)t;
  }
  if (end == len && c.s.bad < 0 && t0 < end) {
    if (io < cap) out[io] = (uint8_t)(x1 >> 24);
    io++;
    if (io > cap) c.s.bad = (int32_t)len;
  }
  c.s.x1 = x1;
  c.s.x2 = x2;
  c.s.io = io;
  B.st[b] = c.s;
}

// cum_kernel turns the frequency tables of n streams (tables[slot*256])
// into cumulative ones: cum[v] = f[0] + ... + f[v-1] (cum[256] = 65536 is
// implied).
#ifdef LMFS_FAST
__global__ void cum_kernel(uint32_t *tables, int n) {
  int64_t gid = GID();
  int64_t w = gid >> 5;
  int lane = (int)(gid & 31);
  if (w >= n) return;
  uint32_t *t = tables + w * 256 + lane * 8;
  uint4 a = ((const uint4 *)t)[0], bq = ((const uint4 *)t)[1];
  uint32_t f[8] = {a.x, a.y, a.z, a.w, bq.x, bq.y, bq.z, bq.w};
  uint32_t s = 0;
#pragma unroll
  for (int i = 0; i < 8; i++) s += f[i];
  uint32_t incl = s;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    uint32_t y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  uint32_t acc = incl - s;
  uint32_t c8[8];
#pragma unroll
  for (int i = 0; i < 8; i++) {
    c8[i] = acc;
    acc += f[i];
  }
  ((uint4 *)t)[0] = make_uint4(c8[0], c8[1], c8[2], c8[3]);
  ((uint4 *)t)[1] = make_uint4(c8[4], c8[5], c8[6], c8[7]);
}
#else
__global__ void cum_kernel(uint32_t *tables, int n) {
  int64_t gid = GID();
  if (gid >= n) return;
  uint32_t *t = tables + gid * 256;
  uint32_t acc = 0;
  for (int v = 0; v < 256; v++) {
    uint32_t f = t[v];
    t[v] = acc;
    acc += f;
  }
}
#endif

// lmcm_decode_kernel decodes byte t of the blocks idx[0..n-1] (slot i has
// its cumulative table at cum[i*256]) into data, and makes it the LM's next
// input.
// RULE as for lmcm_encode_kernel.
template <int RULE>
__global__ void lmcm_decode_kernel(CMBlocks B, DevState S, const int32_t *__restrict__ idx, int n, const uint32_t *__restrict__ cum,
                                   int64_t t) {
  constexpr int rule = RULE;
  int64_t gid = GID();
  if (gid >= n) return;
  int b = idx[gid];
  CMCtx c;
  cm_view(c, B, b);
  c.s = B.st[b];
  const uint32_t *cu = cum + gid * 256;
  const uint8_t *in = B.io + B.ioS[b];
  int64_t plen = B.ioE[b] - B.ioS[b];
  uint32_t x1 = c.s.x1, x2 = c.s.x2, x = c.s.x;
  int64_t pos = c.s.io;
  int lo = 0, hi = 256;
  uint32_t clo = 0, chi = 65536;
  for (int k = 0; k < 8; k++) {
    int mid = (lo + hi) / 2;
    uint32_t cmid = cu[mid];
    // every frequency is at least 1, so chi - cmid <= 65535 and the shift fits 32 bits
    int32_t pl = (int32_t)(((chi - cmid) << 16) / (chi - clo));
    cm_predict(c);
    uint32_t p = ac_clamp(lmcm_p(c, rule, k, lo, pl));
    uint32_t xmid = ac_split(x1, x2, p);
    int bit = 0;
    if (x <= xmid) {
      bit = 1;
      x2 = xmid;
    } else {
      x1 = xmid + 1;
    }
    while (((x1 ^ x2) & 0xFF000000u) == 0) {
      x1 <<= 8;
      x2 = (x2 << 8) | 0xFF;
      x = (x << 8) | (pos < plen ? in[pos] : 0xFFu);
      pos++;
    }
    lmcm_update(c, rule, bit);
    cm_train(c, bit);
    if (k == 7) B.data[B.off[b] + t] = (uint8_t)(lo + bit);  // the buffer holds the byte before cm's byte update
    cm_advance(c, bit);
    if (rule == 7) lmcm7_advance(c);
    if (bit) {
      lo = mid;
      clo = cmid;
    } else {
      hi = mid;
      chi = cmid;
    }
  }
  c.s.x1 = x1;
  c.s.x2 = x2;
  c.s.x = x;
  c.s.io = pos;
  if (c.s.bad < 0 && pos > plen + 3) c.s.bad = (int32_t)t;
  B.st[b] = c.s;
  S.xcur[b] = lo;
}

#ifdef LMFS_FAST
// ---- id 7's coder with a warp per block (CUDA builds) ----
//
// lmcm_encode_kernel<7> codes a block on one thread: a bit is some 2400
// instructions, most of them in chains of dependent loads, so one thread
// waits about 12 us per bit, and the GPU needs thousands of blocks at once to
// be busy, whose tables then miss the L2 cache: from 4096 blocks on the
// kernel is bound by DRAM traffic (68.7 sectors per coded bit at 4096 blocks, 26.5
// at 512; measured on an H200). lmcm7_encode_warp and lmcm7_decode_warp code
// a block on a warp (2 to 2.4 times as fast per block on an H200; used up to
// one wave of warps, see warp_plan):
// the inputs of cm's mixer and of the three mixers of the stage, their
// training, and the slot lookups of the 5 + 9 contexts are spread over the
// lanes; what is one value per bit (the mixers' sums, the APMs, the coder,
// the history) every lane computes alike. The same integers in the same
// order where order matters (the slot replacements, contexts sharing a
// slot byte): their results are the thread kernels' bit for bit.
//
// Lanes: cm's input i on lane i (0..8; hashed context j on lane 2+j); the
// stage's input i on lane i (0..23: 0 the LM, 1..9 cm's inputs, 10 cm's P,
// 11 the LM's APM, 12..14 the state maps, 15+j the stage's context j).
namespace w7 {
constexpr unsigned kAll = 0xFFFFFFFFu;
constexpr int kCm0 = 2, kCx0 = mix6::inSMM + 1;
static_assert(kCx0 + mix7::nCx == mix7::nIn && mix7::nIn <= 32, "lanes");

__device__ __forceinline__ int64_t sum64(int64_t v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(kAll, v, o);
  return v;
}

// cm_hash is hash j of cm_hashes.
__device__ __forceinline__ uint32_t cm_hash(int j, uint32_t c4, uint32_t c8, uint32_t word) {
  switch (j) {
    case 0: return (c4 & 0xFFFFu) * 0x2F0B4C75u + 0x1000000u;
    case 1: return (c4 & 0xFFFFFFu) * 0x7A3F5E93u + 0x3000000u;
    case 2: return c4 * 0x3C6EF372u + 0x5000000u;
    case 3: return cm_hash32(c4 * 0x9E3779B1u + 0x7000000u) + (c8 & 0xFFFFu) * 0x6F4F2A35u;
    default: return cm_hash32(word * 0x2545F491u) + 0x9000000u;
  }
}

// Hist is the stage's history (Lmcm7State's scalars) in registers.
struct Hist {
  uint32_t word0, word1, word2, mask;
  int64_t lineStart, prevLine;
};

// cx_hash is context j's hash of Mixer7.byteUpdate (lmcm7_hashes).
__device__ __forceinline__ uint32_t cx_hash(int j, const uint8_t *buf, uint32_t c4, uint32_t c8, int64_t pos, const Hist &m,
                                            const uint16_t *IND, const uint16_t *IND2) {
  uint32_t c1 = c4 & 0xFF;
  switch (j) {
    case 0: return cm_hash32(m.word0 * 0x2545F491u + cm_hash32(m.word1 + 0x1000193u)) + 0x0B000000u;
    case 1: {
      int64_t col = pos - m.lineStart;
      int64_t colc = col < 255 ? col : 255;
      uint32_t aboveC = 0;
      if (m.prevLine >= 0 && m.prevLine + colc < m.lineStart) aboveC = (uint32_t)buf[m.prevLine + colc] + 256;
      return ((aboveC << 8) | (uint32_t)colc) * 0x6F4F2A35u + 0x0D000000u;
    }
    case 2: return (c1 | ((uint32_t)IND[c1] << 8)) * 0x2F0B4C75u + 0x13000000u;
    case 3: {
      int64_t col = pos - m.lineStart;
      uint32_t above = 0;
      if (m.prevLine >= 0 && m.prevLine + col < m.lineStart) above = (uint32_t)buf[m.prevLine + col] + 256;
      return ((above << 8) | c1) * 0x7FEB352Du + 0x17000000u;
    }
    case 4: return (c4 & 0xFF00FF00u) * 0x846CA68Bu + 0x19000000u;
    case 5: return cm_hash32(m.word1 * 0x2F0B4C75u + cm_hash32(m.word2 + 0x1B000000u)) + 0x1B000000u;
    case 6: return cm_hash32(m.word0 * 0x7A3F5E93u + cm_hash32(m.word2 + 0x1D000000u)) + 0x1D000000u;
    case 7: {
      uint32_t c12 = 0;
      if (pos >= 12)
        c12 = ((uint32_t)buf[pos - 12] << 24) | ((uint32_t)buf[pos - 11] << 16) | ((uint32_t)buf[pos - 10] << 8) | (uint32_t)buf[pos - 9];
      return cm_hash32(cm_hash32(c4 * 0x9E3779B1u + 0x1F000000u) + c8 * 0x6F4F2A35u) + c12 * 0x3C6EF372u;
    }
    default: {
      uint32_t i2 = ((c4 & 0xFFFFu) * 0x9E3779B1u) >> 20;
      return ((c4 & 0xFFFFu) | ((uint32_t)IND2[i2] << 16)) * 0x2545F491u + 0x21000000u;
    }
  }
}

// find is slots_find over the lanes L0..L0+N-1 (lane L0+j: hash h of
// context j, mine): each lane loads its three candidates; then in the
// contexts' order each decides, and the later ones see its replacement
// (as slots_find's correction). A slot two lanes replace is written by the
// later one only, as the stores in order would leave it. It returns the
// byte offset of the lane's slot.
template <int L0, int N>
__device__ __forceinline__ uint32_t find(const CMTabs *T, uint8_t *t, uint32_t mask, uint32_t h, uint32_t k, int lane) {
  const bool mine = lane >= L0 && lane < L0 + N;
  const int j = lane - L0;
  uint32_t hh = cm_hash32(h + k);
  uint32_t ck = hh >> 24, b0 = (hh & mask) * 16;
  uint32_t v0 = 0, v1 = 0, v2 = 0;
  if (mine) {
    v0 = *(const uint16_t *)(t + b0);
    v1 = *(const uint16_t *)(t + (b0 ^ 16u));
    v2 = *(const uint16_t *)(t + (b0 ^ 32u));
  }
  uint32_t out = 0;
  bool rep = false, later = false;
  auto decide = [&]() {
    if ((v0 & 0xFF) == ck) out = b0;
    else if ((v1 & 0xFF) == ck) out = b0 ^ 16u;
    else if ((v2 & 0xFF) == ck) out = b0 ^ 32u;
    else {
      int32_t p0 = TAB(T->prio[v0 >> 8]), p1 = TAB(T->prio[v1 >> 8]), p2 = TAB(T->prio[v2 >> 8]);
      uint32_t qb = 0;
      int32_t pb = p0;
      if (p1 < pb) qb = 16u, pb = p1;
      if (p2 < pb) qb = 32u;
      out = b0 ^ qb;
      rep = true;
    }
  };
  // Contexts whose candidates lie in different 64-byte groups cannot see
  // each other's replacements: then each decides alone (the usual case).
  const unsigned grp = __match_any_sync(kAll, mine ? (b0 & ~63u) : 0x80000000u | (uint32_t)lane);
  if (!__any_sync(kAll, mine && __popc(grp) > 1)) {
    if (mine) decide();
    if (mine && rep) {
      *(uint4 *)(t + out) = make_uint4(0, 0, 0, 0);
      t[out] = (uint8_t)ck;
    }
    __syncwarp();
    return out;
  }
#pragma unroll 1
  for (int i = 0; i < N; i++) {
    if (mine && j == i) decide();
    uint32_t oi = __shfl_sync(kAll, out, L0 + i), ci = __shfl_sync(kAll, ck, L0 + i);
    bool ri = __shfl_sync(kAll, rep ? 1 : 0, L0 + i) != 0;
    if (mine && ri) {
      if (j > i) {
        if (b0 == oi) v0 = ci;
        if ((b0 ^ 16u) == oi) v1 = ci;
        if ((b0 ^ 32u) == oi) v2 = ci;
      } else if (j < i && oi == out) {
        later = true;
      }
    }
  }
  if (mine && rep && !later) {
    *(uint4 *)(t + out) = make_uint4(0, 0, 0, 0);
    t[out] = (uint8_t)ck;
  }
  __syncwarp();
  return out;
}
// Pre holds what a bit reads from the tables at addresses the history
// decides, loaded ahead: during the bit before (an encoder knows every bit),
// so that the loads' latency hides behind that bit's work. Lanes keep their
// part: a context's state and state map entry (cm's and the stage's context
// lanes), cm's o0 and o1 entries (lanes 0, 1), cm's mixer weights (lanes
// 0..8), the stage's mixer weights (lanes 0..23), and the rows of cm's APM
// and the stage's A1 and A2 (entry e on lane e, entry 32 on every lane),
// from which a shuffle picks the two entries the bit interpolates.
struct Pre {
  uint32_t st, smv, o;
  int32_t wl, fw, wk0, wk1, wk2;
  uint32_t ar, ar32, a1, a132, a2, a232;
};

__device__ __forceinline__ uint32_t row_at(uint32_t v, uint32_t v32, int e) {
  uint32_t a = __shfl_sync(kAll, v, e & 31);
  return e >= 32 ? v32 : a;
}
}  // namespace w7


// LMFS_W7_MINB: CUDA blocks of 4 warps per multiprocessor the register
// budget is set for.
#ifndef LMFS_W7_MINB
#define LMFS_W7_MINB 3
#endif
// w7_code is the body of lmcm7_encode_warp (DEC false: positions [t0, t1)
// of the blocks idx[0..n-1], as lmcm_encode_kernel) and of
// lmcm7_decode_warp (DEC true: byte t0 of the blocks, the LM's cumulative
// tables in cum, as lmcm_decode_kernel). A decoder learns a bit only after
// coding it, so it loads each bit's entries at the bit's start.
template <bool DEC>
__device__ __forceinline__ void w7_code(CMBlocks B, DevState S, const int32_t *__restrict__ idx, int n, const uint16_t *__restrict__ probs,
                                        const uint32_t *__restrict__ cum, int64_t t0, int64_t t1) {
  using namespace mix6;
  using namespace w7;
  const int64_t gw = GID() >> 5;
  const int lane = threadIdx.x & 31;
  if (gw >= n) return;
  const int b = idx[gw];
  CMCtx c;
  cm_view(c, B, b);
  c.s = B.st[b];
  const CMTabs *T = c.T;
  mix7::Lmcm7State *ms = (mix7::Lmcm7State *)(c.mix + mix7::oST);
  int32_t *W = (int32_t *)(c.mix + mix7::oW), *W2 = (int32_t *)(c.mix + mix7::oW2);
  uint16_t *AL = (uint16_t *)(c.mix + mix7::oAL), *A1 = (uint16_t *)(c.mix + mix7::oA1);
  uint16_t *A2 = (uint16_t *)(c.mix + mix7::oA2), *SM = (uint16_t *)(c.mix + mix7::oSM);
  uint32_t *CSM = (uint32_t *)(c.mix + mix7::oCSM);
  uint16_t *IND = (uint16_t *)(c.mix + mix7::oIND), *IND2 = (uint16_t *)(c.mix + mix7::oIND2);
  Hist m{ms->word0, ms->word1, ms->word2, ms->mask, ms->lineStart, ms->prevLine};
  const bool isCm = lane >= kCm0 && lane < kCm0 + kCMHashed, isCx = lane >= kCx0 && lane < kCx0 + mix7::nCx;
  const int jcm = lane - kCm0, jcx = lane - kCx0;
  uint32_t myh = 0, myslot = 0;  // this lane's context: its hash and slot
  if (isCm) myh = B.st[b].h[jcm], myslot = B.st[b].slot[jcm];
  if (isCx) myh = ms->h[jcx], myslot = ms->slot[jcx];
  const int64_t len = B.len[b];
  const int64_t end = t1 < len ? t1 : len;
  uint8_t *out = B.io + B.ioS[b];               // encoding: the stream; decoding: the payload
  const int64_t cap = B.ioE[b] - B.ioS[b];      // its capacity or length
  const uint16_t *pbase = DEC ? nullptr : probs + B.off[b] * 8;
  const uint32_t *cu = DEC ? cum + gw * 256 : nullptr;
  uint32_t x1 = c.s.x1, x2 = c.s.x2, xd = c.s.x;  // xd: the decoder's window
  int64_t io = c.s.io;                          // encoding: bytes written; decoding: bytes read
  int lo = 0, hi = 256;                         // decoding: the byte's symbols still possible
  uint32_t clo = 0, chi = 65536;
  // ld_states loads the state of the lane's context at node and its state map entry.
  auto ld_states = [&](Pre &p, uint32_t node) {
    if (isCm) {
      p.st = c.ht[myslot + node];
      p.smv = c.sm[jcm * 256 + p.st];
    } else if (isCx) {
      p.st = c.ht7[myslot + node];
      p.smv = CSM[jcx * 256 + p.st];
    }
  };
  // ld_wl loads cm's mixer weights of row wsel.
  auto ld_wl = [&](Pre &p, int wsel) { p.wl = lane < kCMInputs ? c.w[wsel + lane] : 0; };
  // ld_rest loads the rest of Pre for a bit of partial byte c0, history
  // bytes c1 and c2, bit position bits and LM quantum lq.
  auto ld_rest = [&](Pre &p, uint32_t c0, uint32_t c1, uint32_t c2, int bits, int lq) {
    const uint32_t c0b = c0 & 0xFF;
    if (lane == 0) p.o = c.o0[c0b];
    else if (lane == 1) p.o = c.o1[(c1 << 8) | c0b];
    p.fw = c.fw[c0b];
    p.wk0 = p.wk1 = p.wk2 = 0;
    if (lane < mix7::nIn) {
      p.wk0 = W[(0 * 256 + (int)c2) * mix7::kRow + lane];
      p.wk1 = W[(1 * 256 + (int)c0b) * mix7::kRow + lane];
      p.wk2 = W[(2 * 256 + (int)c1) * mix7::kRow + lane];
    }
    const uint16_t *ra = c.apm + c0b * kCMApmBins, *r1 = A1 + c0b * nBins, *r2 = A2 + (lq * 8 + bits) * nBins;
    p.ar = ra[lane], p.ar32 = ra[32];
    p.a1 = r1[lane], p.a132 = r1[32];
    p.a2 = r2[lane], p.a232 = r2[32];
  };
  auto lq_of = [&](int32_t pl) { return (int)((mix_stretch(T, pl >> 4) + 2048) >> 8); };
  auto match_ms = [&](int mlen, int mptr, int bits) { return mlen > 0 ? 1 + ((c.buf[mptr] >> (7 - bits)) & 1) : 0; };
  auto wsel_of = [&](uint32_t c1, int bits, int ms_) { return ((int)((c1 << 3) | (uint32_t)bits) * 3 + ms_) * kCMRow; };
  Pre cur{}, nxt{};
  bool haveS = false, haveR = false, haveW = false;  // cur's states, rest and cm weights are loaded
  for (int64_t t = t0; t < end && (DEC || c.s.bad < 0); t++) {
    uint64_t p03 = 0, p47 = 0;
    const bool more = !DEC && t + 1 < end;
    uint32_t plNext = 0;  // the next byte's first probability
    int sym = 0;
    if (!DEC) {
      const uint4 pv = *(const uint4 *)(pbase + t * 8);
      p03 = (uint64_t)pv.x | (uint64_t)pv.y << 32, p47 = (uint64_t)pv.z | (uint64_t)pv.w << 32;
      if (more) plNext = pbase[(t + 1) * 8];
      sym = c.buf[t];
    }
    for (int k = 0; k < 8; k++) {
      int y = DEC ? 0 : (sym >> (7 - k)) & 1;
      int mid = 0;
      uint32_t cmid = 0;
      int32_t pl;
      if (DEC) {
        mid = (lo + hi) / 2;
        cmid = cu[mid];
        // every frequency is at least 1, so chi - cmid <= 65535 and the shift fits 32 bits
        pl = (int32_t)(((chi - cmid) << 16) / (chi - clo));
      } else {
        pl = (int32_t)(((k < 4 ? p03 : p47) >> (16 * (k & 3))) & 0xFFFF);
      }
      const int bits = c.s.bits;
      const uint32_t c0 = c.s.c0, c0b = c0 & 0xFF, c1 = c.s.c4 & 0xFF, c2 = (c.s.c4 >> 8) & 0xFF;
      const uint32_t node = bits < 4 ? c0 : (1u << (bits - 4)) | (c0 & ((1u << (bits - 4)) - 1));
      const bool match = c.s.mlen > 0;
      int mbit = 0, mcx = 0;
      if (match) {
        mbit = (c.buf[c.s.mptr] >> (7 - bits)) & 1;
        mcx = cm_matchBucket(c.s.mlen) * 2 + mbit;
      }
      const int32_t stL = mix_stretch(T, pl >> 4);
      const int lq = (int)((stL + 2048) >> 8);
      const int wsel = wsel_of(c1, bits, match ? 1 + mbit : 0);
      if (!haveS) ld_states(cur, node);
      if (!haveR) ld_rest(cur, c0, c1, c2, bits, lq);
      if (!haveW) ld_wl(cur, wsel);
      if (!haveW && lane == 7 && match) cur.o = c.msm[mcx & 127];  // (haveW: cm's match state entry too)
      // ---- the next bit's loads ----
      const bool nS = !DEC && bits != 3 && bits != 7;  // the next bit is in this nibble (its slots are known)
      const bool nR = !DEC && (k < 7 || more);
      const uint32_t c0n = k < 7 ? (c0 << 1) | (uint32_t)y : 1u, c1n = k < 7 ? c1 : (uint32_t)sym, c2n = k < 7 ? c2 : c1;
      const int bn = (bits + 1) & 7;
      if (!DEC) {
        const int32_t pln = k < 7 ? (int32_t)(((k + 1 < 4 ? p03 : p47) >> (16 * ((k + 1) & 3))) & 0xFFFF) : (int32_t)plNext;
        if (nS) ld_states(nxt, bn < 4 ? c0n : (1u << (bn - 4)) | (c0n & ((1u << (bn - 4)) - 1)));
        if (nR) ld_rest(nxt, c0n, c1n, c2n, bn, lq_of(pln));
      }
      int mlenN = match && mbit != y ? 0 : c.s.mlen;  // (decoding: once the bit is known)
      const int mcxN = mlenN > 0 ? cm_matchBucket(mlenN) * 2 + ((c.buf[c.s.mptr] >> (7 - bn)) & 1) : 0;
      if (!DEC && k < 7) ld_wl(nxt, wsel_of(c1, bn, match_ms(mlenN, c.s.mptr, bn)));
      if (!DEC && k < 7 && lane == 7 && mlenN > 0) nxt.o = c.msm[mcxN & 127];
      // ---- cm_predict: input xc on lanes 0..8 ----
      const uint32_t cp = myslot + node, st = cur.st;
      // (every lane loads, at an index that is harmless where unused: no
      // divergent branches, whose loads would wait one after another)
      const bool xcLoad = lane <= 1 || isCm || (lane == 7 && match);
      const int32_t xcv = TAB(T->stretch[xcLoad ? ((lane <= 1 || lane == 7) ? cur.o : cur.smv) >> 20 : 0]);
      const int32_t xc = xcLoad ? xcv : (lane == 8 ? 256 : 0);
      const int32_t wl = lane < kCMInputs ? cur.wl : 0;
      const int32_t mp = cm_clampSt((int32_t)(sum64((int64_t)xc * wl) >> 16));
      const int32_t sqmp = cm_squash(T, mp);
      const int32_t fdot = cm_clampSt((int32_t)(((int64_t)mp * (int64_t)cur.fw) >> 16));
      const int32_t pmix = cm_squash(T, fdot);
      const int32_t sa = fdot + 2048, wa = sa & 127, ea = sa >> 7;
      const int32_t a0 = (int32_t)row_at(cur.ar, cur.ar32, ea), a1 = (int32_t)row_at(cur.ar, cur.ar32, ea + 1);
      const int32_t pr = cm_final(pmix, a0, a1, wa);
      // ---- the stage's inputs (lmcm6_inputs, lmcm7_p): x on lanes 0..23 ----
      int32_t iL;
      const int32_t q = interp6(AL, (int)c0b * nBins, stL + 2048, &iL);
      const uint32_t st0 = __shfl_sync(kAll, st, kCm0), st1 = __shfl_sync(kAll, st, kCm0 + 1);
      const int32_t xin = __shfl_sync(kAll, xc, (lane + 31) & 31);
      const int is0 = lq * 256 + (int)st0, is1 = lq * 256 + (int)st1;
      const int iM = lq * 32 + (match ? (c.s.mlen < 15 ? c.s.mlen : 15) * 2 + mbit : 0);
      // lanes 10..14 (cm's P, the LM's APM, the state maps): mix_stretch of
      // a 12-bit probability; lanes 15..23: stretch of a state map entry
      const bool smLane = lane >= inSM && lane <= inSMM;
      const int32_t smE = SM[smLane ? (lane == inSM ? is0 : lane == inSM + 1 ? lmQ * 256 + is1 : 2 * lmQ * 256 + iM) : 0];
      int32_t p12 = lane == inCMP ? pr : lane == inLMA ? (q >> 4) : smE >> 4;
      p12 = p12 < 0 ? 0 : (p12 > 4095 ? 4095 : p12);
      const int32_t tv = TAB((isCx ? T->stretch : T->mstretch)[isCx ? (int32_t)(cur.smv >> 20) : p12]);
      const int32_t x = lane == inLM ? stL : lane < inCMP ? xin : lane < mix7::nIn ? tv : 0;
      // ---- lmcm6_mix ----
      const int sel0 = (0 * 256 + (int)c2) * mix7::kRow, sel1 = (1 * 256 + (int)c0b) * mix7::kRow, sel2 = (2 * 256 + (int)c1) * mix7::kRow;
      const bool wl24 = lane < mix7::nIn;
      const int32_t dot0 = mix6_clampSt(sum64((int64_t)x * cur.wk0) >> 16);
      const int32_t dot1 = mix6_clampSt(sum64((int64_t)x * cur.wk1) >> 16);
      const int32_t dot2 = mix6_clampSt(sum64((int64_t)x * cur.wk2) >> 16);
      const int32_t pm0 = mix_squash(T, dot0), pm1 = mix_squash(T, dot1), pm2 = mix_squash(T, dot2);
      if (bits == 0) c.s.miss = 0;
      int32_t *w2 = W2 + mix6_sel2(stL, c.s.eL, c.s.eC, c.s.miss, bits);
      const int32_t w20 = w2[0], w21 = w2[1], w22 = w2[2];
      const int32_t d2 = mix6_clampSt(((int64_t)dot0 * w20 + (int64_t)dot1 * w21 + (int64_t)dot2 * w22) >> 16);
      const int32_t p2 = mix_squash(T, d2);
      const int32_t s2 = d2 + 2048, w2w = s2 & 127, e2 = s2 >> 7;
      const int32_t q1 = ((int32_t)row_at(cur.a1, cur.a132, e2) * (128 - w2w) + (int32_t)row_at(cur.a1, cur.a132, e2 + 1) * w2w) >> 7;
      const int32_t q2 = ((int32_t)row_at(cur.a2, cur.a232, e2) * (128 - w2w) + (int32_t)row_at(cur.a2, cur.a232, e2 + 1) * w2w) >> 7;
      const int i1 = (int)c0b * nBins + e2 + (w2w >> 6), i2 = (lq * 8 + bits) * nBins + e2 + (w2w >> 6);
      const int32_t pmx = mix6_final(p2, q1, q2);
      // ---- the coder ----
      const uint32_t xmid = ac_split(x1, x2, ac_clamp(pmx));
      if (DEC) {
        y = xd <= xmid ? 1 : 0;
        mlenN = match && mbit != y ? 0 : c.s.mlen;
      }
      if (y) x2 = xmid;
      else x1 = xmid + 1;
      while (((x1 ^ x2) & 0xFF000000u) == 0) {
        if (!DEC && lane == 0 && io < cap) out[io] = (uint8_t)(x2 >> 24);
        if (DEC) xd = (xd << 8) | (io < cap ? out[io] : 0xFFu);
        io++;
        x1 <<= 8;
        x2 = (x2 << 8) | 0xFF;
      }
      // ---- lmcm6_train ----
      {
        const int64_t lr = c.s.mixn < rateBits ? rate0 : rate1;
        c.s.mixn++;
        uint16_t *pa = lane == 0 ? A1 + i1 : lane == 1 ? A2 + i2 : lane == 2 ? AL + iL : lane == 3 ? SM + is0 : lane == 4 ? SM + lmQ * 256 + is1 : SM + 2 * lmQ * 256 + iM;
        const int32_t av = lane < 6 ? (int32_t)*pa : 0;
        const int64_t e0 = (int64_t)((y << 12) - pm0), e1 = (int64_t)((y << 12) - pm1), e2_ = (int64_t)((y << 12) - pm2);
        int32_t n0 = cur.wk0, n2 = cur.wk2;  // rows 0 and 2 after training (row 1's, of c0, is not used again next bit)
        if (wl24) {
          if (e0 > skipErr || e0 < -skipErr) W[sel0 + lane] = n0 = cur.wk0 + (int32_t)(((int64_t)x * (e0 * lr) + (1 << 13)) >> 14);
          if (e1 > skipErr || e1 < -skipErr) W[sel1 + lane] = cur.wk1 + (int32_t)(((int64_t)x * (e1 * lr) + (1 << 13)) >> 14);
          if (e2_ > skipErr || e2_ < -skipErr) W[sel2 + lane] = n2 = cur.wk2 + (int32_t)(((int64_t)x * (e2_ * lr) + (1 << 13)) >> 14);
        }
        if (nR) {  // a row the next bit uses again is the trained one
          const int nsel0 = (0 * 256 + (int)c2n) * mix7::kRow, nsel2 = (2 * 256 + (int)c1n) * mix7::kRow;
          if (nsel0 == sel0) nxt.wk0 = n0;
          if (nsel2 == sel2) nxt.wk2 = n2;
        }
        const int64_t eo = (int64_t)((y << 12) - p2) * rate2;
        if (lane < nMix) {
          const int32_t dv = lane == 0 ? dot0 : lane == 1 ? dot1 : dot2, wv = lane == 0 ? w20 : lane == 1 ? w21 : w22;
          w2[lane] = wv + (int32_t)(((int64_t)dv * eo + (1 << 13)) >> 14);
        }
        const int32_t pL = pl >> 4;
        if ((y == 1) != (pL >= 2048)) c.s.miss++;
        c.s.eL += ((abs32((y << 12) - pL) << 4) - c.s.eL) >> advShift;
        c.s.eC += ((abs32((y << 12) - pr) << 4) - c.s.eC) >> advShift;
        if (lane < 6) *pa = apm_next(av, y, lane < 3 ? apmRate : smRate);
      }
      // the training's table lookups, on every lane: the next state of the
      // lane's context, the adaptation rate of its counter (lanes 0, 1, 7)
      const uint32_t nxtSt = TAB(T->next[st & 0xFF][y]);
      const int32_t ctrRate = TAB(T->smRate[cur.o & 1023]);
      // ---- lmcm7_update: the contexts' state maps and states ----
      {
        uint32_t nw = nxtSt;  // (cx lanes)
        bool later = false;
        const unsigned same = __match_any_sync(kAll, isCx ? cp : 0x80000000u | (uint32_t)lane);
        if (__any_sync(kAll, isCx && __popc(same) > 1)) {  // contexts sharing a slot byte step in turn
#pragma unroll 1
          for (int i = 0; i < mix7::nCx; i++) {
            const uint32_t ci = __shfl_sync(kAll, cp, kCx0 + i), ni = __shfl_sync(kAll, nw, kCx0 + i);
            if (isCx && ci == cp) {
              if (jcx > i) nw = TAB(T->next[ni][y]);
              else if (jcx < i) later = true;
            }
          }
        }
        if (isCx) {
          const uint32_t v = cur.smv;
          const int32_t d = ((y << 22) - (int32_t)(v >> 10)) >> 8;
          const uint32_t nv = v + ((uint32_t)d << 10);
          CSM[jcx * 256 + st] = nv;
          if (!later) c.ht7[cp] = (uint8_t)nw;
          if (nS && nxt.st == st) nxt.smv = nv;
        }
      }
      // ---- cm_train ----
      {
        int64_t lr = 7;
        if (c.s.nbits < (1 << 14)) lr = 20;
        else if (c.s.nbits < (1 << 16)) lr = 12;
        c.s.nbits++;
        const int64_t err = (int64_t)(y << 12) - (int64_t)sqmp;
        if (lane <= 1 || (lane == 7 && match)) {
          const uint32_t nv = cm_ctrNext(cur.o, y, lane == 7 ? 1023 : 60, ctrRate);
          *(lane == 0 ? &c.o0[c0b] : lane == 1 ? &c.o1[(c1 << 8) | c0b] : &c.msm[mcx & 127]) = nv;
          if (!DEC && lane == 7 && k < 7 && mlenN > 0 && mcxN == mcx) nxt.o = nv;
        }
        if (isCm) {
          const uint32_t smv = cur.smv;
          const int32_t d = (((int32_t)y << 22) - (int32_t)(smv >> 10)) >> 8;
          const uint32_t nv = smv + ((uint32_t)d << 10);
          c.sm[jcm * 256 + st] = nv;
          c.ht[cp] = (uint8_t)nxtSt;
          if (nS && nxt.st == st) nxt.smv = nv;
        }
        if ((err > 24 || err < -24) && lane < kCMInputs) c.w[wsel + lane] = wl + (int32_t)(((int64_t)xc * (err * lr) + (1 << 13)) >> 14);
        if (lane == 0) {
          const int64_t e = ((int64_t)(y << 12) - (int64_t)pmix) * lr;
          c.fw[c0b] = cur.fw + (int32_t)(((int64_t)mp * e + (1 << 13)) >> 14);
          const int32_t av = (wa >> 6) ? a1 : a0;
          const int32_t g = (y << 16) + (y << 7) - y - y;
          c.apm[c0b * kCMApmBins + ea + (wa >> 6)] = (uint16_t)(av + ((g - av) >> 7));
        }
      }
      // decoding: the buffer holds the byte before cm's byte update reads it
      if (DEC && k == 7 && lane == 0) B.data[B.off[b] + t] = (uint8_t)(lo + y);
      __syncwarp();
      // ---- cm_advance, lmcm7_advance ----
      c.s.c0 = (c0 << 1) | (uint32_t)y;
      c.s.bits++;
      c.s.mlen = mlenN;
      if (c.s.bits == 8) {
        const uint32_t ch = c.s.c0 & 0xFF, prev = c.s.c4;
        cm_byteHistory(c.s, ch);
        {  // every lane computes the five hashes (no divergent switch), each keeps its own
          uint32_t hh[kCMHashed];
#pragma unroll
          for (int j = 0; j < kCMHashed; j++) hh[j] = cm_hash(j, c.s.c4, c.s.c8, c.s.word);
#pragma unroll
          for (int j = 0; j < kCMHashed; j++)
            if (jcm == j) myh = hh[j];
        }
        const int64_t nn = c.s.n;
        const int64_t mh = cm_matchFind(c.s, c.buf, c.mt);
        __syncwarp();  // (every lane has read the entry before it changes)
        if (mh >= 0 && lane == 0) c.mt[mh] = (int32_t)nn;
        const uint32_t sc = find<kCm0, kCMHashed>(T, c.ht, c.s.mask, myh, c.s.c0 * 0x1D8E4E27u, lane);
        if (isCm) myslot = sc;
        // lmcm7_advance at a byte's end
        const uint32_t pc1 = prev & 0xFF, pi2 = ((prev & 0xFFFFu) * 0x9E3779B1u) >> 20;
        const uint16_t ind = IND[pc1], ind2 = IND2[pi2];
        __syncwarp();
        if (lane == 0) IND[pc1] = (uint16_t)((ind << 8) | ch), IND2[pi2] = (uint16_t)((ind2 << 8) | ch);
        __syncwarp();
        lmcm7_history(m.word0, m.word1, m.word2, m.lineStart, m.prevLine, ch, nn);
        {
          uint32_t hh[mix7::nCx];
#pragma unroll
          for (int j = 0; j < mix7::nCx; j++) hh[j] = cx_hash(j, c.buf, c.s.c4, c.s.c8, nn, m, IND, IND2);
#pragma unroll
          for (int j = 0; j < mix7::nCx; j++)
            if (jcx == j) myh = hh[j];
        }
        const uint32_t s7 = find<kCx0, mix7::nCx>(T, c.ht7, m.mask, myh, c.s.c0 * 0x1D8E4E27u, lane);
        if (isCx) myslot = s7;
      } else if (c.s.bits == 4) {
        const uint32_t sc = find<kCm0, kCMHashed>(T, c.ht, c.s.mask, myh, c.s.c0 * 0x1D8E4E27u, lane);
        const uint32_t s7 = find<kCx0, mix7::nCx>(T, c.ht7, m.mask, myh, c.s.c0 * 0x1D8E4E27u, lane);
        if (isCm) myslot = sc;
        if (isCx) myslot = s7;
      }
      if (DEC) {
        if (y) lo = mid, clo = cmid;
        else hi = mid, chi = cmid;
      }
      cur = nxt;
      haveS = nS;
      haveR = nR;
      haveW = !DEC && k < 7;
    }
    if (!DEC && io >= cap) c.s.bad = (int32_t)t;
    if (DEC && c.s.bad < 0 && io > cap + 3) c.s.bad = (int32_t)t;
  }
  if (!DEC && end == len && c.s.bad < 0 && t0 < end) {
    if (lane == 0 && io < cap) out[io] = (uint8_t)(x1 >> 24);
    io++;
    if (io > cap) c.s.bad = (int32_t)len;
  }
  c.s.x1 = x1;
  c.s.x2 = x2;
  c.s.x = xd;
  c.s.io = io;
#pragma unroll
  for (int j = 0; j < kCMHashed; j++) {
    c.s.h[j] = __shfl_sync(kAll, myh, kCm0 + j);
    c.s.slot[j] = __shfl_sync(kAll, myslot, kCm0 + j);
  }
  uint32_t hs[mix7::nCx], ss[mix7::nCx];
#pragma unroll
  for (int j = 0; j < mix7::nCx; j++) {
    hs[j] = __shfl_sync(kAll, myh, kCx0 + j);
    ss[j] = __shfl_sync(kAll, myslot, kCx0 + j);
  }
  if (lane == 0) {
    B.st[b] = c.s;
    ms->word0 = m.word0, ms->word1 = m.word1, ms->word2 = m.word2;
    ms->lineStart = m.lineStart, ms->prevLine = m.prevLine;
#pragma unroll
    for (int j = 0; j < mix7::nCx; j++) ms->h[j] = hs[j], ms->slot[j] = ss[j];
    if (DEC) S.xcur[b] = lo;
  }
}

__global__ void __launch_bounds__(128, LMFS_W7_MINB) lmcm7_encode_warp(CMBlocks B, const int32_t *__restrict__ idx, int n,
                                                                       const uint16_t *__restrict__ probs, int64_t t0, int64_t t1) {
  w7_code<false>(B, DevState{}, idx, n, probs, nullptr, t0, t1);
}

__global__ void __launch_bounds__(128, LMFS_W7_MINB) lmcm7_decode_warp(CMBlocks B, DevState S, const int32_t *__restrict__ idx, int n,
                                                                       const uint32_t *__restrict__ cum, int64_t t) {
  w7_code<true>(B, S, idx, n, nullptr, cum, t, t + 1);
}
#endif  // LMFS_FAST

// ---- host side ----

// cm_tables builds CMTabs with the integer code of predictor/cm (tables.go,
// cm.go) and predictor/mix.
void cm_tables(CMTabs *t) {
  static const int32_t pts[33] = {1,    2,    3,    6,    10,   16,   27,   45,   73,   120,  194,  310,  488,  747,  1101, 1546, 2047,
                                  2549, 2994, 3348, 3607, 3785, 3901, 3975, 4024, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094};
  auto calc = [&](int32_t d) -> int32_t {
    if (d > 2047) return 4095;
    if (d < -2047) return 1;
    int32_t w = d & 127, i = (d >> 7) + 16;
    return (pts[i] * (128 - w) + pts[i + 1] * w + 64) >> 7;
  };
  for (int32_t d = -2048; d < 2048; d++) t->squash[d + 2048] = calc(d);
  int32_t pi = 0;
  for (int32_t x = -2047; x <= 2047; x++) {
    int32_t v = calc(x);
    for (int32_t j = pi; j <= v; j++) t->stretch[j] = x;
    pi = v + 1;
  }
  for (int32_t j = pi; j < 4096; j++) t->stretch[j] = 2047;
  // mix: the same interpolation from d clamped to -2047, result in [1, 4095]
  for (int32_t d = -2048; d < 2048; d++) {
    int32_t x = d < -2047 ? -2047 : d;
    int32_t w = x & 127, i = (x >> 7) + 16;
    int32_t v = (pts[i] * (128 - w) + pts[i + 1] * w + 64) >> 7;
    t->msquash[d + 2048] = v < 1 ? 1 : (v > 4095 ? 4095 : v);
  }
  pi = 0;
  for (int32_t d = -2047; d <= 2047; d++) {
    int32_t v = t->msquash[d + 2048];
    for (int32_t j = pi; j <= v; j++) t->mstretch[j] = d;
    pi = v + 1;
  }
  for (int32_t j = pi; j < 4096; j++) t->mstretch[j] = 2047;
  // bit-history states, breadth first from (0, 0)
  static const int lim[7] = {60, 30, 20, 12, 8, 6, 5};
  auto allowed = [&](int a, int b) {
    if (a < b) std::swap(a, b);
    return b < 7 && a <= lim[b];
  };
  auto disc = [](int n) { return n > 2 ? n / 2 + 1 : n; };
  std::vector<std::pair<int, int>> q{{0, 0}};
  auto find = [&](std::pair<int, int> p) {
    for (size_t i = 0; i < q.size(); i++)
      if (q[i] == p) return (int)i;
    return -1;
  };
  for (size_t i = 0; i < q.size(); i++) {
    std::pair<int, int> s = q[i];
    for (int y = 0; y < 2; y++) {
      std::pair<int, int> n = s;
      if (y == 1) {
        n.second++;
        n.first = disc(n.first);
        while (!allowed(n.first, n.second)) n.second--;
      } else {
        n.first++;
        n.second = disc(n.second);
        while (!allowed(n.first, n.second)) n.first--;
      }
      int j = find(n);
      if (j < 0) {
        j = (int)q.size();
        q.push_back(n);
      }
      t->next[i][y] = (uint8_t)j;
    }
  }
  for (int i = 0; i < 256; i++) {
    int64_t n0 = 0, n1 = 0;
    if (i < (int)q.size()) {
      n0 = q[i].first;
      n1 = q[i].second;
    } else {
      t->next[i][0] = t->next[i][1] = 0;
    }
    int pr = (int)(n0 + n1);
    t->prio[i] = (uint8_t)(pr > 255 ? 255 : pr);
    int64_t p = ((2 * n1 + 1) << 22) / (2 * (n0 + n1) + 2);
    t->smInit[i] = (uint32_t)p << 10;
  }
  for (int n = 0; n < 1024; n++) t->smRate[n] = 65536 * 2 / (2 * n + 3);
  for (int j = 0; j < kCMApmBins; j++) t->apmRow[j] = (uint16_t)(calc((j - 16) * 128) * 16);
  for (int j = 0; j < 33; j++) {
    int32_t d = (j - 16) * 128;
    t->mixApmRow[j] = t->msquash[(d < -2047 ? -2047 : (d > 2047 ? 2047 : d)) + 2048] * 16;
  }
}

// cm_tables_host returns CMTabs, built once.
const CMTabs &cm_tables_host() {
  static CMTabs *t = [] {
    CMTabs *p = new CMTabs;
    cm_tables(p);
    return p;
  }();
  return *t;
}

// CMSetup allocates and initialises the cm side of a call.
struct CMSetup {
  CMBlocks B{};
  std::vector<int64_t> roff;
};

bool cm_setup(Ctx *g, Buffers *bf, int rule, int nb, const int64_t *lens, const uint8_t *params, CMSetup *cs, std::string *err) {
  CMTabs *T;
  if (!bf->alloc(&T, 1, err) || !h2d(g, T, &cm_tables_host(), sizeof(CMTabs), err)) return false;
  cs->roff.assign(nb, 0);
  std::vector<int32_t> lg(nb);
  int64_t total = 0;
  for (int i = 0; i < nb; i++) {
    lg[i] = params[i];
    if (lg[i] < kCMMinSlotsLog || lg[i] > kCMMaxSlotsLog) {
      *err = "cm parameter byte " + std::to_string(lg[i]) + " out of range [" + std::to_string(kCMMinSlotsLog) + ", " + std::to_string(kCMMaxSlotsLog) + "]";
      return false;
    }
    cs->roff[i] = total;
    total += cm_region_bytes(lens[i], lg[i]);
    if (rule == 7) total += (int64_t)16 << lmcm7_slots_log(lens[i]);  // id 7's context table, after cm's hash table
  }
  uint8_t *region;
  int64_t *droff;
  int32_t *dlg;
  CMState *dst;
  if (!bf->alloc(&region, total, err) || !bf->alloc(&droff, nb, err) || !bf->alloc(&dlg, nb, err) || !bf->alloc(&dst, nb, err)) return false;
  if (!zero(g, region, total, err) || !h2d(g, droff, cs->roff.data(), nb * sizeof(int64_t), err) ||
      !h2d(g, dlg, lg.data(), nb * sizeof(int32_t), err))
    return false;
  cs->B.T = T;
  cs->B.st = dst;
  cs->B.region = region;
  cs->B.roff = droff;
  cs->B.lg = dlg;
  return true;
}

// CM_LAUNCH launches a one-thread-per-block cm kernel on stream strm with 32
// threads per CUDA block, so that a few thousand coded blocks spread over
// every multiprocessor (their memory accesses are latency bound).
#ifdef LMFS_EMU
#define CM_LAUNCH(strm, kern, nthreads, ...) LAUNCH(kern, nthreads, __VA_ARGS__)
#else
#define CM_LAUNCH(strm, kern, nthreads, ...)                                            \
  do {                                                                                  \
    int64_t n_ = (int64_t)(nthreads);                                                   \
    if (n_ > 0) kern<<<(unsigned)((n_ + 31) / 32), 32, 0, (strm)>>>(__VA_ARGS__);       \
  } while (0)
#endif

// LMCMKernels are the encode and decode kernels of one call's rule.
using EncKernel = void (*)(CMBlocks, const int32_t *, int, const uint16_t *, int64_t, int64_t);
using DecKernel = void (*)(CMBlocks, DevState, const int32_t *, int, const uint32_t *, int64_t);
struct LMCMKernels {
  EncKernel enc;
  DecKernel dec;
};

LMCMKernels lmcm_kernels(int rule) {
  if (rule == 5) return {lmcm_encode_kernel<5>, lmcm_decode_kernel<5>};
  if (rule == 6) return {lmcm_encode_kernel<6>, lmcm_decode_kernel<6>};
  return {lmcm_encode_kernel<7>, lmcm_decode_kernel<7>};
}

// kEncChunk is how many positions the LM scores before the cm kernel codes
// them (on its own stream, while the LM scores the next chunk, or after it).
constexpr int64_t kEncChunk = 128;

// kSerialFrom is the blocks in flight from which the cm kernel runs on the
// LM's stream after each of the LM's chunks instead of beside it on a
// second stream: with many blocks the two crowd each other out (measured on
// an H200 with id 6 at 32768 blocks of 2 KiB: beside each other the LM's 2048
// steps took 2.5 s instead of 1.0 s, and both together longer than one after
// the other), with a few thousand the cm kernel hides behind the LM.
// kSerialFrom7 is the same for rule 7, whose cm kernel is the slower half
// from a few thousand blocks on (measured on an H200 at 4096 blocks of 64 KiB:
// 12.2 MB/s after the LM against 11.6 beside it, at 32768 blocks of 2 KiB 17.9
// against 14.6, at 8192 of 2 KiB 15.0 both ways).
constexpr int kSerialFrom = 24576, kSerialFrom7 = 4096;

// kCMGroup is the most blocks one cm kernel codes at once: a call with more
// runs its cm kernels (an encoding chunk's, a decoding step's) one group
// after another. The kernel is bound by scattered accesses to the blocks'
// tables in GPU memory; from a few thousand blocks on, more at once only
// evict each other's tables from the L2 cache sooner (measured on an H200
// with id 7 and 2 KiB blocks, the cm kernels' time for 2048 positions: 4096
// blocks 242 ms, 8192 blocks 498 ms; 32768 blocks at once 2786 ms, in
// groups of 8192 1995 ms, of 4096 1892 to 1929 ms).
constexpr int kCMGroup = 4096;


// EncOpts are an encoding call's schedule: cm beside the LM (below
// kSerialFrom or kSerialFrom7 blocks) or after it, chunks of kEncChunk positions. For
// measurements (results are the same bit for bit): LMFS_LMCM_SERIAL=1 (0)
// runs cm after (beside) the LM whatever the blocks in flight,
// LMFS_LMCM_CHUNK sets the positions per chunk, LMFS_LMCM_GROUP the blocks
// per cm kernel (kCMGroup), LMFS_LMCM_TIMING=1 prints
// the time of the LM's chunks, of the cm kernels and of the whole loop
// (CUDA events) to stderr.
struct EncOpts {
  int64_t chunk = kEncChunk;
  int group = kCMGroup;
  bool serial = false, timing = false;
  bool warp = false;  // id 7: lmcm7_encode_warp, a warp per block
};

// cm_group is def, or $LMFS_LMCM_GROUP (for measurements).
int cm_group(int def) {
  if (const char *v = std::getenv("LMFS_LMCM_GROUP")) {
    long long c = std::atoll(v);
    if (c >= 1 && c <= (1 << 30)) return (int)c;
  }
  return def;
}

// WarpPlan says whether a call's cm kernels are id 7's warp kernels
// (lmcm7_encode_warp, lmcm7_decode_warp) and how many blocks one launch
// codes. They are used where the call's blocks fit on the GPU at once (one
// wave of warps); above, the thread kernels, bound by DRAM from a few
// thousand blocks, code as fast or faster. Measured on an H200, the cm
// kernels' time to encode 2048 positions of 2 KiB blocks, thread kernel
// against warp kernel: 64 blocks 156 / 64 ms, 512 blocks 202 / 90 ms,
// 1536 blocks 226 / 88 ms; 8192 blocks 474 ms (groups of 4096) against
// 550 (groups of 1536, an earlier version of the warp kernel).
// LMFS_LMCM_WARP=0 (1) turns them off (on) for measurements.
struct WarpPlan {
  bool warp = false;
  int group = kCMGroup;
};

WarpPlan warp_plan(const Ctx *g, int rule, int nb) {
  WarpPlan w;
#ifdef LMFS_FAST
  int per = 0;
  if (rule == 7 && cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, lmcm7_encode_warp, 128, 0) == cudaSuccess && per > 0) {
    int wave = per * 4 * g->nsm;
    w.warp = nb <= wave;
    if (const char *v = std::getenv("LMFS_LMCM_WARP")) w.warp = std::strcmp(v, "0") != 0;
    if (w.warp) w.group = wave;
  }
#else
  (void)g, (void)rule, (void)nb;
#endif
  w.group = cm_group(w.group);
  return w;
}

EncOpts enc_opts(const Ctx *g, int rule, int nb) {
  EncOpts o;
  WarpPlan w = warp_plan(g, rule, nb);
  o.warp = w.warp;
  o.group = w.group;
  o.serial = nb >= (rule == 7 ? kSerialFrom7 : kSerialFrom);
  if (const char *v = std::getenv("LMFS_LMCM_SERIAL")) {
    if (std::strcmp(v, "1") == 0) o.serial = true;
    if (std::strcmp(v, "0") == 0) o.serial = false;
  }
  if (const char *v = std::getenv("LMFS_LMCM_CHUNK")) {
    long long c = std::atoll(v);
    if (c >= 1) o.chunk = c;
  }
  if (const char *v = std::getenv("LMFS_LMCM_TIMING")) o.timing = std::strcmp(v, "1") == 0;
  return o;
}

// lmcm_run encodes (dec == false) or decodes nb blocks with codec lm+cm,
// the mixing stage of codec id rule. Encode: data holds the blocks (lens[i] bytes each, concatenated), out
// receives the streams at outoff[i] (capacity outoff[i+1]-outoff[i]);
// outlen[i] is the stream's length or -1 when it did not fit. Decode: pay
// holds the streams at payoff[i], data receives the bytes, bad[i] is -1 for a
// block whose stream was valid, else the position where it went wrong.
// sample >= 0 (encode): its path probabilities go to sprobs.
int lmcm_run(Ctx *g, int rule, bool dec, int nb, const int64_t *lens, const uint8_t *params, uint8_t *data, uint8_t *io, const int64_t *iooff,
             int64_t *outlen, int32_t *bad, int sample, uint16_t *sprobs, int64_t token, std::string *err) {
  const Model &m = g->host;
  if (nb < 0) { *err = "negative block count"; return -1; }
  if (nb == 0) return 0;
  std::vector<int64_t> off(nb + 1, 0);
  for (int i = 0; i < nb; i++) {
    if (lens[i] < 1 || lens[i] > (1 << 30)) { *err = "block length out of range (1 to 2^30 bytes)"; return -1; }
    off[i + 1] = off[i] + lens[i];
    if (iooff[i + 1] < iooff[i]) { *err = "stream offsets decrease"; return -1; }
  }
  int64_t total = off[nb];
  // The LM's streams are the blocks in decreasing length order (slot i is
  // block order[i]): at position t the active streams are 0..active[t]-1.
  Batch B = plan(nb, lens);
  std::vector<int32_t> ident(nb);
  std::vector<int64_t> slen(nb), soff(nb), sioS(nb), sioE(nb);
  std::vector<uint8_t> sparams(nb);
  for (int i = 0; i < nb; i++) {
    int b = B.order[i];
    ident[i] = i;
    slen[i] = lens[b];
    soff[i] = off[b];
    sioS[i] = iooff[b];
    sioE[i] = iooff[b + 1];
    sparams[i] = params[b];
  }
  Buffers bf;
  DevState S;
  if (!alloc_state(g, &bf, nb, &S, err)) return -1;
  CMSetup cs;
  if (!cm_setup(g, &bf, rule, nb, slen.data(), sparams.data(), &cs, err)) return -1;
  int32_t *didx;
  int64_t *doff, *dlen, *dioS, *dioE;
  uint8_t *ddata, *dio;
  int64_t iototal = iooff[nb];
  if (!bf.alloc(&didx, nb, err) || !bf.alloc(&doff, nb, err) || !bf.alloc(&dlen, nb, err) || !bf.alloc(&ddata, total, err) ||
      !bf.alloc(&dio, iototal, err) || !bf.alloc(&dioS, nb, err) || !bf.alloc(&dioE, nb, err))
    return -1;
  if (!h2d(g, didx, ident.data(), nb * sizeof(int32_t), err) || !h2d(g, doff, soff.data(), nb * sizeof(int64_t), err) ||
      !h2d(g, dlen, slen.data(), nb * sizeof(int64_t), err) || !h2d(g, dioS, sioS.data(), nb * sizeof(int64_t), err) ||
      !h2d(g, dioE, sioE.data(), nb * sizeof(int64_t), err))
    return -1;
  if (!dec && !h2d(g, ddata, data, total, err)) return -1;
  if (dec && !h2d(g, dio, io, iototal, err)) return -1;
  CMBlocks &CB = cs.B;
  CB.rule = rule;
  const LMCMKernels K = lmcm_kernels(rule);
  CB.data = ddata;
  CB.off = doff;
  CB.len = dlen;
  CB.io = dio;
  CB.ioS = dioS;
  CB.ioE = dioE;
  LAUNCH(cm_init_kernel, (int64_t)nb * 256, CB, nb);
  CM_LAUNCH(g->stream, cm_start_kernel, nb, CB, nb, dec ? 1 : 0);
  LAUNCH(reset_kernel, (int64_t)nb * m.NL * m.H, S, m.NL, m.H, didx, nb);
  if (!launched(g, err)) return -1;
  if (!step(g, S, didx, nb, true, err, true)) return -1;  // step(BOS)
  int64_t maxlen = (int64_t)B.active.size() - 1;
  DecState D{};
  if (!dec) {
    uint16_t *dprobs;
    if (!bf.alloc(&dprobs, total * 8, err)) return -1;
    EncOpts eo = enc_opts(g, rule, nb);
#ifndef LMFS_EMU
    // The cm kernel runs on a second stream, one chunk behind the LM, or
    // (eo.serial) on the LM's stream after each chunk.
    cudaStream_t cms = nullptr;
    cudaEvent_t ev = nullptr;
    std::vector<cudaEvent_t> tev;  // eo.timing: start, then per chunk LM end, cm start, cm end, LM start (but the last)
    struct Guard {
      cudaStream_t *s;
      cudaEvent_t *e;
      std::vector<cudaEvent_t> *t;
      ~Guard() {
        for (cudaEvent_t x : *t) cudaEventDestroy(x);
        if (*e) cudaEventDestroy(*e);
        if (*s) cudaStreamDestroy(*s);
      }
    } guard{&cms, &ev, &tev};
    // (the second stream and its event only when cm runs beside the LM)
    if (!eo.serial && (!cuda_ok(cudaStreamCreateWithFlags(&cms, cudaStreamNonBlocking), "create stream", err) ||
                       !cuda_ok(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "create event", err)))
      return -1;
    cudaStream_t cstream = eo.serial ? g->stream : cms;
    auto tmark = [&](cudaStream_t s) -> bool {
      if (!eo.timing) return true;
      cudaEvent_t e;
      if (!cuda_ok(cudaEventCreate(&e), "create event", err)) return false;
      tev.push_back(e);
      return cuda_ok(cudaEventRecord(e, s), "record event", err);
    };
    if (!tmark(g->stream)) return -1;
#endif
    int64_t c0 = 0;
    auto flush = [&](int64_t t1) -> bool {
      int n = (int)B.active[c0];
#ifndef LMFS_EMU
      if (!tmark(g->stream)) return false;
      if (!eo.serial &&
          (!cuda_ok(cudaEventRecord(ev, g->stream), "record event", err) || !cuda_ok(cudaStreamWaitEvent(cms, ev, 0), "wait event", err)))
        return false;
      if (!tmark(cstream)) return false;
#endif
      // (the emulation's CM_LAUNCH has no stream: cstream is not used there)
      for (int g0 = 0; g0 < n; g0 += eo.group) {
        int gn = std::min(eo.group, n - g0);
#ifdef LMFS_FAST
        if (eo.warp) {
          lmcm7_encode_warp<<<(unsigned)(((int64_t)gn * 32 + 127) / 128), 128, 0, cstream>>>(CB, didx + g0, gn, dprobs, c0, t1);
          continue;
        }
#endif
        CM_LAUNCH(cstream, K.enc, gn, CB, didx + g0, gn, dprobs, c0, t1);
      }
#ifndef LMFS_EMU
      if (!tmark(cstream)) return false;
      if (t1 < maxlen && !tmark(g->stream)) return false;
#endif
      c0 = t1;
      return launched(g, err);
    };
    for (int64_t t = 0; t < maxlen; t++) {
      int n = (int)B.active[t];
      bool raw = false;
      if (!head(g, S, didx, n, true, &raw, err)) return -1;
      if (!freq(g, S, didx, n, kPathProbs, t, ddata, doff, dprobs, nullptr, D, raw, err)) return -1;
      if (!match_step(g, S, didx, (int)B.active[t + 1], ddata, doff, t, err)) return -1;
      if (!step(g, S, didx, (int)B.active[t + 1], true, err, true)) return -1;
      if (t + 1 - c0 >= eo.chunk && !flush(t + 1)) return -1;
      if (int r = pace(g, token, t, err)) return r;
    }
    if (c0 < maxlen && !flush(maxlen)) return -1;
#ifndef LMFS_EMU
    if (!eo.serial &&
        (!cuda_ok(cudaEventRecord(ev, cms), "record event", err) || !cuda_ok(cudaStreamWaitEvent(g->stream, ev, 0), "wait event", err)))
      return -1;
    if (eo.timing) {
      if (!sync(g, err)) return -1;
      float lm = 0, cmk = 0, all = 0, f;
      size_t k = tev.size();
      cudaEvent_t lm0 = tev[0];
      for (size_t i = 1; i + 2 < k; i += 4) {
        cudaEventElapsedTime(&f, lm0, tev[i]);
        lm += f;
        cudaEventElapsedTime(&f, tev[i + 1], tev[i + 2]);
        cmk += f;
        if (i + 3 < k) lm0 = tev[i + 3];
      }
      cudaEventElapsedTime(&all, tev[0], tev[k - 1]);
      std::fprintf(stderr, "lmcm-timing encode rule=%d nb=%d maxlen=%lld chunk=%lld group=%d serial=%d warp=%d: LM %.1f ms, cm %.1f ms, both %.1f ms\n", rule,
                   nb, (long long)maxlen, (long long)eo.chunk, eo.group, eo.serial ? 1 : 0, eo.warp ? 1 : 0, lm, cmk, all);
    }
#endif
    if (sample >= 0 && sample < nb && !d2h(g, sprobs, dprobs + off[sample] * 8, lens[sample] * 8 * sizeof(uint16_t), err)) return -1;
    std::vector<CMState> st(nb);
    if (!d2h(g, st.data(), CB.st, nb * sizeof(CMState), err) || !d2h(g, io, dio, iototal, err) || !sync(g, err)) return -1;
    for (int i = 0; i < nb; i++) outlen[B.order[i]] = st[i].bad >= 0 ? -1 : st[i].io;
    return 0;
  }
  uint32_t *dcum;
  if (!bf.alloc(&dcum, (size_t)nb * 256, err)) return -1;
  const WarpPlan wp = warp_plan(g, rule, nb);
  for (int64_t t = 0; t < maxlen; t++) {
    int n = (int)B.active[t];
    bool raw = false;
    if (!head(g, S, didx, n, true, &raw, err)) return -1;
    if (!freq(g, S, didx, n, kTables, 0, nullptr, nullptr, nullptr, dcum, D, raw, err)) return -1;
#ifdef LMFS_FAST
    LAUNCH(cum_kernel, (int64_t)n * 32, dcum, n);
#else
    LAUNCH(cum_kernel, n, dcum, n);
#endif
    for (int g0 = 0; g0 < n; g0 += wp.group) {
      int gn = std::min(wp.group, n - g0);
#ifdef LMFS_FAST
      if (wp.warp) {
        lmcm7_decode_warp<<<(unsigned)(((int64_t)gn * 32 + 127) / 128), 128, 0, g->stream>>>(CB, S, didx + g0, gn, dcum + (int64_t)g0 * 256, t);
        continue;
      }
#endif
      CM_LAUNCH(g->stream, K.dec, gn, CB, S, didx + g0, gn, dcum + (int64_t)g0 * 256, t);
    }
    if (!match_step(g, S, didx, (int)B.active[t + 1], ddata, doff, t, err)) return -1;
    if (!step(g, S, didx, (int)B.active[t + 1], true, err, true)) return -1;
    if (int r = pace(g, token, t, err)) return r;
  }
  std::vector<CMState> st(nb);
  if (!d2h(g, st.data(), CB.st, nb * sizeof(CMState), err) || !d2h(g, data, ddata, total, err) || !sync(g, err)) return -1;
  for (int i = 0; i < nb; i++) {
    int b = B.order[i];
    bad[b] = st[i].bad;
    // Decoder.Finish: a valid stream is consumed to exactly its length + 3.
    if (bad[b] < 0 && st[i].io != sioE[i] - sioS[i] + 3) bad[b] = (int32_t)lens[b];
  }
  return 0;
}

}  // namespace

extern "C" {

// lmfs_cuda_lmcm_block_bytes returns the GPU memory one block of len bytes
// with cm parameter byte params needs in an lm+cm call, besides the LM's
// state (lmfs_cuda_bytes_per_stream): cm's tables and state, the data, and
// for encoding 16 bytes per byte of LM probabilities and the stream. It
// counts lm+cm id 7's context table (16 << lmcm7_slots_log(len) bytes),
// which rules 5 and 6 do not use.
int64_t lmfs_cuda_lmcm_block_bytes(int64_t len, int params, int encode) {
  if (params < kCMMinSlotsLog || params > kCMMaxSlotsLog || len < 0) return -1;
  int64_t b = cm_region_bytes(len, params) + ((int64_t)16 << lmcm7_slots_log(len)) + (int64_t)sizeof(CMState) + 64 + len + len +
              len / 4 + 64;
  if (encode) b += 16 * len;
  else b += 1024;
  return b;
}

// lmfs_cuda_lmcm_encode codes nb blocks (block i is lens[i] >= 1 bytes of
// data at the prefix sum of lens, cm parameter byte params[i]) with codec
// lm+cm of rule `rule` (the codec id whose mixing stage runs: 5, 6 or 7). The
// arithmetic coder's stream of block i goes to out[outoff[i] ..], at most
// outoff[i+1]-outoff[i] bytes; outlen[i] is its length, or -1 if it did not
// fit. If sample is in [0, nb), the LM's path
// probabilities of that block (8 per byte) go to sprobs. Returns 0, -1 on
// error (see last error), -2 if cancelled.
int lmfs_cuda_lmcm_encode(void *h, int rule, int nb, const uint8_t *data, const int64_t *lens, const uint8_t *params, uint8_t *out,
                          const int64_t *outoff, int64_t *outlen, int sample, uint16_t *sprobs, int64_t token) {
  Ctx *g = (Ctx *)h;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  if (rule != 5 && rule != 6 && rule != 7) {
    set_err("lm+cm rule " + std::to_string(rule) + " is not in this library (it runs 5, 6 and 7)");
    return -1;
  }
  std::string err;
  int rc = lmcm_run(g, rule, false, nb, lens, params, (uint8_t *)data, out, outoff, outlen, nullptr, sample, sprobs, token, &err);
  if (rc != 0) set_err(err);
  return rc;
}

// lmfs_cuda_lmcm_decode decodes nb blocks of codec lm+cm of rule `rule`:
// block i has lens[i] >= 1 bytes, cm parameter byte params[i] and its
// arithmetic coder's stream at pay[payoff[i] .. payoff[i+1]); the bytes go to
// out at the prefix sum of lens. bad[i] is -1 for a block whose stream was
// consumed exactly as a valid one, else the position at which it went wrong.
int lmfs_cuda_lmcm_decode(void *h, int rule, int nb, const uint8_t *pay, const int64_t *payoff, const int64_t *lens, const uint8_t *params,
                          uint8_t *out, int32_t *bad, int64_t token) {
  Ctx *g = (Ctx *)h;
  std::lock_guard<std::mutex> l(g->mu);
#ifndef LMFS_EMU
  cudaSetDevice(g->device);
#endif
  if (rule != 5 && rule != 6 && rule != 7) {
    set_err("lm+cm rule " + std::to_string(rule) + " is not in this library (it runs 5, 6 and 7)");
    return -1;
  }
  std::string err;
  int rc = lmcm_run(g, rule, true, nb, lens, params, out, (uint8_t *)pay, payoff, nullptr, bad, -1, nullptr, token, &err);
  if (rc != 0) set_err(err);
  return rc;
}

}  // extern "C"
