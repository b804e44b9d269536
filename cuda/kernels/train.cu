// Kernels of mask training (PruLong and DuoAttention gate gradients, issue 23): attention over
// a full or streaming band, forward and backward, FlashAttention-2 style (tiles of queries and
// keys in shared memory, online softmax, the backward recomputing P from the forward's lse),
// and the backward passes of the row and element ops. bf16 in and out, f32 arithmetic. The
// attention is plain f32 SIMT, not tensor cores: a first version whose correctness is easy to
// see; its block loops skip every key tile (query tile) that the band hides, which is what
// makes streaming heads cheap.
#include "common.cuh"

#define FWD_Q 64      // query rows of a forward CTA
#define FWD_K 32      // keys of a forward key tile
#define BWD_T 32      // query rows and keys of a backward tile
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

// Copies rows [r0, r0 + rows) of head `head` of x ([n][heads][D]) into sh ([rows][D + 8]);
// rows at or past n become zeros. The padding of 8 puts the rows' 16-byte chunks in different
// banks, so threads reading one chunk of different rows do not conflict.
template <int D>
__device__ __forceinline__ void load_tile(bf16* sh, const bf16* x, int r0, int rows, int n, int heads,
                                          int head) {
  constexpr int C = D / 8;
  for (int c = threadIdx.x; c < rows * C; c += blockDim.x) {
    int r = c / C, k = c % C;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < n) v = reinterpret_cast<const uint4*>(x + ((size_t)(r0 + r) * heads + head) * D)[k];
    *reinterpret_cast<uint4*>(sh + r * (D + 8) + k * 8) = v;
  }
}

__device__ __forceinline__ float dot8(const float a[8], const float b[8]) {
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < 8; e++) s += a[e] * b[e];
  return s;
}

__device__ __forceinline__ void load8(float f[8], const bf16* p) {
  unpack8(*reinterpret_cast<const uint4*>(p), f);
}

// pair_products sets s[r][c] = a[ty + 16r]·b[tx + 16c] and dp[r][c] = e[ty + 16r]·f[tx + 16c]
// over D values of rows of [rows][P] bf16 tiles: a thread's 2×2 of the backward's scores and of
// dout·vᵀ. The dK/dV kernel passes keys against queries, the dQ kernel queries against keys.
template <int D, int P>
__device__ __forceinline__ void pair_products(float s[2][2], float dp[2][2], const bf16* a, const bf16* b,
                                              const bf16* e, const bf16* f, int ty, int tx) {
#pragma unroll
  for (int r = 0; r < 2; r++)
#pragma unroll
    for (int c = 0; c < 2; c++) s[r][c] = dp[r][c] = 0.f;
  for (int c = 0; c < D / 8; c++) {
    float af[2][8], bf[2][8], ef[2][8], ff[2][8];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      load8(af[r], a + (ty + 16 * r) * P + c * 8);
      load8(ef[r], e + (ty + 16 * r) * P + c * 8);
      load8(bf[r], b + (tx + 16 * r) * P + c * 8);
      load8(ff[r], f + (tx + 16 * r) * P + c * 8);
    }
#pragma unroll
    for (int r = 0; r < 2; r++)
#pragma unroll
      for (int cc = 0; cc < 2; cc++) {
        s[r][cc] += dot8(af[r], bf[cc]);
        dp[r][cc] += dot8(ef[r], ff[cc]);
      }
  }
}

