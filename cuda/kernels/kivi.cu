// KIVI storage (cuda/kivi.go): quantized rows [key codes][value codes][value minima][value
// scales][key group slot] of rowBytes each, and a table of key groups [Dim minima][Dim scales]
// in float32. Codes are packed little end first within a byte, as kv's CPU storage packs them,
// and computed as it computes them: scale = (max − min)/levels, code = rint((x − min)/scale)
// clamped to [0, levels] (0 where the scale is 0), value = code·scale + min without contraction,
// so that the GPU's codes and dequantized values are the CPU's for the same bf16 inputs.
#include "common.cuh"

__device__ __forceinline__ float kivi_code(float x, float lo, float sc, float levels) {
  if (sc == 0.f) return 0.f;
  return fminf(fmaxf(rintf(__fdiv_rn(__fsub_rn(x, lo), sc)), 0.f), levels);
}

__device__ __forceinline__ float kivi_value(float code, float sc, float mn) {
  return __fadd_rn(__fmul_rn(code, sc), mn);
}

// kivi_quantize: block j quantizes job j of jobs [group slot][G source slots][G destination
// rows]: keys per channel over the G entries (minima and scales to the group table), values per
// entry over groups of G channels. grid = jobs, 128 threads.
extern "C" __global__ void kivi_quantize(unsigned char* rows, float* table, const bf16* kpool,
                                         const bf16* vpool, const int* jobs, int dim, int bits,
                                         int G, int rowBytes) {
  __shared__ float kmin[128], ksc[128];
  const int* job = jobs + (size_t)blockIdx.x * (1 + 2 * G);
  int slot = job[0];
  const int* src = job + 1;
  const int* dst = job + 1 + G;
  float levels = (float)((1 << bits) - 1);
  int per = 8 / bits, codeBytes = (dim * bits + 7) / 8, vGroups = (dim + G - 1) / G;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    float lo = INFINITY, hi = -INFINITY;
    for (int t = 0; t < G; t++) {
      float x = __bfloat162float(kpool[(size_t)src[t] * dim + c]);
      lo = fminf(lo, x);
      hi = fmaxf(hi, x);
    }
    float sc = __fdiv_rn(__fsub_rn(hi, lo), levels);
    kmin[c] = lo;
    ksc[c] = sc;
    table[(size_t)slot * 2 * dim + c] = lo;
    table[(size_t)slot * 2 * dim + dim + c] = sc;
  }
  __syncthreads();
  for (int t = threadIdx.x; t < G; t += blockDim.x) {  // one entry a thread
    const bf16* k = kpool + (size_t)src[t] * dim;
    const bf16* v = vpool + (size_t)src[t] * dim;
    unsigned char* row = rows + (size_t)dst[t] * rowBytes;
    float* vmin = reinterpret_cast<float*>(row + 2 * codeBytes);
    float* vsc = vmin + vGroups;
    for (int b = 0; b < codeBytes; b++) {
      unsigned int packed = 0;
      for (int j = 0; j < per; j++) {
        int c = b * per + j;
        packed |= (unsigned int)kivi_code(__bfloat162float(k[c]), kmin[c], ksc[c], levels) << (j * bits);
      }
      row[b] = (unsigned char)packed;
    }
    for (int vg = 0; vg < vGroups; vg++) {
      float lo = __bfloat162float(v[vg * G]), hi = lo;
      for (int c = vg * G; c < min(dim, vg * G + G); c++) {
        float x = __bfloat162float(v[c]);
        lo = fminf(lo, x);
        hi = fmaxf(hi, x);
      }
      vmin[vg] = lo;
      vsc[vg] = __fdiv_rn(__fsub_rn(hi, lo), levels);
    }
    for (int b = 0; b < codeBytes; b++) {  // a value group never splits a byte (KIVILayout.Check)
      unsigned int packed = 0;
      for (int j = 0; j < per; j++) {
        int c = b * per + j, vg = c / G;
        packed |= (unsigned int)kivi_code(__bfloat162float(v[c]), vmin[vg], vsc[vg], levels) << (j * bits);
      }
      row[codeBytes + b] = (unsigned char)packed;
    }
    *reinterpret_cast<int*>(row + 2 * codeBytes + 8 * vGroups) = slot;
  }
}

