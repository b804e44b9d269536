// Attention over a paged per-head KV cache. The pool holds K and V as [slot][D] bf16, slot =
// block*KV_BLOCK + offset; each KV head h has its own row of the block table
// (tables[h*maxBlocks + i] = the pool block of its entries i*64..i*64+63) and its own length
// lens[h], so heads hold different numbers of entries. Query head qh reads KV head
// qh / (Hq/Hkv) (GQA) in place. Scores use scaleLog2 = softmax scale · log2(e) and exp2.
#include "common.cuh"

// kv_write stores row i of k and v ([rows][D], rows = tokens·Hkv) at pool slot slots[i];
// a negative slot skips the row. grid = rows.
extern "C" __global__ void kv_write(bf16* kpool, bf16* vpool, const bf16* k, const bf16* v,
                                    const int* slots, int dim) {
  int slot = slots[blockIdx.x];
  if (slot < 0) return;
  const uint4* ks = reinterpret_cast<const uint4*>(k + (size_t)blockIdx.x * dim);
  const uint4* vs = reinterpret_cast<const uint4*>(v + (size_t)blockIdx.x * dim);
  uint4* kd = reinterpret_cast<uint4*>(kpool + (size_t)slot * dim);
  uint4* vd = reinterpret_cast<uint4*>(vpool + (size_t)slot * dim);
  for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

// kv_read copies pool slot slots[i] into row i of k and v ([rows][D]); grid = rows. KVCopy
// gathers every source with it before kv_write scatters them, because a compacting Keep moves
// entries onto slots that other moves still read.
extern "C" __global__ void kv_read(bf16* k, bf16* v, const bf16* kpool, const bf16* vpool,
                                   const int* slots, int dim) {
  size_t s = (size_t)slots[blockIdx.x] * dim;
  uint4* kd = reinterpret_cast<uint4*>(k + (size_t)blockIdx.x * dim);
  uint4* vd = reinterpret_cast<uint4*>(v + (size_t)blockIdx.x * dim);
  for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) {
    kd[i] = reinterpret_cast<const uint4*>(kpool + s)[i];
    vd[i] = reinterpret_cast<const uint4*>(vpool + s)[i];
  }
}

// exp2 as the one MUFU instruction (flush-to-zero; exp2(-inf) = 0), without exp2f's fix-ups
// for results in the denormal range, which softmax weights never need.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Pre-fill: n new queries q[n][Hq][D] see their KV head's lens[h] cached entries and the chunk's
// own keys kc/vc [n][Hkv][D] causally (query i sees chunk entries 0..i). FlashAttention-2 style.
// A block serves one KV head and 128 rows, row v being query head kvh·G + v%G at position v/G
// (G = Hq/Hkv): each K/V tile in shared memory feeds all G heads that read it, and the causal
// diagonal spans only 128/G positions. Each of the 4 warps takes 32 rows (two m16 tiles), so
// every K or V fragment read from shared memory feeds two MMAs. The block walks 64-entry tiles
// (first the cache's blocks, then the chunk's tiles up to its last position) through two
// cp.async stages, loading tile t+1 while it computes tile t. Q is re-read from shared memory
// per tile: O (D/2 floats a thread) and S (64) leave no registers to hold it. S and P never
// leave the warp; masks apply only to tiles that cross the cache's end or the diagonal. out may
// alias q (a block reads its Q rows before it writes them, and no other block reads them).
// grid = (ceil(n·G/128), Hkv), the longest rows first; 128 threads; dynamic shared memory
// 384·(D+8)·2 bytes.
template <int D>
__device__ __forceinline__ void attn_prefill(bf16* out, const bf16* q, const bf16* kc, const bf16* vc,
                                             const bf16* kpool, const bf16* vpool, const int* tables,
                                             const int* lens, int maxBlocks, int n, int Hq, int Hkv,
                                             float scaleLog2) {
  constexpr int P = D + 8;         // padded row: ldmatrix rows land in distinct banks
  constexpr int CH = D / 8;        // 16-byte pieces per row
  constexpr int RSTEP = 128 / CH;  // rows between one thread's pieces in a tile load
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);  // [128][P]
  bf16* Ks = Qs + 128 * P;                    // [2][64][P]
  bf16* Vs = Ks + 2 * 64 * P;                 // [2][64][P]
  int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int kvh = blockIdx.y, G = Hq / Hkv;
  int rows = n * G;
  int v0 = (gridDim.x - 1 - blockIdx.x) * 128;  // the longest rows first: a short tail
  int len = lens[kvh];
  const int* table = tables + (size_t)kvh * maxBlocks;
  int pFirst = v0 / G, pLast = (min(rows, v0 + 128) - 1) / G;
  int cacheTiles = (len + 63) / 64;
  int T = cacheTiles + pLast / 64 + 1;
  size_t rowStride = (size_t)Hkv * D;
  int lr = tid / CH, lc = (tid % CH) * 8;  // this thread's first row and its column in loads

  // The G query heads of one position are adjacent in q: row v is at (v/G)·Hq + kvh·G + v%G.