// Forward: out = softmax(scale·q·kᵀ over the band)·v and lse (natural log) for FWD_Q query rows
// of one query head. grid = (ceil(n / FWD_Q), hq), 256 threads. Scores live in the base-2
// domain (scaleLog2 = scale·log2 e).
template <int D>
__device__ __forceinline__ void attn_band_fwd(bf16* out, float* lse, const bf16* q, const bf16* k,
                                              const bf16* v, int n, int hq, int hkv, int sink,
                                              int window, float scaleLog2) {
  constexpr int P = D + 8, OC = D / 32;
  __shared__ __align__(16) bf16 qs[FWD_Q * P];
  __shared__ __align__(16) bf16 ks[FWD_K * P];
  __shared__ __align__(16) bf16 vs[FWD_K * P];
  __shared__ float ss[FWD_Q][FWD_K + 1];
  const int t = threadIdx.x, h = blockIdx.y, g = h / (hq / hkv);
  const int i0 = blockIdx.x * FWD_Q, i1 = min(i0 + FWD_Q, n);
  // scores: keys tx and tx + 16 of the tile, rows ty + 16r
  const int tx = t % 16, ty = t / 16;
  // softmax and output: row t / 4, score columns part + 4c, output chunks part + 4c of 8 values
  const int row = t / 4, part = t % 4;
  float o[OC][8];
#pragma unroll
  for (int c = 0; c < OC; c++)
#pragma unroll
    for (int e = 0; e < 8; e++) o[c][e] = 0.f;
  float m = -INFINITY, l = 0.f;
  load_tile<D>(qs, q, i0, FWD_Q, n, hq, h);
  const TileRange tiles = key_tiles(i0, i1, sink, window, FWD_K);
  for (int kb = tiles.first(); kb < tiles.end; kb = tiles.next(kb)) {
    const int j0 = kb * FWD_K;
    __syncthreads();  // the previous tile's readers are done (and qs is loaded)
    load_tile<D>(ks, k, j0, FWD_K, n, hkv, g);
    load_tile<D>(vs, v, j0, FWD_K, n, hkv, g);
    __syncthreads();
    float s[4][2] = {};
    for (int c = 0; c < D / 8; c++) {
      float k0[8], k1[8];
      load8(k0, ks + tx * P + c * 8);
      load8(k1, ks + (tx + 16) * P + c * 8);
#pragma unroll
      for (int r = 0; r < 4; r++) {
        float qf[8];
        load8(qf, qs + (ty + 16 * r) * P + c * 8);
        s[r][0] += dot8(qf, k0);
        s[r][1] += dot8(qf, k1);
      }
    }
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
      for (int c = 0; c < 2; c++) {
        int i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;
        ss[ty + 16 * r][tx + 16 * c] = i < n && band_visible(i, j, sink, window) ? s[r][c] * scaleLog2 : -INFINITY;
      }
    __syncthreads();
    // Online softmax of row `row`: its four threads (one quad of a warp) share max and sum.
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < FWD_K / 4; c++) mx = fmaxf(mx, ss[row][part + 4 * c]);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
    const float mNew = fmaxf(m, mx);
    // A row that has seen no visible key yet keeps m = -inf: no rescale, no mass.
    const float alpha = mNew == -INFINITY ? 1.f : exp2f(m - mNew);
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < FWD_K / 4; c++) {
      float p = mNew == -INFINITY ? 0.f : exp2f(ss[row][part + 4 * c] - mNew);
      ss[row][part + 4 * c] = p;
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffff, sum, 1);
    sum += __shfl_xor_sync(0xffffffff, sum, 2);
    l = l * alpha + sum;
    m = mNew;
    __syncwarp();  // the quad's probabilities are written before each of its threads reads the row
#pragma unroll
    for (int c = 0; c < OC; c++)
#pragma unroll
      for (int e = 0; e < 8; e++) o[c][e] *= alpha;
    for (int j = 0; j < FWD_K; j++) {
      const float p = ss[row][j];
#pragma unroll
      for (int c = 0; c < OC; c++) {
        float vf[8];
        load8(vf, vs + j * P + (part + 4 * c) * 8);
#pragma unroll
        for (int e = 0; e < 8; e++) o[c][e] += p * vf[e];
      }
    }
  }
  const int i = i0 + row;
  if (i >= n) return;
  // every query sees itself, so l > 0
  const float inv = 1.f / l;
  bf16* dst = out + ((size_t)i * hq + h) * D;
#pragma unroll
  for (int c = 0; c < OC; c++) {
#pragma unroll
    for (int e = 0; e < 8; e++) o[c][e] *= inv;
    *reinterpret_cast<uint4*>(dst + (part + 4 * c) * 8) = pack8(o[c]);
  }
  if (part == 0) lse[(size_t)h * n + i] = (m + log2f(l)) * LN2;
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

