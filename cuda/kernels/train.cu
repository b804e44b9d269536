// Kernels of mask training (PruLong and DuoAttention gate gradients, issue 23): attention over
// a full or streaming band, forward and backward, and the backward passes of the row and element
// ops. bf16 in and out, f32 arithmetic. The attention is FlashAttention-2 on tensor cores
// (mma.sync m16n8k16: bf16 operands, f32 accumulators, as attention.cu's attn_prefill): tiles of
// 64 queries and 64 keys (32 queries in the dK/dV kernel of D = 128) pass through shared memory
// by cp.async, double-buffered; the forward keeps its softmax online in registers and writes
// each row's lse; the backward recomputes P from that lse, one kernel for dK and dV (a CTA per
// key tile), one for dQ (a CTA per query tile), no atomics, the same sums in the same order on
// every run. P and dS enter the products as bf16. The tile loops skip every key tile (query
// tile) that the band hides, which is what makes streaming heads cheap.
#include "common.cuh"

#define TILE 64  // queries and keys of an attention tile (forward, dK/dV and dQ)
#define LN2 0.69314718055994531f
#define LOG2E 1.44269504088896341f

// Query i sees key j: j <= i and, for a streaming band (window >= 1), j < sink or i - j < window
// (train/attention.go's band.visible).
__device__ __forceinline__ bool band_visible(int i, int j, int sink, int window) {
  return j <= i && (window == 0 || j < sink || j > i - window);
}

// The key tiles (of tk keys) that queries [i0, i1) see: [0, sinkEnd) then [winBegin, end),
// winBegin >= sinkEnd. A streaming band needs the keys below min(sink, i1) and those from
// i0 - window + 1 up to i1 - 1; a full band sinkEnd = winBegin = end. Go's model of this loop
// is keyTiles in train_test.go.
struct TileRange {
  int sinkEnd, winBegin, end;
  __device__ int first() const { return sinkEnd > 0 ? 0 : winBegin; }
  __device__ int next(int kb) const { return kb + 1 == sinkEnd ? winBegin : kb + 1; }
};

__device__ __forceinline__ TileRange key_tiles(int i0, int i1, int sink, int window, int tk) {
  TileRange r;
  r.end = (i1 - 1) / tk + 1;
  if (window == 0) {
    r.sinkEnd = r.winBegin = r.end;
    return r;
  }
  r.sinkEnd = (min(sink, i1) + tk - 1) / tk;
  r.winBegin = max(r.sinkEnd, max(0, i0 - window + 1) / tk);
  return r;
}

// One past the last query that sees any of keys [j0, j1): all later queries see a sink key;
// otherwise the last key's window ends there.
__device__ __forceinline__ int query_end(int j0, int j1, int n, int sink, int window) {
  if (window == 0 || j0 < sink) return n;
  return min(n, j1 - 1 + window);
}

// Does the tile of queries [i0, i0 + rows) and keys [j0, j0 + cols) hold a pair that the band
// hides (a key after its query, or one below a query's window and past the sink)? Only such
// tiles are masked; the loops never visit a tile that hides every pair.
__device__ __forceinline__ bool tile_masked(int i0, int rows, int j0, int cols, int sink, int window) {
  return j0 + cols - 1 > i0 || (window > 0 && max(j0, sink) <= min(j0 + cols - 1, i0 + rows - 1 - window));
}

// exp2 as the one MUFU instruction (flush-to-zero; exp2(-inf) = 0), as attn_prefill's.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Starts the cp.async of rows [r0, r0 + ROWS) of head `head` of x ([n][heads][D]) into sh
// ([ROWS][D + 8]; the padding of 8 puts the 8 rows of an ldmatrix in different banks); rows at
// or past n are zero-filled. THREADS threads, tid among them, share the copy.
template <int D, int THREADS, int ROWS = TILE>
__device__ __forceinline__ void load_tile(bf16* sh, const bf16* x, int r0, int n, int heads, int head, int tid) {
  constexpr int P = D + 8, CH = D / 8;
  static_assert(ROWS * CH % THREADS == 0, "whole chunks a thread");
#pragma unroll
  for (int i = 0; i < ROWS * CH / THREADS; i++) {
    const int c = tid + i * THREADS, r = c / CH, col = c % CH * 8;
    const bool ok = r0 + r < n;
    cp_async16(sh + r * P + col, x + ((size_t)(ok ? r0 + r : 0) * heads + head) * D + col, ok);
  }
}

