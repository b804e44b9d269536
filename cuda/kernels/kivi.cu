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