// Backward, keys' side: dk and dv of BWD_T keys of one KV head, summed over its query heads and
// every query tile that sees the keys (no atomics: each CTA owns its rows). grid =
// (ceil(n / BWD_T), hkv), 256 threads. lse is natural-log (as the forward writes it).
template <int D>
__device__ __forceinline__ void attn_band_dkdv(bf16* dk, bf16* dv, const bf16* dout, const float* lse,
                                               const float* delta, const bf16* q, const bf16* k,
                                               const bf16* v, int n, int hq, int hkv, int sink,
                                               int window, float scale, float scaleLog2) {
  constexpr int P = D + 8, AC = D / 64;
  __shared__ __align__(16) bf16 ks[BWD_T * P];
  __shared__ __align__(16) bf16 vs[BWD_T * P];
  __shared__ __align__(16) bf16 qs[BWD_T * P];
  __shared__ __align__(16) bf16 dos[BWD_T * P];
  __shared__ float ps[BWD_T][BWD_T + 1];
  __shared__ float dss[BWD_T][BWD_T + 1];
  __shared__ float lses[BWD_T], deltas[BWD_T];
  const int t = threadIdx.x, g = blockIdx.y, group = hq / hkv;
  const int j0 = blockIdx.x * BWD_T, j1 = min(j0 + BWD_T, n);
  // scores: key rows ty and ty + 16, query columns tx and tx + 16
  const int tx = t % 16, ty = t / 16;
  // accumulators: key row t / 8, chunks part + 8c of 8 values
  const int row = t / 8, part = t % 8;
  float dka[AC][8], dva[AC][8];
#pragma unroll
  for (int c = 0; c < AC; c++)
#pragma unroll
    for (int e = 0; e < 8; e++) dka[c][e] = dva[c][e] = 0.f;
  load_tile<D>(ks, k, j0, BWD_T, n, hkv, g);
  load_tile<D>(vs, v, j0, BWD_T, n, hkv, g);
  const int qEnd = query_end(j0, j1, n, sink, window);
  for (int h = g * group; h < (g + 1) * group; h++) {
    for (int i0 = j0; i0 < qEnd; i0 += BWD_T) {  // no query before j0 sees the tile
      __syncthreads();  // the previous tile's readers are done
      load_tile<D>(qs, q, i0, BWD_T, n, hq, h);
      load_tile<D>(dos, dout, i0, BWD_T, n, hq, h);
      if (t < BWD_T) {
        bool in = i0 + t < n;
        lses[t] = in ? lse[(size_t)h * n + i0 + t] * LOG2E : 0.f;
        deltas[t] = in ? delta[(size_t)h * n + i0 + t] : 0.f;
      }
      __syncthreads();
      float s[2][2], dp[2][2];
      pair_products<D, P>(s, dp, ks, qs, vs, dos, ty, tx);
#pragma unroll
      for (int r = 0; r < 2; r++)
#pragma unroll
        for (int cc = 0; cc < 2; cc++) {
          const int jr = ty + 16 * r, ic = tx + 16 * cc, i = i0 + ic, j = j0 + jr;
          const float p = i < n && j < n && band_visible(i, j, sink, window) ? exp2f(s[r][cc] * scaleLog2 - lses[ic]) : 0.f;
          ps[jr][ic] = p;
          dss[jr][ic] = p * (dp[r][cc] - deltas[ic]);
        }
      __syncthreads();
      for (int i = 0; i < BWD_T; i++) {
        const float p = ps[row][i], ds = dss[row][i];
#pragma unroll
        for (int c = 0; c < AC; c++) {
          float of[8], qf[8];
          load8(of, dos + i * P + (part + 8 * c) * 8);
          load8(qf, qs + i * P + (part + 8 * c) * 8);
#pragma unroll
          for (int e = 0; e < 8; e++) {
            dva[c][e] += p * of[e];
            dka[c][e] += ds * qf[e];
          }
        }
      }
    }
  }
  const int j = j0 + row;
  if (j >= n) return;
  bf16* kdst = dk + ((size_t)j * hkv + g) * D;
  bf16* vdst = dv + ((size_t)j * hkv + g) * D;
#pragma unroll
  for (int c = 0; c < AC; c++) {
#pragma unroll
    for (int e = 0; e < 8; e++) dka[c][e] *= scale;
    *reinterpret_cast<uint4*>(kdst + (part + 8 * c) * 8) = pack8(dka[c]);
    *reinterpret_cast<uint4*>(vdst + (part + 8 * c) * 8) = pack8(dva[c]);
  }
}