#pragma unroll
  for (int i = 0; i < CH; i++) {
    int r = lr + i * RSTEP, v = v0 + r;
    int pos = v / G;
    bool ok = v < rows;
    const bf16* src = q + ((size_t)pos * Hq + kvh * G + (v - pos * G)) * D + lc;
    cp_async16(Qs + r * P + lc, ok ? src : q, ok);
  }

  // The pool block of the next cache tile, read one tile ahead so that its latency hides
  // behind a tile's compute instead of holding up the tile's loads.
  int nextBlock = cacheTiles > 0 ? table[0] : 0;
  auto load = [&](int t, int st) {
    bf16* ks = Ks + st * 64 * P;
    bf16* vs = Vs + st * 64 * P;
    const bf16 *kb, *vb;
    size_t stride;
    int valid;
    if (t < cacheTiles) {  // one pool block: 64 consecutive slots
      size_t off = (size_t)nextBlock * KV_BLOCK * D;
      nextBlock = t + 1 < cacheTiles ? table[t + 1] : 0;
      kb = kpool + off;
      vb = vpool + off;
      stride = D;
      valid = len - t * 64;
    } else {
      int j0 = (t - cacheTiles) * 64;
      size_t off = (size_t)j0 * rowStride + (size_t)kvh * D;
      kb = kc + off;
      vb = vc + off;
      stride = rowStride;
      valid = n - j0;
    }
#pragma unroll
    for (int i = 0; i < 64 / RSTEP; i++) {
      int r = lr + i * RSTEP;
      bool ok = r < valid;
      size_t off = (size_t)r * stride + lc;
      cp_async16(ks + r * P + lc, ok ? kb + off : kpool, ok);
      cp_async16(vs + r * P + lc, ok ? vb + off : vpool, ok);
    }
  };

  load(0, 0);
  cp_async_commit();  // Q and tile 0

  float o[2][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < 2; mt++)
#pragma unroll
    for (int d = 0; d < D / 8; d++)
#pragma unroll
      for (int e = 0; e < 4; e++) o[mt][d][e] = 0.f;
  // This thread's 4 rows, i = mt·2 + hf: v0 + warp·32 + mt·16 + hf·8 + g = rowOf(i). mrow is in
  // log2 units (scaled by scaleLog2); lrow sums this thread's columns only, the quad's sum comes
  // at the end. Positions rowOf(i)/G are recomputed where needed (edge tiles, the end) rather
  // than held in registers, which O and S all but fill.
  int g = lane >> 2, t4 = lane & 3;
  auto rowOf = [&](int i) { return v0 + warp * 32 + (i >> 1) * 16 + (i & 1) * 8 + g; };
  float mrow[4], lrow[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    mrow[i] = -INFINITY;
    lrow[i] = 0.f;
  }

  for (int t = 0; t < T; t++) {
    cp_async_wait<0>();
    __syncthreads();  // tile t landed for all, and every warp is done with the stage reloaded next
    if (t + 1 < T) load(t + 1, (t + 1) & 1);
    cp_async_commit();
    const bf16* ks = Ks + (t & 1) * 64 * P;
    const bf16* vs = Vs + (t & 1) * 64 * P;

    float s[2][8][4];
    warp_products<D, P>(s, Qs, ks, warp, lane);

    // Columns past the cache's end, or past the row's own position on the diagonal, weigh 0.
    bool isCache = t < cacheTiles;
    int j0 = isCache ? t * 64 : (t - cacheTiles) * 64;
    if (isCache ? j0 + 64 > len : j0 + 63 > pFirst) {
#pragma unroll
      for (int i = 0; i < 4; i++) {
        int last = isCache ? len - 1 - j0 : rowOf(i) / G - j0;  // the row's last visible column
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
          for (int e = 0; e < 2; e++)
            if (j * 8 + t4 * 2 + e > last) s[i >> 1][j][(i & 1) * 2 + e] = -INFINITY;
      }
    }

    float alpha[4];
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
      float mu = mnew == -INFINITY ? 0.f : mnew;  // nothing seen yet: every p is 0
      alpha[i] = exp2_ftz(mrow[i] - mu);
      mrow[i] = mnew;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = e0; e < e0 + 2; e++) {
          sr[j][e] = exp2_ftz(fmaf(sr[j][e], scaleLog2, -mu));
          sum += sr[j][e];
        }
      lrow[i] = lrow[i] * alpha[i] + sum;
    }
    // Once the running maxima settle, most tiles change none of the warp's: skip the rescale.
    if (__any_sync(0xffffffff, alpha[0] != 1.f || alpha[1] != 1.f || alpha[2] != 1.f || alpha[3] != 1.f)) {
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int d = 0; d < D / 8; d++)
#pragma unroll
          for (int e = 0; e < 4; e++) o[mt][d][e] *= alpha[mt * 2 + (e >> 1)];
    }

