// Host emulation shim: one std::thread per CUDA thread, std::barrier for __syncthreads and warps.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
using std::max;
using std::min;
struct bf16 { uint16_t x; };
typedef bf16 __nv_bfloat16;
struct __nv_bfloat162 { bf16 x, y; };
struct float2e { float x, y; };
struct uint4 { uint32_t x, y, z, w; };
inline uint4 make_uint4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return {a, b, c, d}; }
inline float __bfloat162float(bf16 h) { uint32_t u = (uint32_t)h.x << 16; float f; memcpy(&f, &u, 4); return f; }
inline bf16 __float2bfloat16(float f) { uint32_t u; memcpy(&u, &f, 4); if (f != f) return {0x7fc0}; u += 0x7fff + ((u >> 16) & 1); return {(uint16_t)(u >> 16)}; }
inline float2e __bfloat1622float2(__nv_bfloat162 h) { return {__bfloat162float(h.x), __bfloat162float(h.y)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16(a), __float2bfloat16(b)}; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
struct dim3e { unsigned x, y, z; };
extern thread_local dim3e threadIdx, blockIdx;
extern dim3e blockDim, gridDim;
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
struct Warp { std::barrier<> bar{32}; float vals[32]; };
extern std::barrier<>* blockBarrier;
extern Warp* warps;
inline void __syncthreads() { blockBarrier->arrive_and_wait(); }
inline void __syncwarp() { warps[threadIdx.x / 32].bar.arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
  Warp& w = warps[threadIdx.x / 32];
  int l = threadIdx.x % 32;
  w.vals[l] = v;
  w.bar.arrive_and_wait();
  float r = w.vals[l ^ o];
  w.bar.arrive_and_wait();
  return r;
}
inline void unpack8(uint4 u, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
  for (int i = 0; i < 4; i++) { float2e p = __bfloat1622float2(h[i]); f[2 * i] = p.x; f[2 * i + 1] = p.y; }
}
inline uint4 pack8(const float f[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
  for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return u;
}
inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}
