// Row and element kernels of the forward pass: embedding rows, RMSNorm, RoPE, SwiGLU, residual
// and bias adds. Rows are bf16 with a length divisible by 8 (one 16-byte vector per thread step);
// arithmetic is f32 and each output is rounded to bf16 once.
#include "common.cuh"

// out[i,:] = table[ids[i],:]; grid = rows. The host has checked every id against the table.
extern "C" __global__ void embed_rows(bf16* out, const bf16* table, const int* ids, int dim) {
  const uint4* src = reinterpret_cast<const uint4*>(table + (size_t)ids[blockIdx.x] * dim);
  uint4* dst = reinterpret_cast<uint4*>(out + (size_t)blockIdx.x * dim);
  for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) dst[i] = src[i];
}

// out[r,:] = x[r,:] / sqrt(mean(x[r,:]²) + eps) * w; grid = rows, 256 threads.
extern "C" __global__ void rmsnorm(bf16* out, const bf16* x, const bf16* w, int dim, float eps) {
  __shared__ float partial[32];
  const uint4* xr = reinterpret_cast<const uint4*>(x + (size_t)blockIdx.x * dim);
  const uint4* wr = reinterpret_cast<const uint4*>(w);
  uint4* dst = reinterpret_cast<uint4*>(out + (size_t)blockIdx.x * dim);
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) {
    float f[8];
    unpack8(xr[i], f);
#pragma unroll
    for (int j = 0; j < 8; j++) ss += f[j] * f[j];
  }
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  float r = rsqrtf(partial[0] / dim + eps);
  for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) {
    float f[8], g[8];
    unpack8(xr[i], f);
    unpack8(wr[i], g);
#pragma unroll
    for (int j = 0; j < 8; j++) f[j] = f[j] * r * g[j];
    dst[i] = pack8(f);
  }
}

// Rotate-half RoPE in place on x[token, head, :] at angle pos[token·pos_stride]·inv_freq[j], cos
// and sin multiplied by scale (YaRN's attention factor; 1 otherwise). grid = (tokens, heads),
// dim/2 threads. sincosf, not __sincosf: angles reach 10^5 radians at long contexts. The stride
// lets a batch's sequences each write their positions into their own rows of a shared table.
extern "C" __global__ void rope(bf16* x, const int* pos, int pos_stride, const float* inv_freq,
                                int heads, int dim, float scale) {
  int half = dim / 2;
  bf16* v = x + ((size_t)blockIdx.x * heads + blockIdx.y) * dim;
  float p = (float)pos[(size_t)blockIdx.x * pos_stride];
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    float s, c;
    sincosf(p * inv_freq[j], &s, &c);
    s *= scale;
    c *= scale;
    float a = __bfloat162float(v[j]), b = __bfloat162float(v[j + half]);
    v[j] = __float2bfloat16(a * c - b * s);
    v[j + half] = __float2bfloat16(b * c + a * s);
  }
}

// out = silu(gate) * up over count elements (count divisible by 8).
extern "C" __global__ void swiglu(bf16* out, const bf16* gate, const bf16* up, long long count) {
  long long n8 = count / 8;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8;
       i += (long long)gridDim.x * blockDim.x) {
    float g[8], u[8];
    unpack8(reinterpret_cast<const uint4*>(gate)[i], g);
    unpack8(reinterpret_cast<const uint4*>(up)[i], u);
#pragma unroll
    for (int j = 0; j < 8; j++) g[j] = g[j] / (1.f + expf(-g[j])) * u[j];
    reinterpret_cast<uint4*>(out)[i] = pack8(g);
  }
}

// out = a + b over count elements (count divisible by 8); out may alias a or b.
extern "C" __global__ void add(bf16* out, const bf16* a, const bf16* b, long long count) {
  long long n8 = count / 8;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8;
       i += (long long)gridDim.x * blockDim.x) {
    float x[8], y[8];
    unpack8(reinterpret_cast<const uint4*>(a)[i], x);
    unpack8(reinterpret_cast<const uint4*>(b)[i], y);
#pragma unroll
    for (int j = 0; j < 8; j++) x[j] += y[j];
    reinterpret_cast<uint4*>(out)[i] = pack8(x);
  }
}

// x[r,c] += bias[c] in place; grid = rows (cols divisible by 8).
extern "C" __global__ void bias_add(bf16* x, const bf16* bias, int cols) {
  uint4* row = reinterpret_cast<uint4*>(x + (size_t)blockIdx.x * cols);
  const uint4* b = reinterpret_cast<const uint4*>(bias);
  for (int i = threadIdx.x; i < cols / 8; i += blockDim.x) {
    float f[8], g[8];
    unpack8(row[i], f);
    unpack8(b[i], g);
#pragma unroll
    for (int j = 0; j < 8; j++) f[j] += g[j];
    row[i] = pack8(f);
  }
}