#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      uint32_t pa[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; mt++) {
        pa[mt][0] = pack2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = pack2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * P + dp * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
          mma16816(o[mt][2 * dp], pa[mt], r[0], r[1]);
          mma16816(o[mt][2 * dp + 1], pa[mt], r[2], r[3]);
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 4; i++) {
    float l = lrow[i];
    l += __shfl_xor_sync(0xffffffff, l, 1);
    l += __shfl_xor_sync(0xffffffff, l, 2);
    float inv = l > 0.f ? 1.f / l : 0.f;
    int v = rowOf(i);
    if (v < rows) {
      int pos = v / G;
      bf16* dst = out + ((size_t)pos * Hq + kvh * G + (v - pos * G)) * D;
#pragma unroll
      for (int d = 0; d < D / 8; d++)
        *reinterpret_cast<__nv_bfloat162*>(dst + d * 8 + t4 * 2) =
            __floats2bfloat162_rn(o[i >> 1][d][(i & 1) * 2] * inv, o[i >> 1][d][(i & 1) * 2 + 1] * inv);
    }
  }
}

// Decode, split-K: one token's q[Hq][D] against each KV head's cache. Block (split, kvh) takes
// entries split·per onwards of that head for all G = Hq/Hkv query heads at once, so K and V
// are read from memory once per KV head. D/8 lanes own one entry (16 bytes of K and of V each),
// several entries per warp and U steps of loads in flight; each lane group keeps an online
// softmax, merged across groups and warps at the end. Writes the split's unnormalised
// output po[qh][split][D] and (max, sum) pml[qh][split][2] for attn_merge.
// grid = (splits, Hkv), 128 threads.
template <int D, int MAXG>
__device__ __forceinline__ void attn_decode(float* po, float* pml, const bf16* q, const bf16* kpool,
                                            const bf16* vpool, const int* tables, const int* lens,
                                            int maxBlocks, int per, int Hq, int Hkv, float scaleLog2) {
  constexpr int LPE = D / 8;
  constexpr int EPW = 32 / LPE;
  constexpr int STEP = 4 * EPW;
  constexpr int U = 4;
  __shared__ float sm_m[4][MAXG], sm_l[4][MAXG];
  __shared__ float sm_acc[4][MAXG][D];
  int split = blockIdx.x, splits = gridDim.x, kvh = blockIdx.y;
  int G = Hq / Hkv;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int sub = lane / LPE, li = lane % LPE;
  int len = lens[kvh];
  // per entries a split, the same for every head (a head shorter than the longest leaves its
  // last splits empty), so that the work spreads by entries, not by heads; the last split
  // takes whatever is left
  int start = split * per, end = split == splits - 1 ? len : min(len, start + per);
  const int* table = tables + (size_t)kvh * maxBlocks;

  float qv[MAXG][8], m[MAXG], l[MAXG], acc[MAXG][8];
#pragma unroll
  for (int g = 0; g < MAXG; g++) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++) acc[g][j] = qv[g][j] = 0.f;
    if (g < G) {
      unpack8(reinterpret_cast<const uint4*>(q + (size_t)(kvh * G + g) * D)[li], qv[g]);
#pragma unroll
      for (int j = 0; j < 8; j++) qv[g][j] *= scaleLog2;
    }
  }

  for (int base = start + warp * EPW; base < end; base += STEP * U) {  // warp-uniform bound
    uint4 kr[U], vr[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      int e = base + sub + u * STEP;
      if (e < end) {
        size_t slot = (size_t)table[e / KV_BLOCK] * KV_BLOCK + e % KV_BLOCK;
        kr[u] = reinterpret_cast<const uint4*>(kpool + slot * D)[li];
        vr[u] = reinterpret_cast<const uint4*>(vpool + slot * D)[li];
      } else {
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      int e = base + sub + u * STEP;
      float kf[8], vf[8], sc[MAXG];
      unpack8(kr[u], kf);
      unpack8(vr[u], vf);
#pragma unroll
      for (int g = 0; g < MAXG; g++) {
        sc[g] = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) sc[g] += qv[g][j] * kf[j];
#pragma unroll
        for (int off = LPE / 2; off > 0; off >>= 1) sc[g] += __shfl_xor_sync(0xffffffff, sc[g], off);
      }
      if (e < end) {
#pragma unroll
        for (int g = 0; g < MAXG; g++) {
          float mn = fmaxf(m[g], sc[g]);
          float a = exp2f(m[g] - mn), p = exp2f(sc[g] - mn);
          l[g] = l[g] * a + p;
#pragma unroll
          for (int j = 0; j < 8; j++) acc[g][j] = acc[g][j] * a + p * vf[j];
          m[g] = mn;
        }
      }
    }
  }

  // Merge the lane groups of the warp (same li = same dims), then the 4 warps.
