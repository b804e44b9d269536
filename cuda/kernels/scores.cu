// Attention probabilities for the token-eviction policies (kv.ScoreRequest). For each KV head g
// of a forward of n queries q[n][Hq][D], whose rows are already in the paged pool (appended
// before), the rows [from, to) each see the head's entries [first, past+i+1): their softmax per
// query head of the group (G = Hq/Hkv), summed over the rows and averaged over the G heads, is
// written to out[off + j] for the head's first count entries. Two float32 kernels (a tensor-core
// variant follows them): scores_stats takes one row of one KV head per block and writes each
// query head's softmax max and sum; scores_probs gives each thread one entry, kept in registers,
// and walks the rows in order, so the sums need no atomics and come out the same on every run.
// Per KV head hp[g*6 ...] = from, to, past, first, count, off (to <= from: not asked). Scores
// are in log2 units (scaleLog2 = scale·log2 e, exp2).
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

// ---- Tensor-core variant ($KVFOOT_SCORES=mma): the same requests and outputs on mma.sync
// m16n8k16 (bf16 in, f32 out), built like attention.cu's attn_prefill. A row v of KV head g is
// query head g·G + v%G at position from + v/G, so each K tile feeds all G heads that read it.
// scores_mma_stats (rows × key tiles, split over the keys) writes each row's max and sum per
// split, scores_mma_lse merges the splits into the row's log-sum-exp, and scores_mma_probs (key
// blocks × row tiles) recomputes the scores with keys as the MMA's rows and sums 2^(s − lse)
// along each key's fragment row, so every key's sum stays in one warp's registers: no atomics,
// the same result on every run. Dynamic shared memory of stats and probs: 256·(D+8)·2 bytes.

// exp2 as the one MUFU instruction (flush-to-zero; exp2(-inf) = 0), as attn_prefill's.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// load_query_rows starts the cp.async of rows [v0, v0 + N) of KV head g into dst ([N][D+8]),
// zeros past the head's rows; the G query heads of one position are adjacent in q.
template <int D, int N>
__device__ __forceinline__ void load_query_rows(bf16* dst, const bf16* q, int v0, int rows, int from, int g,
                                                int G, int Hq) {
  constexpr int P = D + 8, CH = D / 8, RSTEP = 128 / CH;
  int lr = threadIdx.x / CH, lc = (threadIdx.x % CH) * 8;
#pragma unroll
  for (int i = 0; i < N / RSTEP; i++) {
    int r = lr + i * RSTEP, v = v0 + r;
    int pos = v / G;
    bool ok = v < rows;
    const bf16* src = q + ((size_t)(from + pos) * Hq + g * G + (v - pos * G)) * D + lc;
    cp_async16(dst + r * P + lc, ok ? src : q, ok);
  }
}