// The A operand of a warp's products: its 16 rows of a [TILE][D + 8] tile, k-step kk (16
// columns) at a time, held in registers (HOLD) or re-read from shared memory at each use (where
// the D = 128 kernels' accumulators leave no registers for them).
template <int D, bool HOLD>
struct RowFrags {
  const bf16* rows;
  uint32_t f[HOLD ? D / 16 : 1][4];
  // After the tile has landed; the warp's 32 lanes together (ldmatrix).
  __device__ __forceinline__ void init(const bf16* r, int lane) {
    rows = r;
    if constexpr (HOLD) {
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++) fetch(f[kk], kk, lane);
    }
  }
  __device__ __forceinline__ void fetch(uint32_t a[4], int kk, int lane) const {
    ldmatrix_x4(a, rows + (lane & 15) * (D + 8) + kk * 16 + (lane >> 4) * 8);
  }
  __device__ __forceinline__ void get(uint32_t a[4], int kk, int lane) const {
    if constexpr (HOLD) {
#pragma unroll
      for (int e = 0; e < 4; e++) a[e] = f[kk][e];
    } else {
      fetch(a, kk, lane);
    }
  }
};

// s = A·Bᵀ: the warp's 16 rows of A against N rows of B ([N][D + 8] bf16) over D columns, as
// m16n8k16 accumulators: s[j] holds columns 8j … 8j + 7 (thread: rows lane/4 and lane/4 + 8,
// columns 2·(lane%4) and the next).
template <int D, int N, bool HOLD>
__device__ __forceinline__ void mma_abt(float (&s)[N / 8][4], const RowFrags<D, HOLD>& A, const bf16* B, int lane) {
#pragma unroll
  for (int j = 0; j < N / 8; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) s[j][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t a[4];
    A.get(a, kk, lane);
#pragma unroll
    for (int np = 0; np < N / 16; np++) {
      uint32_t r[4];
      ldmatrix_x4(r, B + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * (D + 8) + kk * 16 + ((lane >> 3) & 1) * 8);
      mma16816(s[2 * np], a, r[0], r[1]);
      mma16816(s[2 * np + 1], a, r[2], r[3]);
    }
  }
}

// o += p·B: p the warp's 16×N accumulators (mma_abt's layout), rounded to bf16 as the A
// operand, B N rows of D values ([N][D + 8] bf16).
template <int D, int N>
__device__ __forceinline__ void mma_pb(float (&o)[D / 8][4], const float (&p)[N / 8][4], const bf16* B, int lane) {
#pragma unroll
  for (int kk = 0; kk < N / 16; kk++) {
    const uint32_t a[4] = {pack2(p[2 * kk][0], p[2 * kk][1]), pack2(p[2 * kk][2], p[2 * kk][3]),
                           pack2(p[2 * kk + 1][0], p[2 * kk + 1][1]), pack2(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int dp = 0; dp < D / 16; dp++) {
      uint32_t r[4];
      ldmatrix_x4_trans(r, B + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * (D + 8) + dp * 16 + (lane >> 4) * 8);
      mma16816(o[2 * dp], a, r[0], r[1]);
      mma16816(o[2 * dp + 1], a, r[2], r[3]);
    }
  }
}

// Sets to −inf the accumulators of pairs the band hides: the thread's rows r and r + 8 against
// columns c + 8j and c + 8j + 1 (c = the tile's first column + 2·(lane%4)). Rows are queries and
// columns keys, or (KEYROWS, the dK/dV kernel's transposed scores) the other way round.
template <bool KEYROWS, int NT>
__device__ __forceinline__ void mask_hidden(float (&s)[NT][4], int r, int c, int sink, int window) {
#pragma unroll
  for (int j = 0; j < NT; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int row = r + 8 * (e >> 1), col = c + 8 * j + (e & 1);
      if (!(KEYROWS ? band_visible(col, row, sink, window) : band_visible(row, col, sink, window))) s[j][e] = -INFINITY;
    }
}

// Writes rows r and r + 8 (those below n) of the accumulators a·mul[row] to dst rows of D
// values, row i at dst + i·stride.
template <int D>
__device__ __forceinline__ void store_rows(bf16* dst, size_t stride, const float (&a)[D / 8][4], int r, int n,
                                           const float mul[2], int t4) {
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    if (r + 8 * hf >= n) continue;
    bf16* row = dst + (size_t)(r + 8 * hf) * stride + 2 * t4;
#pragma unroll
    for (int d = 0; d < D / 8; d++)
      *reinterpret_cast<__nv_bfloat162*>(row + d * 8) =
          __floats2bfloat162_rn(a[d][2 * hf] * mul[hf], a[d][2 * hf + 1] * mul[hf]);
  }
}