// kivi_view: row i of k and v [rows][dim] from entry src[i]: quantized row src[i] ≥ 0
// dequantized, or KV pool slot −1−src[i] copied; INT_MIN leaves the row alone. grid = rows,
// dim threads (one channel each).
extern "C" __global__ void kivi_view(bf16* k, bf16* v, const unsigned char* rows, const float* table,
                                     const bf16* kpool, const bf16* vpool, const int* src, int dim,
                                     int bits, int G, int rowBytes) {
  int s = src[blockIdx.x], c = threadIdx.x;
  if (s == (int)0x80000000 || c >= dim) return;
  size_t o = (size_t)blockIdx.x * dim + c;
  if (s < 0) {
    size_t from = (size_t)(-1 - s) * dim + c;
    k[o] = kpool[from];
    v[o] = vpool[from];
    return;
  }
  int per = 8 / bits, codeBytes = (dim * bits + 7) / 8, vGroups = (dim + G - 1) / G;
  unsigned int mask = (1u << bits) - 1, shift = (c % per) * bits;
  const unsigned char* row = rows + (size_t)s * rowBytes;
  const float* vmin = reinterpret_cast<const float*>(row + 2 * codeBytes);
  const float* vsc = vmin + vGroups;
  int slot = *reinterpret_cast<const int*>(row + 2 * codeBytes + 8 * vGroups);
  const float* g = table + (size_t)slot * 2 * dim;
  float kc = (float)((row[c / per] >> shift) & mask);
  float vc = (float)((row[codeBytes + c / per] >> shift) & mask);
  k[o] = __float2bfloat16(kivi_value(kc, g[dim + c], g[c]));
  v[o] = __float2bfloat16(kivi_value(vc, vsc[c / G], vmin[c / G]));
}

// kivi_gather: row i of work = pool row idx[i]; kivi_scatter: pool row idx[i] = row i of work.
// Rows of pieces 16-byte pieces. grid = rows, 32 threads.
extern "C" __global__ void kivi_gather(uint4* work, const uint4* rows, const int* idx, int pieces) {
  const uint4* from = rows + (size_t)idx[blockIdx.x] * pieces;
  for (int i = threadIdx.x; i < pieces; i += blockDim.x) work[(size_t)blockIdx.x * pieces + i] = from[i];
}

extern "C" __global__ void kivi_scatter(uint4* rows, const uint4* work, const int* idx, int pieces) {
  uint4* to = rows + (size_t)idx[blockIdx.x] * pieces;
  for (int i = threadIdx.x; i < pieces; i += blockDim.x) to[i] = work[(size_t)blockIdx.x * pieces + i];
}

