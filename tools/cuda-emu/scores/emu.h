// Host emulation of the CUDA subset kvfoot's kernels use: each block's threads run as fibers
// (ucontext) on one OS thread; __syncthreads and warp collectives (shfl, any, ldmatrix, mma)
// block a fiber until every live thread (lane) arrives. cp.async copies are deferred to the wait.
#pragma once
#include <ucontext.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>
#include <functional>
#include <algorithm>
using std::max;
using std::min;

#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define KV_BLOCK 64

struct dim3e { unsigned x, y, z; };
struct uint4 { uint32_t x, y, z, w; };
inline uint4 make_uint4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return uint4{a, b, c, d}; }
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
struct bf16 { uint16_t x; };
struct __nv_bfloat162 { bf16 x, y; };
typedef bf16 __nv_bfloat16;

inline float bf2f(bf16 h) { uint32_t u = (uint32_t)h.x << 16; float f; memcpy(&f, &u, 4); return f; }
inline bf16 f2bf(float f) {
  uint32_t u; memcpy(&u, &f, 4);
  if (f != f) return bf16{0x7fc0};
  u += 0x7fff + ((u >> 16) & 1);
  return bf16{(uint16_t)(u >> 16)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162{f2bf(a), f2bf(b)}; }
inline bf16 __float2bfloat16(float a) { return f2bf(a); }
inline float __bfloat162float(bf16 h) { return bf2f(h); }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

// ---- fibers
struct Pending { void* dst; const void* src; bool pred; };
struct Fiber {
  ucontext_t ctx;
  dim3e tid;
  bool done = false, blocked = false;
  int waitKind = 0;  // 1: barrier, 2: warp collective
  std::vector<Pending> open;
  std::vector<std::vector<Pending>> groups;
  // collective slots
  uint32_t in[8], out[8];
  float fin[4], fout[4];
  const void* addr;
};
extern Fiber* emu_cur;
extern std::vector<Fiber>* emu_fibers;
extern ucontext_t emu_sched;
extern dim3e blockIdx, gridDim, blockDim;
#define threadIdx (emu_cur->tid)
extern unsigned char* emu_smem;

void emu_yield_blocked();
// Shared-memory race checks on the dynamic shared memory, per 16-byte piece: cp.async writes
// are in flight from issue to wait; ldmatrix reads. Epochs count completed barriers.
void emu_smem_issue(void* dst);
void emu_smem_land(void* dst);
void emu_smem_read(const void* p, int bytes);
void emu_barrier();
// warp collective: all 32 lanes deposit, the last runs f over the warp's fibers.
void emu_warp(const std::function<void(Fiber**)>& f);

inline int emu_lane() { return threadIdx.x & 31; }

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int off) {
  static_assert(sizeof(T) == 4, "4-byte shuffles only");
  memcpy(&emu_cur->in[0], &v, 4);
  emu_warp([off](Fiber** w) { for (int l = 0; l < 32; l++) w[l]->out[0] = w[l ^ off]->in[0]; });
  T r; memcpy(&r, &emu_cur->out[0], 4);
  return r;
}
inline bool __any_sync(unsigned, bool p) {
  emu_cur->in[0] = p;
  emu_warp([](Fiber** w) { uint32_t a = 0; for (int l = 0; l < 32; l++) a |= w[l]->in[0]; for (int l = 0; l < 32; l++) w[l]->out[0] = a; });
  return emu_cur->out[0] != 0;
}
inline void __syncthreads() { emu_barrier(); }