// Forward: out = softmax(scale·q·kᵀ over the band)·v and lse (natural log) for TILE query rows
// of one query head, each of the 4 warps 16 rows (Q's fragments in registers), over the key
// tiles the band shows them (K and V tiles double-buffered). Scores live in the base-2 domain
// (scaleLog2 = scale·log2 e). grid = (ceil(n / TILE), hq), block L = x + y·gridDim.x taking
// query tile tiles − 1 − L / hq of head L % hq: the longest rows first, every head's at once.
// 128 threads; dynamic shared memory 5·TILE·(D + 8)·2 bytes.
template <int D>
__device__ __forceinline__ void attn_band_fwd(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                              int n, int hq, int hkv, int sink, int window, float scaleLog2) {
  constexpr int P = D + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);  // [TILE][P]
  bf16* Ks = Qs + TILE * P;                   // [2][TILE][P]
  bf16* Vs = Ks + 2 * TILE * P;               // [2][TILE][P]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t4 = lane & 3;
  const int L = blockIdx.y * gridDim.x + blockIdx.x;
  const int h = L % hq, g = h / (hq / hkv);
  const int i0 = (gridDim.x - 1 - L / hq) * TILE, i1 = min(i0 + TILE, n);
  const int r = i0 + warp * 16 + (lane >> 2);  // this thread's rows: r and r + 8
  const TileRange tiles = key_tiles(i0, i1, sink, window, TILE);
  int kb = tiles.first();  // every query sees itself: at least one tile
  load_tile<D, 128>(Qs, q, i0, n, hq, h, tid);
  load_tile<D, 128>(Ks, k, kb * TILE, n, hkv, g, tid);
  load_tile<D, 128>(Vs, v, kb * TILE, n, hkv, g, tid);
  cp_async_commit();

  RowFrags<D, true> qf;
  float o[D / 8][4];
#pragma unroll
  for (int d = 0; d < D / 8; d++)
#pragma unroll
    for (int e = 0; e < 4; e++) o[d][e] = 0.f;
  // Row hf's running max (log2 units) and this thread's part of its sum (the quad's at the end).
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
  for (int it = 0; kb < tiles.end; it++) {
    cp_async_wait<0>();
    __syncthreads();  // tile it landed for all, and every warp is done with the stage loaded next
    if (it == 0) qf.init(Qs + warp * 16 * P, lane);
    const int next = tiles.next(kb);
    if (next < tiles.end) {
      load_tile<D, 128>(Ks + ((it + 1) & 1) * TILE * P, k, next * TILE, n, hkv, g, tid);
      load_tile<D, 128>(Vs + ((it + 1) & 1) * TILE * P, v, next * TILE, n, hkv, g, tid);
    }
    cp_async_commit();
    const bf16* ks = Ks + (it & 1) * TILE * P;
    const bf16* vs = Vs + (it & 1) * TILE * P;

    float s[TILE / 8][4];
    mma_abt<D, TILE>(s, qf, ks, lane);
    // Keys past n lie only in the diagonal tile, after every row below n: masked as hidden.
    if (tile_masked(i0, TILE, kb * TILE, TILE, sink, window)) mask_hidden<false>(s, r, kb * TILE + 2 * t4, sink, window);

    float alpha[2];
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < TILE / 8; j++) mx = fmaxf(mx, fmaxf(s[j][2 * hf], s[j][2 * hf + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
      const float mnew = fmaxf(mrow[hf], mx * scaleLog2);
      const float mu = mnew == -INFINITY ? 0.f : mnew;  // nothing seen yet: every p is 0
      alpha[hf] = exp2_approx(mrow[hf] - mu);
      mrow[hf] = mnew;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < TILE / 8; j++)
#pragma unroll
        for (int e = 2 * hf; e < 2 * hf + 2; e++) {
          s[j][e] = exp2_approx(fmaf(s[j][e], scaleLog2, -mu));
          sum += s[j][e];
        }
      lrow[hf] = lrow[hf] * alpha[hf] + sum;
    }
    // Once the running maxima settle, most tiles change none of the warp's: skip the rescale.
    if (__any_sync(0xffffffff, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
      for (int d = 0; d < D / 8; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[d][e] *= alpha[e >> 1];
    }
    mma_pb<D, TILE>(o, s, vs, lane);
    kb = next;
  }

  float inv[2];
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    float l = lrow[hf];
    l += __shfl_xor_sync(0xffffffff, l, 1);
    l += __shfl_xor_sync(0xffffffff, l, 2);
    inv[hf] = 1.f / l;  // every query sees itself: l >= 1
    if (t4 == 0 && r + 8 * hf < n) lse[(size_t)h * n + r + 8 * hf] = (mrow[hf] + log2f(l)) * LN2;
  }
  store_rows<D>(out + (size_t)h * D, (size_t)hq * D, o, r, n, inv, t4);
}