// kivi_decode: decode attention straight on a KIVI head's codes, split-K as attn_decode (same
// lanes, online softmax and merge; its partial results go to attn_merge). Entry e of KV head
// kvh is quantized row e (rowTables) while e < nq = lens[kvh], else residual entry e − nq
// (resTables) of nr = lens[Hkv + kvh]. A lane owns 8 channels of an entry: 8·bits bits of key
// and of value codes, the key group's 8 minima and scales, the value groups' of its channels.
// The entries' order does not matter here (no scores are written). grid = (splits, Hkv), 128
// threads.
template <int D, int MAXG>
__device__ __forceinline__ void kivi_decode(float* po, float* pml, const bf16* q, const unsigned char* rows,
                                            const float* table, const bf16* kpool, const bf16* vpool,
                                            const int* rowTables, const int* resTables, const int* lens,
                                            int maxRowBlocks, int maxResBlocks, int per, int Hq, int Hkv,
                                            float scaleLog2, int bits, int G, int rowBytes) {
  constexpr int LPE = D / 8;
  constexpr int EPW = 32 / LPE;
  constexpr int STEP = 4 * EPW;
  __shared__ float sm_m[4][MAXG], sm_l[4][MAXG];
  __shared__ float sm_acc[4][MAXG][D];
  int split = blockIdx.x, splits = gridDim.x, kvh = blockIdx.y;
  int GQ = Hq / Hkv;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int sub = lane / LPE, li = lane % LPE, c0 = li * 8;
  int nq = lens[kvh], len = nq + lens[Hkv + kvh];
  int start = split * per, end = split == splits - 1 ? len : min(len, start + per);
  const int* rtab = rowTables + (size_t)kvh * maxRowBlocks;
  const int* stab = resTables + (size_t)kvh * maxResBlocks;
  int codeBytes = D * bits / 8, vGroups = (D + G - 1) / G;
  unsigned long long mask = (1ull << bits) - 1;

  float qv[MAXG][8], m[MAXG], l[MAXG], acc[MAXG][8];
#pragma unroll
  for (int g = 0; g < MAXG; g++) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++) acc[g][j] = qv[g][j] = 0.f;
    if (g < GQ) {
      unpack8(reinterpret_cast<const uint4*>(q + (size_t)(kvh * GQ + g) * D)[li], qv[g]);
#pragma unroll
      for (int j = 0; j < 8; j++) qv[g][j] *= scaleLog2;
    }
  }

  for (int base = start + warp * EPW; base < end; base += STEP) {  // warp-uniform bound
    int e = base + sub;
    float kf[8], vf[8];
    if (e < end && e < nq) {
      const unsigned char* row = rows + ((size_t)rtab[e / KV_BLOCK] * KV_BLOCK + e % KV_BLOCK) * rowBytes;
      unsigned long long kb, vb;
      if (bits == 8) {
        kb = *reinterpret_cast<const unsigned long long*>(row + li * 8);
        vb = *reinterpret_cast<const unsigned long long*>(row + codeBytes + li * 8);
      } else if (bits == 4) {
        kb = *reinterpret_cast<const unsigned int*>(row + li * 4);
        vb = *reinterpret_cast<const unsigned int*>(row + codeBytes + li * 4);
      } else {
        kb = *reinterpret_cast<const unsigned short*>(row + li * 2);
        vb = *reinterpret_cast<const unsigned short*>(row + codeBytes + li * 2);
      }
      const float* vmin = reinterpret_cast<const float*>(row + 2 * codeBytes);
      const float* vsc = vmin + vGroups;
      int slot = *reinterpret_cast<const int*>(row + 2 * codeBytes + 8 * vGroups);
      const float* kmin = table + (size_t)slot * 2 * D + c0;
      const float* ksc = kmin + D;
#pragma unroll
      for (int j = 0; j < 8; j++) {
        int vg = (c0 + j) / G;
        kf[j] = kivi_value((float)((kb >> (j * bits)) & mask), ksc[j], kmin[j]);
        vf[j] = kivi_value((float)((vb >> (j * bits)) & mask), vsc[vg], vmin[vg]);
      }
    } else if (e < end) {
      int r = e - nq;
      size_t slot = (size_t)stab[r / KV_BLOCK] * KV_BLOCK + r % KV_BLOCK;
      unpack8(reinterpret_cast<const uint4*>(kpool + slot * D)[li], kf);
      unpack8(reinterpret_cast<const uint4*>(vpool + slot * D)[li], vf);
    } else {
#pragma unroll
      for (int j = 0; j < 8; j++) kf[j] = vf[j] = 0.f;
    }
    float sc[MAXG];
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

  // Merge the lane groups of the warp (same li = same dims), then the 4 warps, as attn_decode.
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
  for (int i = threadIdx.x; i < GQ * D; i += blockDim.x) {
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
    size_t part = (size_t)(kvh * GQ + g) * splits + split;
    po[part * D + d] = A;
    if (d == 0) {
      pml[part * 2] = mx;
      pml[part * 2 + 1] = L;
    }
  }
}

#define KIVI_DECODE(D, G)                                                                              \
  extern "C" __global__ void __launch_bounds__(128) kivi_decode_d##D##_g##G(                           \
      float* po, float* pml, const bf16* q, const unsigned char* rows, const float* table,             \
      const bf16* kpool, const bf16* vpool, const int* rowTables, const int* resTables, const int* lens, \
      int maxRowBlocks, int maxResBlocks, int per, int Hq, int Hkv, float scaleLog2, int bits, int G_, \
      int rowBytes) {                                                                                  \
    kivi_decode<D, G>(po, pml, q, rows, table, kpool, vpool, rowTables, resTables, lens, maxRowBlocks,  \
                      maxResBlocks, per, Hq, Hkv, scaleLog2, bits, G_, rowBytes);                      \
  }
KIVI_DECODE(64, 4)
KIVI_DECODE(64, 8)
KIVI_DECODE(128, 4)
KIVI_DECODE(128, 8)
