// Linear layers: C[m,n] = A[m,k]·W[n,k]ᵀ (+ bias[n]), W row-major as a Hugging Face Linear
// stores it, bf16 in and out, f32 accumulation. N and K divisible by 8.
#include "common.cuh"

// Tensor-core GEMM: a 128x128 tile per block of 8 warps (each 64x32), K in steps of 32
// through a 3-stage cp.async pipeline. Shared rows are padded to 40 elements (80 bytes) so the
// 8 row addresses of each ldmatrix fall in distinct banks. Dynamic shared memory: 61440 bytes.
#define GM 128
#define GN 128
#define GK 32
#define GPAD 40
#define GSTAGES 3

extern "C" __global__ void __launch_bounds__(256) gemm_bf16(bf16* C, const bf16* A, const bf16* W,
                                                            const bf16* bias, int M, int N, int K) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* As = reinterpret_cast<bf16*>(smem);  // [GSTAGES][GM][GPAD]
  bf16* Bs = As + GSTAGES * GM * GPAD;        // [GSTAGES][GN][GPAD]
  int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int m0 = blockIdx.y * GM, n0 = blockIdx.x * GN;
  int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
  int KT = (K + GK - 1) / GK;

  auto load = [&](int kt, int st) {
    int k0 = kt * GK;
#pragma unroll
    for (int i = 0; i < 2; i++) {
      int c = tid + i * 256;
      int r = c >> 2, kc = (c & 3) * 8;
      int gk = k0 + kc;
      bool ok = m0 + r < M && gk < K;
      cp_async16(As + (st * GM + r) * GPAD + kc, ok ? A + (size_t)(m0 + r) * K + gk : A, ok);
      ok = n0 + r < N && gk < K;
      cp_async16(Bs + (st * GN + r) * GPAD + kc, ok ? W + (size_t)(n0 + r) * K + gk : W, ok);
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

#pragma unroll
  for (int s = 0; s < GSTAGES - 1; s++) {
    if (s < KT) load(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; kt++) {
    cp_async_wait<GSTAGES - 2>();
    __syncthreads();  // tile kt landed, and every warp is done with the stage reloaded next
    int nk = kt + GSTAGES - 1;
    if (nk < KT) load(nk, nk % GSTAGES);
    cp_async_commit();
    const bf16* as = As + (kt % GSTAGES) * GM * GPAD;
    const bf16* bs = Bs + (kt % GSTAGES) * GN * GPAD;
#pragma unroll
    for (int kk = 0; kk < GK; kk += 16) {
      uint32_t af[4][4], bfr[2][4];
#pragma unroll
      for (int mi = 0; mi < 4; mi++)
        ldmatrix_x4(af[mi], as + (wm + mi * 16 + (lane & 15)) * GPAD + kk + (lane >> 4) * 8);
#pragma unroll
      for (int nj = 0; nj < 2; nj++)
        ldmatrix_x4(bfr[nj], bs + (wn + nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * GPAD + kk +
                                 ((lane >> 3) & 1) * 8);
#pragma unroll
      for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
          mma16816(acc[mi][ni], af[mi], bfr[ni >> 1][(ni & 1) * 2], bfr[ni >> 1][(ni & 1) * 2 + 1]);
    }
  }

  int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int ni = 0; ni < 4; ni++) {
    int col = n0 + wn + ni * 8 + t4 * 2;
    if (col >= N) continue;
    float b0 = bias ? __bfloat162float(bias[col]) : 0.f;
    float b1 = bias ? __bfloat162float(bias[col + 1]) : 0.f;
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
      for (int hf = 0; hf < 2; hf++) {
        int row = m0 + wm + mi * 16 + g + hf * 8;
        if (row < M)
          *reinterpret_cast<__nv_bfloat162*>(C + (size_t)row * N + col) =
              __floats2bfloat162_rn(acc[mi][ni][2 * hf] + b0, acc[mi][ni][2 * hf + 1] + b1);
      }
  }
}

// Matrix-vector path for M <= 8 rows (decode): one warp per output column streams W's row once
// with 16-byte loads, four in flight per lane, and dots it with every row of A (A stays in L1).
// Up to three outputs that read the same A (q, k and v; gate and up) share one launch: the
// blocks are numbered over their columns in order (N0 and N1 are multiples of 8, so a block
// stays within one output; an unused output has N = 0). grid = ceil((N0+N1+N2)/8), 256 threads.
extern "C" __global__ void __launch_bounds__(256) gemv_bf16(bf16* C0, const bf16* W0, const bf16* b0, int N0,
                                                            bf16* C1, const bf16* W1, const bf16* b1, int N1,
                                                            bf16* C2, const bf16* W2, const bf16* b2, int N2,
                                                            const bf16* A, int M, int K) {
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int n = blockIdx.x * 8 + warp;
  bf16* C = C0;
  const bf16 *W = W0, *bias = b0;
  int N = N0;
  if (n >= N0) {
    n -= N0, C = C1, W = W1, bias = b1, N = N1;
    if (n >= N1) n -= N1, C = C2, W = W2, bias = b2, N = N2;
  }
  if (n >= N) return;
  const uint4* w = reinterpret_cast<const uint4*>(W + (size_t)n * K);
  int k8 = K / 8;
  float acc[8];
#pragma unroll
  for (int m = 0; m < 8; m++) acc[m] = 0.f;
  for (int base = lane; base < k8; base += 32 * 4) {
    uint4 wv[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
      int i = base + u * 32;
      if (i < k8) wv[u] = __ldcs(w + i);  // W is read once: keep it out of the way of A in cache
    }
#pragma unroll
    for (int u = 0; u < 4; u++) {
      int i = base + u * 32;
      if (i >= k8) break;
      float wf[8];
      unpack8(wv[u], wf);
#pragma unroll
      for (int m = 0; m < 8; m++) {
        if (m >= M) break;
        float a[8];
        unpack8(reinterpret_cast<const uint4*>(A + (size_t)m * K)[i], a);
#pragma unroll
        for (int j = 0; j < 8; j++) acc[m] += a[j] * wf[j];
      }
    }
  }
  float b = bias ? __bfloat162float(bias[n]) : 0.f;
#pragma unroll
  for (int m = 0; m < 8; m++) {
    if (m >= M) break;
    float v = warp_sum(acc[m]);
    if (lane == 0) C[(size_t)m * N + n] = __float2bfloat16(v + b);
  }
}