// ---- common.cuh's helpers
inline void unpack8(uint4 u, float f[8]) {
  const bf16* h = reinterpret_cast<const bf16*>(&u);
  for (int i = 0; i < 8; i++) f[i] = bf2f(h[i]);
}
inline uint4 pack8(const float f[8]) {
  uint4 u;
  bf16* h = reinterpret_cast<bf16*>(&u);
  for (int i = 0; i < 8; i++) h[i] = f2bf(f[i]);
  return u;
}
inline uint32_t pack2(float lo, float hi) { return (uint32_t)f2bf(lo).x | ((uint32_t)f2bf(hi).x << 16); }
inline void cp_async16(void* dst, const void* src, bool pred) {
  emu_smem_issue(dst);
  emu_cur->open.push_back({dst, src, pred});
}
inline void cp_async_commit() { emu_cur->groups.push_back(emu_cur->open); emu_cur->open.clear(); }
template <int N>
inline void cp_async_wait() {
  auto& g = emu_cur->groups;
  while ((int)g.size() > N) {
    for (auto& p : g.front()) {
      if (p.pred) memcpy(p.dst, p.src, 16); else memset(p.dst, 0, 16);
      emu_smem_land(p.dst);
    }
    g.erase(g.begin());
  }
}
inline void ldmatrix_impl(uint32_t r[4], const void* p, bool trans) {
  emu_cur->addr = p;
  emu_warp([trans](Fiber** w) {
    for (int l = 0; l < 32; l++)
      for (int m = 0; m < 4; m++) {
        const bf16* e[2];
        for (int k = 0; k < 2; k++) {
          int row, col;
          if (!trans) row = l / 4, col = 2 * (l % 4) + k;
          else row = 2 * (l % 4) + k, col = l / 4;
          e[k] = reinterpret_cast<const bf16*>(w[8 * m + row]->addr) + col;
          emu_smem_read(e[k], 2);
        }
        w[l]->out[m] = (uint32_t)e[0]->x | ((uint32_t)e[1]->x << 16);
      }
  });
  for (int m = 0; m < 4; m++) r[m] = emu_cur->out[m];
}
inline void ldmatrix_x4(uint32_t r[4], const void* p) { ldmatrix_impl(r, p, false); }
inline void ldmatrix_x4_trans(uint32_t r[4], const void* p) { ldmatrix_impl(r, p, true); }
inline float lo16(uint32_t u) { return bf2f(bf16{(uint16_t)(u & 0xffff)}); }
inline float hi16(uint32_t u) { return bf2f(bf16{(uint16_t)(u >> 16)}); }
inline void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  Fiber* f = emu_cur;
  for (int i = 0; i < 4; i++) f->in[i] = a[i], f->fin[i] = c[i];
  f->in[4] = b0; f->in[5] = b1;
  emu_warp([](Fiber** w) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
      int g = l >> 2, t = l & 3;
      uint32_t* a = w[l]->in;
      A[g][2 * t] = lo16(a[0]); A[g][2 * t + 1] = hi16(a[0]);
      A[g + 8][2 * t] = lo16(a[1]); A[g + 8][2 * t + 1] = hi16(a[1]);
      A[g][2 * t + 8] = lo16(a[2]); A[g][2 * t + 9] = hi16(a[2]);
      A[g + 8][2 * t + 8] = lo16(a[3]); A[g + 8][2 * t + 9] = hi16(a[3]);
      B[2 * t][g] = lo16(a[4]); B[2 * t + 1][g] = hi16(a[4]);
      B[2 * t + 8][g] = lo16(a[5]); B[2 * t + 9][g] = hi16(a[5]);
      C[g][2 * t] = w[l]->fin[0]; C[g][2 * t + 1] = w[l]->fin[1];
      C[g + 8][2 * t] = w[l]->fin[2]; C[g + 8][2 * t + 1] = w[l]->fin[3];
    }
    for (int l = 0; l < 32; l++) {
      int g = l >> 2, t = l & 3;
      int rr[4] = {g, g, g + 8, g + 8}, cc[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
      for (int i = 0; i < 4; i++) {
        float s = C[rr[i]][cc[i]];
        for (int k = 0; k < 16; k++) s += A[rr[i]][k] * B[k][cc[i]];
        w[l]->fout[i] = s;
      }
    }
  });
  for (int i = 0; i < 4; i++) c[i] = f->fout[i];
}
inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}

// emu_launch runs body for every block of grid with block threads and smem bytes of dynamic
// shared memory (filled with 0xff: NaN bf16 and floats, to catch reads of unwritten memory).
void emu_launch(dim3e grid, int threads, size_t smem, const std::function<void()>& body);
