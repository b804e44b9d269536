// Attention probabilities for the token-eviction policies (kv.ScoreRequest). For each KV head g
// of a forward of n queries q[n][Hq][D], whose rows are already in the paged pool (appended
// before), the rows [from, to) each see the head's entries [first, past+i+1): their softmax per
// query head of the group (G = Hq/Hkv), summed over the rows and averaged over the G heads, is
// written to out[off + j] for the head's first count entries. Two kernels: scores_stats takes one
// row of one KV head per block and writes each query head's softmax max and sum; scores_probs
// gives each thread one entry, kept in registers, and walks the rows in order, so the sums need
// no atomics and come out the same on every run. Per KV head hp[g*6 ...] = from, to, past, first,
// count, off (to <= from: not asked). Scores are in log2 units (scaleLog2 = scale·log2 e, exp2).
#include "common.cuh"

#define SCORES_MAXG 8  // query heads per KV head, as the decode kernel
#define SCORES_THREADS 128

struct ScoreHead {
  int from, to, past, first, count, off;
};

__device__ __forceinline__ ScoreHead score_head(const int* hp, int g) {
  const int* p = hp + g * 6;
  ScoreHead h = {p[0], p[1], p[2], p[3], p[4], p[5]};
  return h;
}

// load_queries puts row i's G query heads of KV head g into qs[G][D], times scaleLog2.
template <int D>
__device__ __forceinline__ void load_queries(float* qs, const bf16* q, int i, int g, int G, int Hq,
                                             float scaleLog2) {
  for (int c = threadIdx.x; c < G * (D / 8); c += blockDim.x) {
    int h = c / (D / 8), col = (c % (D / 8)) * 8;
    float f[8];
    unpack8(*reinterpret_cast<const uint4*>(q + ((size_t)i * Hq + g * G + h) * D + col), f);
#pragma unroll
    for (int k = 0; k < 8; k++) qs[h * D + col + k] = f[k] * scaleLog2;
  }
}

// dots sets s[h] = qs[h]·key for the G query heads. Both kernels score with it, so the
// probabilities use the very scores whose max and sum scores_stats took.
template <int D>
__device__ __forceinline__ void dots(float s[SCORES_MAXG], const float* qs, const uint4* key, int G) {
#pragma unroll
  for (int h = 0; h < SCORES_MAXG; h++) s[h] = 0.f;
#pragma unroll
  for (int c = 0; c < D / 8; c++) {
    float kf[8];
    unpack8(key[c], kf);
#pragma unroll
    for (int h = 0; h < SCORES_MAXG; h++)
      if (h < G) {
#pragma unroll
        for (int k = 0; k < 8; k++) s[h] += qs[h * D + c * 8 + k] * kf[k];
      }
  }
}

// merge folds the softmax state (om, ol) into (m, l): max and sum of 2^(s-max).
__device__ __forceinline__ void merge(float& m, float& l, float om, float ol) {
  float mn = fmaxf(m, om);
  float mu = mn == -INFINITY ? 0.f : mn;  // both empty: the sums stay 0
  l = l * exp2f(m - mu) + ol * exp2f(om - mu);
  m = mn;
}

// scores_stats: block (r, g) is row from+r of KV head g. stats[((g·maxRows + r)·G + h)·2] gets
// query head h's max score over the row's entries and [+1] its sum of 2^(score − max).
// grid = (maxRows, Hkv), SCORES_THREADS threads.
template <int D>
__device__ __forceinline__ void scores_stats(float* stats, const bf16* q, const bf16* kpool, const int* tables,
                                             const int* hp, int maxBlocks, int maxRows, int Hq, int Hkv,
                                             float scaleLog2) {
  __shared__ float qs[SCORES_MAXG * D];
  __shared__ float red_m[SCORES_THREADS / 32][SCORES_MAXG], red_l[SCORES_THREADS / 32][SCORES_MAXG];
  int r = blockIdx.x, g = blockIdx.y, G = Hq / Hkv;
  ScoreHead sh = score_head(hp, g);
  int i = sh.from + r;
  if (i >= sh.to) return;  // the whole block: this head asks fewer rows
  load_queries<D>(qs, q, i, g, G, Hq, scaleLog2);
  __syncthreads();
  const int* table = tables + (size_t)g * maxBlocks;
  float m[SCORES_MAXG], l[SCORES_MAXG];
#pragma unroll
  for (int h = 0; h < SCORES_MAXG; h++) m[h] = -INFINITY, l[h] = 0.f;
  int end = sh.past + i + 1;
  for (int j = sh.first + threadIdx.x; j < end; j += blockDim.x) {
    size_t slot = (size_t)table[j / KV_BLOCK] * KV_BLOCK + j % KV_BLOCK;
    float s[SCORES_MAXG];
    dots<D>(s, qs, reinterpret_cast<const uint4*>(kpool + slot * D), G);
#pragma unroll
    for (int h = 0; h < SCORES_MAXG; h++) merge(m[h], l[h], s[h], 1.f);
  }
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
#pragma unroll
    for (int h = 0; h < SCORES_MAXG; h++) {
      float om = __shfl_xor_sync(0xffffffff, m[h], off);
      float ol = __shfl_xor_sync(0xffffffff, l[h], off);
      merge(m[h], l[h], om, ol);
    }
  if (lane == 0) {
#pragma unroll
    for (int h = 0; h < SCORES_MAXG; h++) red_m[warp][h] = m[h], red_l[warp][h] = l[h];
  }
  __syncthreads();
  if ((int)threadIdx.x < G) {
    int h = threadIdx.x;
    float M = -INFINITY, L = 0.f;
    for (int w = 0; w < SCORES_THREADS / 32; w++) merge(M, L, red_m[w][h], red_l[w][h]);
    float* dst = stats + (((size_t)g * maxRows + r) * G + h) * 2;
    dst[0] = M;
    dst[1] = L;
  }
}