// scores_mma_stats: block (b, g, s) takes 128 rows of KV head g (the last rows first: they see
// the most keys) and the 64-entry key tiles [s·per, (s+1)·per) of those the rows see, tile t
// being pool block table[t]. stats[((s·Hkv + g)·maxRows·G + v)·2] gets row v's max score (log2
// units) over the split's keys and [+1] its sum of 2^(score − max); a split that sees none writes
// (−inf, 0). Each of the 4 warps owns 32 rows (two m16 tiles); K tiles are double-buffered with
// cp.async; masks only on tiles that start before first or cross the block's diagonal.
// grid = (ceil(maxRows·G/128), Hkv, splits), 128 threads.
template <int D>
__device__ __forceinline__ void scores_mma_stats(float* stats, const bf16* q, const bf16* kpool, const int* tables,
                                                 const int* hp, int maxBlocks, int maxRows, int Hq, int Hkv,
                                                 int per, float scaleLog2) {
  constexpr int P = D + 8, CH = D / 8, RSTEP = 128 / CH;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);  // [128][P]
  bf16* Ks = Qs + 128 * P;                    // [2][64][P]
  int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int g = blockIdx.y, G = Hq / Hkv;
  ScoreHead sh = score_head(hp, g);
  int rows = (sh.to - sh.from) * G;
  int v0 = (gridDim.x - 1 - blockIdx.x) * 128;
  if (v0 >= rows) return;  // this head asks fewer rows (or none)
  const int* table = tables + (size_t)g * maxBlocks;
  int pFirst = sh.from + v0 / G, pLast = sh.from + (min(rows, v0 + 128) - 1) / G;
  int end = sh.past + pLast + 1;  // the block's rows see entries [first, end)
  int split = blockIdx.z;
  int t0 = max(sh.first / 64, split * per), t1 = min((end + 63) / 64, (split + 1) * per);
  int lr = tid / CH, lc = (tid % CH) * 8;

  if (t0 < t1) load_query_rows<D, 128>(Qs, q, v0, rows, sh.from, g, G, Hq);
  // The pool block of the next tile, read a tile ahead (as attn_prefill's) so that its latency
  // hides behind a tile's compute instead of holding up the tile's loads.
  int nextBlock = t0 < t1 ? table[t0] : 0;
  auto load = [&](int t, int st) {
    bf16* ks = Ks + st * 64 * P;
    const bf16* kb = kpool + (size_t)nextBlock * KV_BLOCK * D;
    nextBlock = t + 1 < t1 ? table[t + 1] : 0;
    int valid = end - t * 64;  // entries past the last row's own are never seen: zeros
#pragma unroll
    for (int i = 0; i < 64 / RSTEP; i++) {
      int r = lr + i * RSTEP;
      bool ok = r < valid;
      cp_async16(ks + r * P + lc, ok ? kb + (size_t)r * D + lc : kpool, ok);
    }
  };
  if (t0 < t1) load(t0, 0);
  cp_async_commit();  // Q and the first tile

  int gq = lane >> 2, t4 = lane & 3;
  auto rowOf = [&](int i) { return v0 + warp * 32 + (i >> 1) * 16 + (i & 1) * 8 + gq; };
  float mrow[4], lrow[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    mrow[i] = -INFINITY;
    lrow[i] = 0.f;
  }
  for (int t = t0; t < t1; t++) {
    cp_async_wait<0>();
    __syncthreads();  // tile t landed for all, and every warp is done with the stage reloaded next
    if (t + 1 < t1) load(t + 1, (t + 1 - t0) & 1);
    cp_async_commit();
    const bf16* ks = Ks + ((t - t0) & 1) * 64 * P;

    float s[2][8][4];
    warp_products<D, P>(s, Qs, ks, warp, lane);

    // Row v sees entries [first, past + from + v/G]: mask columns outside on edge tiles.
    int j0 = t * 64;
    if (j0 < sh.first || j0 + 63 > sh.past + pFirst) {
#pragma unroll
      for (int i = 0; i < 4; i++) {
        int lo = sh.first - j0, hi = sh.past + sh.from + rowOf(i) / G - j0;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
          for (int e = 0; e < 2; e++) {
            int c = j * 8 + t4 * 2 + e;
            if (c < lo || c > hi) s[i >> 1][j][(i & 1) * 2 + e] = -INFINITY;
          }
      }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
      float(&sr)[8][4] = s[i >> 1];
      int e0 = (i & 1) * 2;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 8; j++) mx = fmaxf(mx, fmaxf(sr[j][e0], sr[j][e0 + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
      float mnew = fmaxf(mrow[i], mx * scaleLog2);
      float mu = mnew == -INFINITY ? 0.f : mnew;  // nothing seen yet: every term is 0
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = e0; e < e0 + 2; e++) sum += exp2_approx(fmaf(sr[j][e], scaleLog2, -mu));
      lrow[i] = lrow[i] * exp2_approx(mrow[i] - mu) + sum;
      mrow[i] = mnew;
    }
  }

#pragma unroll
  for (int i = 0; i < 4; i++) {
    float l = lrow[i];
    l += __shfl_xor_sync(0xffffffff, l, 1);
    l += __shfl_xor_sync(0xffffffff, l, 2);
    int v = rowOf(i);
    if (t4 == 0 && v < rows) {
      float* dst = stats + (((size_t)split * Hkv + g) * maxRows * G + v) * 2;
      dst[0] = mrow[i];
      dst[1] = l;
    }
  }
}