// Backward, keys' side: dk and dv of TILE keys of one KV head, summed over its query heads and
// every query tile that sees the keys (no atomics: each CTA owns its rows). The group's query
// heads' tiles of QT rows, in order, go in turn to the CTA's two halves of 4 warps, each warp
// 16 keys; every step loads (double-buffered) each half's Q and dout tile and the rows' lse and
// delta. A warp computes Sᵀ = K·Qᵀ and dPᵀ = V·doutᵀ, P = exp(scale·s − lse), dS = P∘(dP −
// delta), and adds dV += Pᵀ·dout, dK += dSᵀ·Q; at the end the halves add their sums (dK in one,
// dV in the other) through shared memory. D = 64 holds K's and V's fragments in registers and
// takes query tiles of QT = 64; D = 128 re-reads them and takes QT = 32, for registers and for
// shared memory (within the A100's 163 KiB). lse is natural-log (as the forward writes it).
// grid = (ceil(n / TILE), hkv), block L = x + y·gridDim.x taking key tile L / hkv of KV head
// L % hkv: the keys most queries see first. 256 threads; dynamic shared memory (2·TILE + 8·QT)·
// (D + 8)·2 + 8·QT·4 bytes.
template <int D>
__device__ __forceinline__ void attn_band_dkdv(bf16* dk, bf16* dv, const bf16* dout, const float* lse,
                                               const float* delta, const bf16* q, const bf16* k, const bf16* v,
                                               int n, int hq, int hkv, int sink, int window, float scale,
                                               float scaleLog2) {
  constexpr int P = D + 8, QT = D == 64 ? 64 : 32;
  constexpr bool HOLD = D == 64;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);  // [TILE][P]
  bf16* Vs = Ks + TILE * P;                   // [TILE][P]
  bf16* Qs = Vs + TILE * P;                   // [stage][half][QT][P]
  bf16* Os = Qs + 4 * QT * P;                 // [stage][half][QT][P] (dout)
  float* Ls = reinterpret_cast<float*>(Os + 4 * QT * P);  // [stage][half][QT] lse·log2 e
  float* Es = Ls + 4 * QT;                                  // [stage][half][QT] delta
  const int tid = threadIdx.x, half = tid >> 7, ht = tid & 127, warp = ht >> 5, lane = tid & 31, t4 = lane & 3;
  const int L = blockIdx.y * gridDim.x + blockIdx.x;
  const int g = L % hkv, group = hq / hkv;
  const int j0 = L / hkv * TILE, j1 = min(j0 + TILE, n);
  const int r = j0 + warp * 16 + (lane >> 2);  // this thread's keys: r and r + 8
  // Query tiles i0 = j0, j0 + QT, … below qEnd (no query before j0 sees the keys), for each of
  // the group's heads: T tiles, tile 2s + half at step s.
  const int perHead = (query_end(j0, j1, n, sink, window) - j0 + QT - 1) / QT;
  const int T = group * perHead, steps = (T + 1) / 2;
  auto tileHead = [&](int t) { return g * group + t / perHead; };
  auto tileRow = [&](int t) { return j0 + t % perHead * QT; };
  auto load = [&](int s) {  // this half's Q and dout tiles of step s
    const int t = 2 * s + half;
    if (t >= T) return;
    const int at = ((s & 1) * 2 + half) * QT * P;
    load_tile<D, 128, QT>(Qs + at, q, tileRow(t), n, hq, tileHead(t), ht);
    load_tile<D, 128, QT>(Os + at, dout, tileRow(t), n, hq, tileHead(t), ht);
  };
  // lse·log2 e and delta of query row ht (< QT) of this half's tile of step s: +inf and 0 past
  // n (P = 0 there), read a step ahead of their store so that the loads' latency hides.
  float nextL = 0.f, nextE = 0.f;
  auto fetch = [&](int s) {
    const int t = 2 * s + half;
    if (ht >= QT || t >= T) return;
    const int i = tileRow(t) + ht;
    const size_t at = (size_t)tileHead(t) * n + i;
    nextL = i < n ? lse[at] * LOG2E : INFINITY;
    nextE = i < n ? delta[at] : 0.f;
  };
  auto store = [&](int s) {
    if (ht >= QT) return;
    Ls[((s & 1) * 2 + half) * QT + ht] = nextL;
    Es[((s & 1) * 2 + half) * QT + ht] = nextE;
  };
  load_tile<D, 256>(Ks, k, j0, n, hkv, g, tid);
  load_tile<D, 256>(Vs, v, j0, n, hkv, g, tid);
  load(0);
  cp_async_commit();
  fetch(0);
  store(0);
  fetch(1);

  RowFrags<D, HOLD> kf, vf;
  float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
  for (int d = 0; d < D / 8; d++)