// scores_probs: block (b, g) takes entries j = b·SCORES_THREADS + thread of KV head g (j < count),
// each thread its entry's key, and sums over the asked rows that see it and the G query heads
// 2^(score − max)/sum with scores_stats's max and sum; out[off + j] = that / G. Rows that see
// none of the block's entries are skipped by the whole block. grid = (ceil(max count /
// SCORES_THREADS), Hkv), SCORES_THREADS threads.
template <int D>
__device__ __forceinline__ void scores_probs(float* out, const float* stats, const bf16* q, const bf16* kpool,
                                             const int* tables, const int* hp, int maxBlocks, int maxRows,
                                             int Hq, int Hkv, float scaleLog2) {
  __shared__ float qs[SCORES_MAXG * D];
  int g = blockIdx.y, G = Hq / Hkv;
  ScoreHead sh = score_head(hp, g);
  int j0 = blockIdx.x * SCORES_THREADS, j = j0 + threadIdx.x;
  if (sh.to <= sh.from || j0 >= sh.count) return;  // the whole block
  int j1 = min(j0 + SCORES_THREADS, sh.count);      // the block's entries [j0, j1)
  bool mine = j < sh.count;
  uint4 key[D / 8];
  if (mine) {
    size_t slot = (size_t)tables[(size_t)g * maxBlocks + j / KV_BLOCK] * KV_BLOCK + j % KV_BLOCK;
#pragma unroll
    for (int c = 0; c < D / 8; c++) key[c] = reinterpret_cast<const uint4*>(kpool + slot * D)[c];
  } else {
#pragma unroll
    for (int c = 0; c < D / 8; c++) key[c] = make_uint4(0, 0, 0, 0);
  }
  const float* st = stats + (size_t)g * maxRows * G * 2;
  float p = 0.f;
  for (int i = sh.from; i < sh.to; i++) {
    int end = sh.past + i + 1;  // row i sees [first, end)
    if (j0 >= end || j1 <= sh.first) continue;
    __syncthreads();  // every thread is done with the previous row's queries
    load_queries<D>(qs, q, i, g, G, Hq, scaleLog2);
    __syncthreads();
    if (mine && j >= sh.first && j < end) {
      float s[SCORES_MAXG];
      dots<D>(s, qs, key, G);
      const float* ml = st + (size_t)(i - sh.from) * G * 2;
#pragma unroll
      for (int h = 0; h < SCORES_MAXG; h++)
        if (h < G) p += exp2f(s[h] - ml[2 * h]) / ml[2 * h + 1];
    }
  }
  if (mine) out[sh.off + j] = p / G;
}

#define SCORES(D)                                                                                        \
  extern "C" __global__ void __launch_bounds__(SCORES_THREADS)                                          \
      scores_stats_d##D(float* stats, const bf16* q, const bf16* kpool, const int* tables, const int* hp, \
                        int maxBlocks, int maxRows, int Hq, int Hkv, float scaleLog2) {                  \
    scores_stats<D>(stats, q, kpool, tables, hp, maxBlocks, maxRows, Hq, Hkv, scaleLog2);                \
  }                                                                                                      \
  extern "C" __global__ void __launch_bounds__(SCORES_THREADS)                                          \
      scores_probs_d##D(float* out, const float* stats, const bf16* q, const bf16* kpool,                \
                        const int* tables, const int* hp, int maxBlocks, int maxRows, int Hq, int Hkv,   \
                        float scaleLog2) {                                                               \
    scores_probs<D>(out, stats, q, kpool, tables, hp, maxBlocks, maxRows, Hq, Hkv, scaleLog2);          \
  }
SCORES(64)
SCORES(128)