// scores_mma_lse: lse[g·maxRows·G + v] = row v's log2-sum-exp2 of its scores over the splits'
// (max, sum) pairs. grid = (ceil(maxRows·G/128), Hkv), 128 threads.
extern "C" __global__ void __launch_bounds__(128)
    scores_mma_lse(float* lse, const float* stats, const int* hp, int maxRows, int Hq, int Hkv, int splits) {
  int g = blockIdx.y, G = Hq / Hkv;
  ScoreHead sh = score_head(hp, g);
  int v = blockIdx.x * 128 + threadIdx.x;
  if (v >= (sh.to - sh.from) * G) return;
  size_t row = (size_t)g * maxRows * G + v, splitStride = (size_t)Hkv * maxRows * G;
  float M = -INFINITY, S = 0.f;
  for (int s = 0; s < splits; s++) M = fmaxf(M, stats[(s * splitStride + row) * 2]);
  for (int s = 0; s < splits; s++) {  // a split that saw none of the row's keys adds 0·2^(−inf)
    const float* ml = stats + (s * splitStride + row) * 2;
    S += ml[1] * exp2_approx(ml[0] - M);
  }
  lse[row] = M + log2f(S);
}

// scores_mma_probs: block (b, g) takes the 128 entries j0 = b·128 onwards of KV head g (those
// below count), each warp 32 of them as two m16 tiles, and walks the 64-row tiles of the rows
// that see any of them (position ≥ j0 − past), computing Sᵀ = K·Qᵀ and adding 2^(s − lse) of
// every visible (entry, row) to the entry's sum; out[off + j] = that sum / G. Q tiles are
// double-buffered with cp.async, their rows' lse (scores_mma_lse) fetched a tile ahead.
// grid = (ceil(max count / 128), Hkv), 128 threads.
template <int D>
__device__ __forceinline__ void scores_mma_probs(float* out, const float* lse, const bf16* q, const bf16* kpool,
                                                 const int* tables, const int* hp, int maxBlocks, int maxRows,
                                                 int Hq, int Hkv, float scaleLog2) {
  constexpr int P = D + 8, CH = D / 8, RSTEP = 128 / CH;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);  // [128][P]
  bf16* Qs = Ks + 128 * P;                    // [2][64][P]
  __shared__ float lses[2][64];
  int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int g = blockIdx.y, G = Hq / Hkv;
  ScoreHead sh = score_head(hp, g);
  int j0 = blockIdx.x * 128;
  if (sh.to <= sh.from || j0 >= sh.count) return;  // the whole block
  int rows = (sh.to - sh.from) * G;
  // Rows before position j0 − past see none of the block's entries, and none sees one below first.
  int vStart = j0 + 127 < sh.first ? rows : max(0, j0 - sh.past - sh.from) * G;
  int T = (rows - vStart + 63) / 64;
  const int* table = tables + (size_t)g * maxBlocks;
  int lr = tid / CH, lc = (tid % CH) * 8;
  {
    int valid = sh.count - j0;  // entries at or past count are not scored: zeros
    const bf16* kb0 = kpool + (size_t)table[j0 / KV_BLOCK] * KV_BLOCK * D;
    const bf16* kb1 = valid > 64 ? kpool + (size_t)table[j0 / KV_BLOCK + 1] * KV_BLOCK * D : kpool;
#pragma unroll
    for (int i = 0; i < 128 / RSTEP; i++) {
      int r = lr + i * RSTEP;
      bool ok = r < valid;
      const bf16* src = (r < 64 ? kb0 + (size_t)r * D : kb1 + (size_t)(r - 64) * D) + lc;
      cp_async16(Ks + r * P + lc, ok ? src : kpool, ok);
    }
  }
  const float* rowLse = lse + (size_t)g * maxRows * G;
  // Rows past the head's weigh 2^(s − inf) = 0 (their Q rows are zeros).
  auto lseOf = [&](int it) { int v = vStart + it * 64 + tid; return v < rows ? rowLse[v] : INFINITY; };
  float nextLse = 0.f;  // tid < 64: the lse of row tid of tile it + 1, in flight during tile it
  if (T > 0) {
    load_query_rows<D, 64>(Qs, q, vStart, rows, sh.from, g, G, Hq);
    if (tid < 64) {
      lses[0][tid] = lseOf(0);
      if (T > 1) nextLse = lseOf(1);
    }
  }
  cp_async_commit();  // K and the first Q tile

  int gq = lane >> 2, t4 = lane & 3;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};  // entry j0 + warp·32 + (i>>1)·16 + (i&1)·8 + gq
  for (int it = 0; it < T; it++) {
    cp_async_wait<0>();
    __syncthreads();  // tile it landed for all, and every warp is done with the stage reloaded next
    if (it + 1 < T)
      load_query_rows<D, 64>(Qs + ((it + 1) & 1) * 64 * P, q, vStart + (it + 1) * 64, rows, sh.from, g, G, Hq);
    cp_async_commit();
    const bf16* qs = Qs + (it & 1) * 64 * P;
    const float* ls = lses[it & 1];

    float s[2][8][4];
    warp_products<D, P>(s, Ks, qs, warp, lane);

    // Entry j0 + k is seen by row v iff first ≤ j0 + k ≤ past + from + v/G: masks on edge tiles only.
    int v0 = vStart + it * 64;
    if (j0 < sh.first || j0 + 127 > sh.past + sh.from + v0 / G) {
      int lo = sh.first - j0;
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
          int hi = sh.past + sh.from + (v0 + j * 8 + t4 * 2 + e) / G - j0;
#pragma unroll
          for (int i = 0; i < 4; i++) {
            int k = warp * 32 + (i >> 1) * 16 + (i & 1) * 8 + gq;
            if (k < lo || k > hi) s[i >> 1][j][(i & 1) * 2 + e] = -INFINITY;
          }
        }
    }
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        float l = ls[j * 8 + t4 * 2 + e];
#pragma unroll
        for (int i = 0; i < 4; i++) acc[i] += exp2_approx(fmaf(s[i >> 1][j][(i & 1) * 2 + e], scaleLog2, -l));
      }
    if (tid < 64 && it + 1 < T) {  // the next stage's readers passed this tile's barrier
      lses[(it + 1) & 1][tid] = nextLse;
      if (it + 2 < T) nextLse = lseOf(it + 2);
    }
  }
  cp_async_wait<0>();  // none in flight at exit (K's, when no row sees the block)