#pragma unroll
    for (int e = 0; e < 4; e++) dka[d][e] = dva[d][e] = 0.f;
  for (int s = 0; s < steps; s++) {
    cp_async_wait<0>();
    __syncthreads();  // step s landed for all, and every warp is done with the stage loaded next
    if (s == 0) {
      kf.init(Ks + warp * 16 * P, lane);
      vf.init(Vs + warp * 16 * P, lane);
    }
    load(s + 1);
    cp_async_commit();
    if (s + 1 < steps) {  // the stage's readers (step s − 1) passed this step's barrier
      store(s + 1);
      fetch(s + 2);
    }
    const int t = 2 * s + half;
    if (t >= T) continue;  // an odd count leaves the second half the last step off
    const int i0 = tileRow(t), at = (s & 1) * 2 + half;
    const bf16* qs = Qs + at * QT * P;
    const bf16* os = Os + at * QT * P;
    const float* ls = Ls + at * QT;
    const float* es = Es + at * QT;
    float st[QT / 8][4], dpt[QT / 8][4];
    mma_abt<D, QT>(st, kf, qs, lane);
    mma_abt<D, QT>(dpt, vf, os, lane);
    if (tile_masked(i0, QT, j0, TILE, sink, window)) mask_hidden<true>(st, r, i0 + 2 * t4, sink, window);
#pragma unroll
    for (int j = 0; j < QT / 8; j++) {
      const float2 l2 = *reinterpret_cast<const float2*>(ls + j * 8 + 2 * t4);
      const float2 de = *reinterpret_cast<const float2*>(es + j * 8 + 2 * t4);
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float p = exp2_approx(fmaf(st[j][e], scaleLog2, -(e & 1 ? l2.y : l2.x)));
        dpt[j][e] = p * (dpt[j][e] - (e & 1 ? de.y : de.x));
        st[j][e] = p;
      }
    }
    mma_pb<D, QT>(dva, st, os, lane);
    mma_pb<D, QT>(dka, dpt, qs, lane);
  }

  // The halves' sums: the second half's dK and the first half's dV through the Q and dout
  // stages, in fragment order ([warp][D/8][lane] of 4 floats); the first half writes dK, the
  // second dV.
  static_assert(2 * 4 * (D / 8) * 32 * 16 <= 8 * QT * P * 2, "the sums fit the stages");
  cp_async_wait<0>();
  __syncthreads();  // every tile read
  float4* xk = reinterpret_cast<float4*>(Qs);
  float4* xv = xk + 4 * (D / 8) * 32;
  const int x0 = warp * (D / 8) * 32 + lane;
  if (half) {
#pragma unroll
    for (int d = 0; d < D / 8; d++) xk[x0 + d * 32] = make_float4(dka[d][0], dka[d][1], dka[d][2], dka[d][3]);
  } else {
#pragma unroll
    for (int d = 0; d < D / 8; d++) xv[x0 + d * 32] = make_float4(dva[d][0], dva[d][1], dva[d][2], dva[d][3]);
  }
  __syncthreads();
  if (half) {
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
      const float4 o = xv[x0 + d * 32];
      dva[d][0] += o.x, dva[d][1] += o.y, dva[d][2] += o.z, dva[d][3] += o.w;
    }
    const float one[2] = {1.f, 1.f};
    store_rows<D>(dv + (size_t)g * D, (size_t)hkv * D, dva, r, n, one, t4);
  } else {
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
      const float4 o = xk[x0 + d * 32];
      dka[d][0] += o.x, dka[d][1] += o.y, dka[d][2] += o.z, dka[d][3] += o.w;
    }
    const float mul[2] = {scale, scale};
    store_rows<D>(dk + (size_t)g * D, (size_t)hkv * D, dka, r, n, mul, t4);
  }
}

// Backward, queries' side: dq of TILE query rows of one query head, each of the 4 warps 16 rows,
// over the key tiles the band shows them (the forward's loop; K and V tiles double-buffered):
// S = Q·Kᵀ, dP = dout·Vᵀ, dS = P∘(dP − delta), dQ += dS·K. D = 64 holds Q's and dout's fragments
// in registers and takes a tile's 64 keys at once; D = 128 re-reads them and takes 32 at a time.
// grid = (ceil(n / TILE), hq), block L = x + y·gridDim.x taking query tile tiles − 1 − L / hq
// of head L % hq, as the forward. 128 threads; dynamic shared memory 6·TILE·(D + 8)·2 bytes.
template <int D>
__device__ __forceinline__ void attn_band_dq(bf16* dq, const bf16* dout, const float* lse, const float* delta,
                                             const bf16* q, const bf16* k, const bf16* v, int n, int hq,
                                             int hkv, int sink, int window, float scale, float scaleLog2) {
  constexpr int P = D + 8, NC = D == 64 ? 64 : 32;  // NC: keys a pass of the products takes
  constexpr bool HOLD = D == 64;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);  // [TILE][P]
  bf16* Os = Qs + TILE * P;                   // [TILE][P] (dout)
  bf16* Ks = Os + TILE * P;                   // [2][TILE][P]
  bf16* Vs = Ks + 2 * TILE * P;               // [2][TILE][P]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t4 = lane & 3;
  const int L = blockIdx.y * gridDim.x + blockIdx.x;
  const int h = L % hq, g = h / (hq / hkv);
  const int i0 = (gridDim.x - 1 - L / hq) * TILE, i1 = min(i0 + TILE, n);
  const int r = i0 + warp * 16 + (lane >> 2);  // this thread's rows: r and r + 8
  const TileRange tiles = key_tiles(i0, i1, sink, window, TILE);
  int kb = tiles.first();
  load_tile<D, 128>(Qs, q, i0, n, hq, h, tid);
  load_tile<D, 128>(Os, dout, i0, n, hq, h, tid);
  load_tile<D, 128>(Ks, k, kb * TILE, n, hkv, g, tid);
  load_tile<D, 128>(Vs, v, kb * TILE, n, hkv, g, tid);
  cp_async_commit();
  // Rows past n: lse +inf, so P = 0 (they are not written either).
  float l2[2], de[2];
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const bool in = r + 8 * hf < n;
    l2[hf] = in ? lse[(size_t)h * n + r + 8 * hf] * LOG2E : INFINITY;
    de[hf] = in ? delta[(size_t)h * n + r + 8 * hf] : 0.f;
  }

  RowFrags<D, HOLD> qf, of;
  float dqa[D / 8][4];