#pragma unroll
  for (int off = LPE; off < 32; off <<= 1)
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
      float om = __shfl_xor_sync(0xffffffff, m[g], off);
      float ol = __shfl_xor_sync(0xffffffff, l[g], off);
      float mn = fmaxf(m[g], om);
      float mu = mn == -INFINITY ? 0.f : mn;
      float a = exp2f(m[g] - mu), b = exp2f(om - mu);
      l[g] = l[g] * a + ol * b;
#pragma unroll
      for (int j = 0; j < 8; j++) {
        float oa = __shfl_xor_sync(0xffffffff, acc[g][j], off);
        acc[g][j] = acc[g][j] * a + oa * b;
      }
      m[g] = mn;
    }
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
      if (li == 0) {
        sm_m[warp][g] = m[g];
        sm_l[warp][g] = l[g];
      }
#pragma unroll
      for (int j = 0; j < 8; j++) sm_acc[warp][g][li * 8 + j] = acc[g][j];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    int g = i / D, d = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; w++) mx = fmaxf(mx, sm_m[w][g]);
    float mu = mx == -INFINITY ? 0.f : mx;
    float L = 0.f, A = 0.f;
#pragma unroll
    for (int w = 0; w < 4; w++) {
      float f = exp2f(sm_m[w][g] - mu);
      L += sm_l[w][g] * f;
      A += sm_acc[w][g][d] * f;
    }
    size_t part = (size_t)(kvh * G + g) * splits + split;
    po[part * D + d] = A;
    if (d == 0) {
      pml[part * 2] = mx;
      pml[part * 2 + 1] = L;
    }
  }
}

// attn_merge combines the splits of each query head: out[qh] = Σ po·2^(m-M) / Σ l·2^(m-M).
// grid = Hq, D threads.
extern "C" __global__ void attn_merge(bf16* out, const float* po, const float* pml, int splits, int D) {
  int h = blockIdx.x;
  const float* ml = pml + (size_t)h * splits * 2;
  float mx = -INFINITY;
  for (int s = 0; s < splits; s++) mx = fmaxf(mx, ml[2 * s]);
  float mu = mx == -INFINITY ? 0.f : mx;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float L = 0.f, A = 0.f;
    for (int s = 0; s < splits; s++) {
      float f = exp2f(ml[2 * s] - mu);
      L += ml[2 * s + 1] * f;
      A += po[((size_t)h * splits + s) * D + d] * f;
    }
    out[(size_t)h * D + d] = __float2bfloat16(L > 0.f ? A / L : 0.f);
  }
}

#define PREFILL(D)                                                                                  \
  extern "C" __global__ void __launch_bounds__(128)                                                 \
      attn_prefill_d##D(bf16* out, const bf16* q, const bf16* kc, const bf16* vc, const bf16* kpool, \
                        const bf16* vpool, const int* tables, const int* lens, int maxBlocks, int n,  \
                        int Hq, int Hkv, float scaleLog2) {                                          \
    attn_prefill<D>(out, q, kc, vc, kpool, vpool, tables, lens, maxBlocks, n, Hq, Hkv, scaleLog2);   \
  }
#define DECODE(D, G)                                                                                 \
  extern "C" __global__ void __launch_bounds__(128)                                                 \
      attn_decode_d##D##_g##G(float* po, float* pml, const bf16* q, const bf16* kpool,              \
                              const bf16* vpool, const int* tables, const int* lens, int maxBlocks, \
                              int per, int Hq, int Hkv, float scaleLog2) {                           \
    attn_decode<D, G>(po, pml, q, kpool, vpool, tables, lens, maxBlocks, per, Hq, Hkv, scaleLog2);   \
  }
PREFILL(64)
PREFILL(128)
DECODE(64, 4)
DECODE(64, 8)
DECODE(128, 4)
DECODE(128, 8)