#pragma unroll
  for (int i = 0; i < 4; i++) {
    float p = acc[i];
    p += __shfl_xor_sync(0xffffffff, p, 1);
    p += __shfl_xor_sync(0xffffffff, p, 2);
    int j = j0 + warp * 32 + (i >> 1) * 16 + (i & 1) * 8 + gq;
    if (t4 == 0 && j < sh.count) out[sh.off + j] = p / G;
  }
}

#define SCORES_MMA(D)                                                                                     \
  extern "C" __global__ void __launch_bounds__(128)                                                      \
      scores_mma_stats_d##D(float* stats, const bf16* q, const bf16* kpool, const int* tables,            \
                            const int* hp, int maxBlocks, int maxRows, int Hq, int Hkv, int per,          \
                            float scaleLog2) {                                                           \
    scores_mma_stats<D>(stats, q, kpool, tables, hp, maxBlocks, maxRows, Hq, Hkv, per, scaleLog2);       \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(128)                                                      \
      scores_mma_probs_d##D(float* out, const float* lse, const bf16* q, const bf16* kpool,              \
                            const int* tables, const int* hp, int maxBlocks, int maxRows, int Hq,         \
                            int Hkv, float scaleLog2) {                                                  \
    scores_mma_probs<D>(out, lse, q, kpool, tables, hp, maxBlocks, maxRows, Hq, Hkv, scaleLog2);         \
  }
SCORES_MMA(64)
SCORES_MMA(128)