#pragma unroll
  for (int d = 0; d < D / 8; d++)
#pragma unroll
    for (int e = 0; e < 4; e++) dqa[d][e] = 0.f;
  for (int it = 0; kb < tiles.end; it++) {
    cp_async_wait<0>();
    __syncthreads();  // tile it landed for all, and every warp is done with the stage loaded next
    if (it == 0) {
      qf.init(Qs + warp * 16 * P, lane);
      of.init(Os + warp * 16 * P, lane);
    }
    const int next = tiles.next(kb);
    if (next < tiles.end) {
      load_tile<D, 128>(Ks + ((it + 1) & 1) * TILE * P, k, next * TILE, n, hkv, g, tid);
      load_tile<D, 128>(Vs + ((it + 1) & 1) * TILE * P, v, next * TILE, n, hkv, g, tid);
    }
    cp_async_commit();
    const bf16* ks = Ks + (it & 1) * TILE * P;
    const bf16* vs = Vs + (it & 1) * TILE * P;
    const int j0 = kb * TILE;
    const bool masked = tile_masked(i0, TILE, j0, TILE, sink, window);
#pragma unroll
    for (int c = 0; c < TILE / NC; c++) {
      float s[NC / 8][4], dp[NC / 8][4];
      mma_abt<D, NC>(s, qf, ks + c * NC * P, lane);
      mma_abt<D, NC>(dp, of, vs + c * NC * P, lane);
      if (masked) mask_hidden<false>(s, r, j0 + c * NC + 2 * t4, sink, window);
#pragma unroll
      for (int j = 0; j < NC / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const float p = exp2_approx(fmaf(s[j][e], scaleLog2, -l2[e >> 1]));
          dp[j][e] = p * (dp[j][e] - de[e >> 1]);
        }
      mma_pb<D, NC>(dqa, dp, ks + c * NC * P, lane);
    }
    kb = next;
  }
  const float mul[2] = {scale, scale};
  store_rows<D>(dq + (size_t)h * D, (size_t)hq * D, dqa, r, n, mul, t4);
}

// delta[h][i] = Σ_d dout[i][h][d]·out[i][h][d]: one warp per (token, head) row; 256 threads.
extern "C" __global__ void train_attn_delta(float* delta, const bf16* dout, const bf16* out, int n, int hq,
                                            int dim) {
  const int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (w >= n * hq) return;
  const bf16* a = dout + (size_t)w * dim;
  const bf16* b = out + (size_t)w * dim;
  float s = 0.f;
  for (int d = lane; d < dim; d += 32) s += __bfloat162float(a[d]) * __bfloat162float(b[d]);
  s = warp_sum(s);
  if (lane == 0) delta[(size_t)(w % hq) * n + w / hq] = s;
}


// FWD_CTAS and DQ_CTAS: the CTAs an SM is to hold (__launch_bounds__' minimum, which caps the
// registers: 4 forward CTAs of D = 64 in 128 registers, 3 dQ CTAs in 168; shared memory holds
// no more). The dK/dV CTA's 256 threads take up to 255 registers: one CTA an SM.
#define TRAIN_ATTN(D, FWD_CTAS, DQ_CTAS)                                                                \
  extern "C" __global__ void __launch_bounds__(128, FWD_CTAS)                                           \
      train_attn_fwd_d##D(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int n,    \
                          int hq, int hkv, int sink, int window, float scaleLog2) {                     \
    attn_band_fwd<D>(out, lse, q, k, v, n, hq, hkv, sink, window, scaleLog2);                           \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(256)                                                     \
      train_attn_dkdv_d##D(bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta,  \
                           const bf16* q, const bf16* k, const bf16* v, int n, int hq, int hkv,         \
                           int sink, int window, float scale, float scaleLog2) {                        \
    attn_band_dkdv<D>(dk, dv, dout, lse, delta, q, k, v, n, hq, hkv, sink, window, scale, scaleLog2);   \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(128, DQ_CTAS)                                            \
      train_attn_dq_d##D(bf16* dq, const bf16* dout, const float* lse, const float* delta,              \
                         const bf16* q, const bf16* k, const bf16* v, int n, int hq, int hkv, int sink, \
                         int window, float scale, float scaleLog2) {                                    \
    attn_band_dq<D>(dq, dout, lse, delta, q, k, v, n, hq, hkv, sink, window, scale, scaleLog2);         \
  }