// Backward, queries' side: dq of BWD_T query rows of one query head over the key tiles the band
// shows them (the forward's loop). grid = (ceil(n / BWD_T), hq), 256 threads.
template <int D>
__device__ __forceinline__ void attn_band_dq(bf16* dq, const bf16* dout, const float* lse, const float* delta,
                                             const bf16* q, const bf16* k, const bf16* v, int n, int hq,
                                             int hkv, int sink, int window, float scale, float scaleLog2) {
  constexpr int P = D + 8, AC = D / 64;
  __shared__ __align__(16) bf16 qs[BWD_T * P];
  __shared__ __align__(16) bf16 dos[BWD_T * P];
  __shared__ __align__(16) bf16 ks[BWD_T * P];
  __shared__ __align__(16) bf16 vs[BWD_T * P];
  __shared__ float dss[BWD_T][BWD_T + 1];
  __shared__ float lses[BWD_T], deltas[BWD_T];
  const int t = threadIdx.x, h = blockIdx.y, g = h / (hq / hkv);
  const int i0 = blockIdx.x * BWD_T, i1 = min(i0 + BWD_T, n);
  // scores: query rows ty and ty + 16, key columns tx and tx + 16
  const int tx = t % 16, ty = t / 16;
  // accumulator: query row t / 8, chunks part + 8c of 8 values
  const int row = t / 8, part = t % 8;
  float dqa[AC][8];
#pragma unroll
  for (int c = 0; c < AC; c++)
#pragma unroll
    for (int e = 0; e < 8; e++) dqa[c][e] = 0.f;
  load_tile<D>(qs, q, i0, BWD_T, n, hq, h);
  load_tile<D>(dos, dout, i0, BWD_T, n, hq, h);
  if (t < BWD_T) {
    bool in = i0 + t < n;
    lses[t] = in ? lse[(size_t)h * n + i0 + t] * LOG2E : 0.f;
    deltas[t] = in ? delta[(size_t)h * n + i0 + t] : 0.f;
  }
  const TileRange tiles = key_tiles(i0, i1, sink, window, BWD_T);
  for (int kb = tiles.first(); kb < tiles.end; kb = tiles.next(kb)) {
    const int j0 = kb * BWD_T;
    __syncthreads();  // the previous tile's readers are done (and the query tile is loaded)
    load_tile<D>(ks, k, j0, BWD_T, n, hkv, g);
    load_tile<D>(vs, v, j0, BWD_T, n, hkv, g);
    __syncthreads();
    float s[2][2], dp[2][2];
    pair_products<D, P>(s, dp, qs, ks, dos, vs, ty, tx);
#pragma unroll
    for (int r = 0; r < 2; r++)
#pragma unroll
      for (int cc = 0; cc < 2; cc++) {
        const int ir = ty + 16 * r, jc = tx + 16 * cc, i = i0 + ir, j = j0 + jc;
        const float p = i < n && band_visible(i, j, sink, window) ? exp2f(s[r][cc] * scaleLog2 - lses[ir]) : 0.f;
        dss[ir][jc] = p * (dp[r][cc] - deltas[ir]);
      }
    __syncthreads();
    for (int j = 0; j < BWD_T; j++) {
      const float ds = dss[row][j];
#pragma unroll
      for (int c = 0; c < AC; c++) {
        float kf[8];
        load8(kf, ks + j * P + (part + 8 * c) * 8);
#pragma unroll
        for (int e = 0; e < 8; e++) dqa[c][e] += ds * kf[e];
      }
    }
  }
  const int i = i0 + row;
  if (i >= n) return;
  bf16* dst = dq + ((size_t)i * hq + h) * D;
#pragma unroll
  for (int c = 0; c < AC; c++) {
#pragma unroll
    for (int e = 0; e < 8; e++) dqa[c][e] *= scale;
    *reinterpret_cast<uint4*>(dst + (part + 8 * c) * 8) = pack8(dqa[c]);
  }
}

#define TRAIN_ATTN(D)                                                                                   \
  extern "C" __global__ void __launch_bounds__(256)                                                     \
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
  extern "C" __global__ void __launch_bounds__(256)                                                     \
      train_attn_dq_d##D(bf16* dq, const bf16* dout, const float* lse, const float* delta,              \
                         const bf16* q, const bf16* k, const bf16* v, int n, int hq, int hkv, int sink, \
                         int window, float scale, float scaleLog2) {                                    \
    attn_band_dq<D>(dq, dout, lse, delta, q, k, v, n, hq, hkv, sink, window, scale, scaleLog2);         \
  }
TRAIN_ATTN(64)
TRAIN_ATTN(128)

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
