#include "train.cc"
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>
thread_local dim3e threadIdx, blockIdx;
dim3e blockDim, gridDim;
std::barrier<>* blockBarrier;
Warp* warps;
void launch(unsigned gx, unsigned gy, unsigned threads, std::function<void()> f) {
  blockDim = {threads, 1, 1};
  gridDim = {gx, gy, 1};
  for (unsigned by = 0; by < gy; by++)
    for (unsigned bx = 0; bx < gx; bx++) {
      std::barrier<> bar(threads);
      std::unique_ptr<Warp[]> ws(new Warp[threads / 32]);
      blockBarrier = &bar;
      warps = ws.get();
      std::vector<std::thread> ts;
      for (unsigned t = 0; t < threads; t++)
        ts.emplace_back([&, t] { threadIdx = {t, 0, 0}; blockIdx = {bx, by, 0}; f(); });
      for (auto& t : ts) t.join();
    }
}
static bool vis(int i, int j, int sink, int window) { return j <= i && (window == 0 || j < sink || j > i - window); }
static double rel(const std::vector<bf16>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); i++) {
    double g = __bfloat162float(got[i]);
    if (g != g) return 1e9;
    num += (g - want[i]) * (g - want[i]);
    den += want[i] * want[i];
  }
  return sqrt(num / den);
}
int run(int n, int hq, int hkv, int D, int sink, int window, float scale) {
  std::mt19937 rng(n * 31 + window);
  std::uniform_real_distribution<float> u(-1, 1);
  auto mk = [&](size_t c, float s, std::vector<bf16>& h, std::vector<double>& f) {
    h.resize(c); f.resize(c);
    for (size_t i = 0; i < c; i++) { h[i] = __float2bfloat16(u(rng) * s); f[i] = __bfloat162float(h[i]); }
  };
  std::vector<bf16> qh, kh, vh, doh; std::vector<double> q, k, v, dout;
  mk((size_t)n * hq * D, 2, qh, q); mk((size_t)n * hkv * D, 2, kh, k); mk((size_t)n * hkv * D, 1, vh, v); mk((size_t)n * hq * D, 1, doh, dout);
  std::vector<bf16> out(n * hq * D, bf16{0x7fc0}), dq(n * hq * D, bf16{0x7fc0}), dk(n * hkv * D, bf16{0x7fc0}), dv(n * hkv * D, bf16{0x7fc0});
  std::vector<float> lse(hq * n, NAN), delta(hq * n, NAN);
  float sl2 = scale * 1.4426950408889634f;
  int sk = window == 0 ? 0 : sink;
  auto fwd = D == 64 ? train_attn_fwd_d64 : train_attn_fwd_d128;
  auto dkdv = D == 64 ? train_attn_dkdv_d64 : train_attn_dkdv_d128;
  auto dqk = D == 64 ? train_attn_dq_d64 : train_attn_dq_d128;
  launch((n + 63) / 64, hq, 256, [&] { fwd(out.data(), lse.data(), qh.data(), kh.data(), vh.data(), n, hq, hkv, sk, window, sl2); });
  launch((n * hq + 7) / 8, 1, 256, [&] { train_attn_delta(delta.data(), doh.data(), out.data(), n, hq, D); });
  launch((n + 31) / 32, hkv, 256, [&] { dkdv(dk.data(), dv.data(), doh.data(), lse.data(), delta.data(), qh.data(), kh.data(), vh.data(), n, hq, hkv, sk, window, scale, sl2); });
  launch((n + 31) / 32, hq, 256, [&] { dqk(dq.data(), doh.data(), lse.data(), delta.data(), qh.data(), kh.data(), vh.data(), n, hq, hkv, sk, window, scale, sl2); });
  // reference
  std::vector<double> ro(n * hq * D), rl(hq * n), rdq(n * hq * D), rdk(n * hkv * D), rdv(n * hkv * D), p(n), dp(n);
  for (int h = 0; h < hq; h++) {
    int g = h / (hq / hkv);
    for (int i = 0; i < n; i++) {
      double mx = -INFINITY;
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) {
        double d = 0; for (int e = 0; e < D; e++) d += q[(i * hq + h) * D + e] * k[(j * hkv + g) * D + e];
        p[j] = scale * d; mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) { p[j] = exp(p[j] - mx); sum += p[j]; }
      rl[h * n + i] = mx + log(sum);
      double del = 0;
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) {
        p[j] /= sum; dp[j] = 0;
        for (int e = 0; e < D; e++) { ro[(i * hq + h) * D + e] += p[j] * v[(j * hkv + g) * D + e]; dp[j] += dout[(i * hq + h) * D + e] * v[(j * hkv + g) * D + e]; }
        del += p[j] * dp[j];
      }
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) {
        double ds = p[j] * (dp[j] - del) * scale;
        for (int e = 0; e < D; e++) {
          rdq[(i * hq + h) * D + e] += ds * k[(j * hkv + g) * D + e];
          rdk[(j * hkv + g) * D + e] += ds * q[(i * hq + h) * D + e];
          rdv[(j * hkv + g) * D + e] += p[j] * dout[(i * hq + h) * D + e];
        }
      }
    }
  }
  double le = 0;
  for (int i = 0; i < hq * n; i++) le = std::max(le, lse[i] != lse[i] ? 1e9 : fabs(lse[i] - rl[i]));
  double eo = rel(out, ro), eq = rel(dq, rdq), ek = rel(dk, rdk), ev = rel(dv, rdv);
  bool ok = eo < 5e-3 && le < 1e-4 && eq < 1e-2 && ek < 1e-2 && ev < 1e-2;
  printf("%s n %d hq %d hkv %d D %d sink %d window %d scale %g: out %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n", ok ? "ok  " : "FAIL", n, hq, hkv, D, sink, window, scale, eo, le, eq, ek, ev);
  return ok ? 0 : 1;
}
int main(int argc, char** argv) {
  int bad = 0;
  bad += run(200, 4, 4, 64, 0, 0, 0.125f);
  bad += run(200, 4, 2, 64, 0, 50, 0.125f);
  bad += run(97, 4, 1, 64, 40, 20, 0.125f);
  bad += run(130, 2, 1, 128, 3, 500, 0.0884f);
  bad += run(77, 2, 2, 64, 1, 1, 0.125f);
  bad += run(3, 2, 1, 128, 0, 2, 0.0884f);
  bad += run(160, 8, 4, 128, 33, 33, 0.0884f);
  bad += run(129, 2, 2, 64, 0, 0, 1.f);
  bad += run(129, 4, 1, 128, 0, 40, 0.5f);
  return bad;
}