TRAIN_ATTN(64, 4, 3)
TRAIN_ATTN(128, 2, 2)

// att = z[g]·full + (1 − z[g])·stream, g the KV head of the element's query head; count and dim
// divisible by 8 (a chunk of 8 lies in one head).
extern "C" __global__ void train_mix_heads(bf16* att, const bf16* full, const bf16* stream, const float* z,
                                           long long count, int dim, int hq, int group) {
  for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < count / 8;
       c += (long long)gridDim.x * blockDim.x) {
    const float zg = z[(int)((c * 8 / dim) % hq) / group];
    float f[8], s[8];
    unpack8(reinterpret_cast<const uint4*>(full)[c], f);
    unpack8(reinterpret_cast<const uint4*>(stream)[c], s);
#pragma unroll
    for (int e = 0; e < 8; e++) f[e] = zg * f[e] + (1.f - zg) * s[e];
    reinterpret_cast<uint4*>(att)[c] = pack8(f);
  }
}

// MixHeads' backward for KV head g = blockIdx.x (one CTA a head, so that dz's sum has one
// order: deterministic, no atomics): dfull = z·datt, dstream = (1 − z)·datt, dz[g] +=
// Σ datt·(full − stream) over the tokens and the head's group query heads (contiguous in a
// token's row). dim divisible by 8; 1024 threads.
extern "C" __global__ void __launch_bounds__(1024)
    train_mix_heads_backward(bf16* dfull, bf16* dstream, float* dz, const bf16* datt, const bf16* full,
                             const bf16* stream, const float* z, int n, int dim, int hq, int group) {
  __shared__ float partial[32];
  const int g = blockIdx.x;
  const float zg = z[g];
  const int per = group * dim / 8;  // chunks of a token's row that belong to g
  float acc = 0.f;
  for (long long c = threadIdx.x; c < (long long)n * per; c += blockDim.x) {
    const long long i = c / per;
    const size_t off = ((size_t)i * hq + (size_t)g * group) * dim / 8 + c % per;
    float a[8], f[8], s[8], df[8], dsm[8];
    unpack8(reinterpret_cast<const uint4*>(datt)[off], a);
    unpack8(reinterpret_cast<const uint4*>(full)[off], f);
    unpack8(reinterpret_cast<const uint4*>(stream)[off], s);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      acc += a[e] * (f[e] - s[e]);
      df[e] = zg * a[e];
      dsm[e] = (1.f - zg) * a[e];
    }
    reinterpret_cast<uint4*>(dfull)[off] = pack8(df);
    reinterpret_cast<uint4*>(dstream)[off] = pack8(dsm);
  }
  acc = warp_sum(acc);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) dz[g] += v;
  }
}

// Sums a and b over the CTA (blockDim a multiple of 32, at most 1024); every thread gets both.
__device__ __forceinline__ void block_sum2(float& a, float& b) {
  __shared__ float pa[32], pb[32];
  a = warp_sum(a);
  b = warp_sum(b);
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // an earlier call's readers are done
  if (lane == 0) {
    pa[w] = a;
    pb[w] = b;
  }
  __syncthreads();
  a = lane < warps ? pa[lane] : 0.f;
  b = lane < warps ? pb[lane] : 0.f;
  a = warp_sum(a);
  b = warp_sum(b);
}

// dres[r] += ∂/∂x of y = x·rsqrt(mean(x²) + eps)·w: with r = rsqrt(mean(x²) + eps),
// dx_k = r·w_k·dy_k − x_k·r³·Σ_j dy_j·w_j·x_j / dim. grid = rows, 256 threads.
extern "C" __global__ void train_rmsnorm_backward(float* dres, const bf16* x, const bf16* w, const bf16* dy,
                                                  int dim, float eps) {
  const bf16* xr = x + (size_t)blockIdx.x * dim;
  const bf16* dyr = dy + (size_t)blockIdx.x * dim;
  float* out = dres + (size_t)blockIdx.x * dim;
  float ss = 0.f, dot = 0.f;
  for (int k = threadIdx.x; k < dim; k += blockDim.x) {
    const float xv = __bfloat162float(xr[k]);
    ss += xv * xv;
    dot += __bfloat162float(dyr[k]) * __bfloat162float(w[k]) * xv;
  }
  block_sum2(ss, dot);
  const float r = rsqrtf(ss / dim + eps), c = r * r * r * dot / dim;
  for (int k = threadIdx.x; k < dim; k += blockDim.x)
    out[k] += r * __bfloat162float(w[k]) * __bfloat162float(dyr[k]) - __bfloat162float(xr[k]) * c;
}

// For act = silu(gate)·up: dup = dact·silu(gate), dgate = dact·up·σ(gate)·(1 + gate·(1 − σ(gate))).
// count divisible by 8; each chunk is read before it is written, so dgate/dup may alias gate/up.
extern "C" __global__ void train_swiglu_backward(bf16* dgate, bf16* dup, const bf16* dact, const bf16* gate,
                                                 const bf16* up, long long count) {
  for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < count / 8;
       c += (long long)gridDim.x * blockDim.x) {
    float a[8], g[8], u[8];
    unpack8(reinterpret_cast<const uint4*>(dact)[c], a);
    unpack8(reinterpret_cast<const uint4*>(gate)[c], g);
    unpack8(reinterpret_cast<const uint4*>(up)[c], u);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      const float sg = 1.f / (1.f + expf(-g[e]));
      const float dg = a[e] * u[e] * sg * (1.f + g[e] * (1.f - sg));
      u[e] = a[e] * g[e] * sg;
      g[e] = dg;
    }
    reinterpret_cast<uint4*>(dgate)[c] = pack8(g);
    reinterpret_cast<uint4*>(dup)[c] = pack8(u);
  }
}

// Cross-entropy of row blockIdx.x of logits ([rows][vocab] bf16) against targets[row]: loss =
// lse − logit[target], dlogits = scale·(softmax − onehot); −1 (no label): loss 0, dlogits 0. A
// target outside [−1, vocab) gives loss NaN (and dlogits 0), so that the bad label shows in the
// loss instead of writing out of bounds. One pass of online max and sum, one of writes; the
// target's logit is read before any write, so dlogits may alias logits. 1024 threads.
extern "C" __global__ void __launch_bounds__(1024)
    train_cross_entropy(bf16* dlogits, float* loss, const bf16* logits, const int* targets, int vocab,
                        float scale) {
  __shared__ float pm[32], ps[32];
  __shared__ float target_logit;
  const bf16* x = logits + (size_t)blockIdx.x * vocab;
  bf16* dx = dlogits + (size_t)blockIdx.x * vocab;
  const int tgt = targets[blockIdx.x];
  if (tgt < 0 || tgt >= vocab) {
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) dx[j] = __float2bfloat16(0.f);
    if (threadIdx.x == 0) loss[blockIdx.x] = tgt == -1 ? 0.f : __int_as_float(0x7fc00000);
    return;
  }
  float m = -INFINITY, s = 0.f;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = __bfloat162float(x[j]);
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else {
      s += expf(v - m);
    }
  }
  // merge (m, s) pairs: over the warp, then over the warps
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffff, m, o), s2 = __shfl_xor_sync(0xffffffff, s, o);
    const float mm = fmaxf(m, m2);
    s = (m == -INFINITY ? 0.f : s * expf(m - mm)) + (m2 == -INFINITY ? 0.f : s2 * expf(m2 - mm));
    m = mm;
  }
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    pm[w] = m;
    ps[w] = s;
  }
  if (threadIdx.x == 0) target_logit = __bfloat162float(x[tgt]);
  __syncthreads();
  float M = -INFINITY, S = 0.f;
  for (int k = 0; k < (int)blockDim.x / 32; k++) M = fmaxf(M, pm[k]);
  for (int k = 0; k < (int)blockDim.x / 32; k++)
    if (pm[k] != -INFINITY) S += ps[k] * expf(pm[k] - M);
  const float lse = M + logf(S);
  if (threadIdx.x == 0) loss[blockIdx.x] = lse - target_logit;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float p = expf(__bfloat162float(x[j]) - lse);
    dx[j] = __float2bfloat16(scale * (j == tgt ? p - 1.f : p));
  }
}

// For listed row r = rows[blockIdx.x] of h (bf16) and t (f32), both [n][dim]: loss = Σ_j (h − t)²,
// dh[r] = g·(h − t). A row outside [0, n) gives loss NaN and writes nothing. 256 threads.
extern "C" __global__ void train_squared_error(bf16* dh, float* loss, const bf16* h, const float* t,
                                               const int* rows, int n, int dim, float g) {
  const int r = rows[blockIdx.x];
  if (r < 0 || r >= n) {
    if (threadIdx.x == 0) loss[blockIdx.x] = __int_as_float(0x7fc00000);
    return;
  }
  float s = 0.f, unused = 0.f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    const size_t at = (size_t)r * dim + j;
    const float e = __bfloat162float(h[at]) - t[at];
    s += e * e;
    dh[at] = __float2bfloat16(g * e);
  }
  block_sum2(s, unused);
  if (threadIdx.x == 0) loss[blockIdx.x] = s;
}

// dst (bf16) = src (f32), count values.
extern "C" __global__ void train_to_bf16(bf16* dst, const float* src, long long count) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16(src[i]);
}

// dst (f32) += src (bf16), count values.
extern "C" __global__ void train_add_bf16(float* dst, const bf16* src, long long count) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
    dst[i] += __bfloat162float(src[i]);
}
