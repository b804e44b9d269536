// train.cu's band attention (forward, delta, dK/dV, dQ) on ../scores/emu.h's fibers, ldmatrix
// and mma.sync, with the launch geometry of cuda/train.go, against float64 attention and its
// gradients from the same bf16 inputs. Also checks that no kernel writes past its rows.
#include "emu.h"
#include <random>
extern "C" {
void train_attn_fwd_d64(bf16*, float*, const bf16*, const bf16*, const bf16*, int, int, int, int, int, float);
void train_attn_fwd_d128(bf16*, float*, const bf16*, const bf16*, const bf16*, int, int, int, int, int, float);
void train_attn_delta(float*, const bf16*, const bf16*, int, int, int);
void train_attn_dkdv_d64(bf16*, bf16*, const bf16*, const float*, const float*, const bf16*, const bf16*, const bf16*, int, int,
                         int, int, int, float, float);
void train_attn_dkdv_d128(bf16*, bf16*, const bf16*, const float*, const float*, const bf16*, const bf16*, const bf16*, int, int,
                          int, int, int, float, float);
void train_attn_dq_d64(bf16*, const bf16*, const float*, const float*, const bf16*, const bf16*, const bf16*, int, int, int, int,
                       int, float, float);
void train_attn_dq_d128(bf16*, const bf16*, const float*, const float*, const bf16*, const bf16*, const bf16*, int, int, int, int,
                        int, float, float);
}
int emu_races();

// cuda/train.go's geometry: tiles of 64, 128 threads (forward, dQ) and 256 (dK/dV, whose query
// tiles are of 64 rows for D = 64 and 32 for D = 128).
static const int TILE = 64;
static size_t fwdShared(int D) { return 5 * TILE * (D + 8) * 2; }
static size_t dqShared(int D) { return 6 * TILE * (D + 8) * 2; }
static size_t dkdvShared(int D) {
  int qt = D == 64 ? 64 : 32;
  return (2 * TILE + 8 * qt) * (D + 8) * 2 + 8 * qt * 4;
}

static bool vis(int i, int j, int sink, int window) { return j <= i && (window == 0 || j < sink || j > i - window); }
static const int GUARD = 4096;  // poisoned elements after each output, which no kernel may write
static const bf16 NaNbf{0x7fc0};

static double rel(const std::vector<bf16>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); i++) {
    double g = bf2f(got[i]);
    if (g != g) return 1e9;
    num += (g - want[i]) * (g - want[i]);
    den += want[i] * want[i];
  }
  return den == 0 ? (num == 0 ? 0 : 1e9) : sqrt(num / den);
}
// The worst row's error against the RMS row norm: a row that misses (or gains) one query's or
// key's term stands out here, where the whole tensor's error dilutes it.
static double rowErr(const std::vector<bf16>& got, const std::vector<double>& want, int D) {
  double all = 0, worst = 0;
  for (size_t i = 0; i < want.size(); i++) all += want[i] * want[i];
  for (size_t r = 0; r < want.size() / D; r++) {
    double e = 0;
    for (int x = 0; x < D; x++) {
      double g = bf2f(got[r * D + x]), d = g - want[r * D + x];
      e += g != g ? 1e18 : d * d;
    }
    worst = std::max(worst, e);
  }
  return all == 0 ? (worst == 0 ? 0 : 1e9) : sqrt(worst / (all / (want.size() / D)));
}
template <class T>
static bool guarded(const std::vector<T>& v, size_t n) {
  for (size_t i = n; i < v.size(); i++) {
    float f;
    if constexpr (sizeof(T) == 2) f = bf2f(v[i]); else f = v[i];
    if (f == f) return false;
  }
  return true;
}

static int run(int n, int hq, int hkv, int D, int sink, int window, float scale) {
  std::mt19937 rng(n * 31 + window * 7 + D);
  std::uniform_real_distribution<float> u(-1, 1);
  auto mk = [&](size_t c, float s, std::vector<bf16>& h, std::vector<double>& f) {
    h.resize(c); f.resize(c);
    for (size_t i = 0; i < c; i++) { h[i] = f2bf(u(rng) * s); f[i] = bf2f(h[i]); }
  };
  std::vector<bf16> qh, kh, vh, doh;
  std::vector<double> q, k, v, dout;
  const size_t nq = (size_t)n * hq * D, nk = (size_t)n * hkv * D;
  mk(nq, 2, qh, q); mk(nk, 2, kh, k); mk(nk, 1, vh, v); mk(nq, 1, doh, dout);
  std::vector<bf16> out(nq + GUARD, NaNbf), dq(nq + GUARD, NaNbf), dk(nk + GUARD, NaNbf), dv(nk + GUARD, NaNbf);
  std::vector<float> lse(hq * n + GUARD, NAN), delta(hq * n + GUARD, NAN);
  const float sl2 = scale * 1.4426950408889634f;
  const int sk = window == 0 ? 0 : sink;  // BandShape.sinkWindow
  const unsigned tiles = (n + TILE - 1) / TILE;
  auto fwd = D == 64 ? train_attn_fwd_d64 : train_attn_fwd_d128;
  auto dkdv = D == 64 ? train_attn_dkdv_d64 : train_attn_dkdv_d128;
  auto dqk = D == 64 ? train_attn_dq_d64 : train_attn_dq_d128;
  emu_launch({tiles, (unsigned)hq, 1}, 128, fwdShared(D),
             [&] { fwd(out.data(), lse.data(), qh.data(), kh.data(), vh.data(), n, hq, hkv, sk, window, sl2); });
  emu_launch({(unsigned)(n * hq + 7) / 8, 1, 1}, 256, 0, [&] { train_attn_delta(delta.data(), doh.data(), out.data(), n, hq, D); });
  emu_launch({tiles, (unsigned)hkv, 1}, 256, dkdvShared(D), [&] {
    dkdv(dk.data(), dv.data(), doh.data(), lse.data(), delta.data(), qh.data(), kh.data(), vh.data(), n, hq, hkv, sk, window, scale, sl2);
  });
  emu_launch({tiles, (unsigned)hq, 1}, 128, dqShared(D), [&] {
    dqk(dq.data(), doh.data(), lse.data(), delta.data(), qh.data(), kh.data(), vh.data(), n, hq, hkv, sk, window, scale, sl2);
  });
  // reference
  std::vector<double> ro(nq), rl(hq * n), rdq(nq), rdk(nk), rdv(nk), p(n), dp(n);
  for (int h = 0; h < hq; h++) {
    int g = h / (hq / hkv);
    for (int i = 0; i < n; i++) {
      double mx = -INFINITY;
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) {
        double d = 0; for (int e = 0; e < D; e++) d += q[((size_t)i * hq + h) * D + e] * k[((size_t)j * hkv + g) * D + e];
        p[j] = scale * d; mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) { p[j] = exp(p[j] - mx); sum += p[j]; }
      rl[h * n + i] = mx + log(sum);
      double del = 0;
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) {
        p[j] /= sum; dp[j] = 0;
        for (int e = 0; e < D; e++) {
          ro[((size_t)i * hq + h) * D + e] += p[j] * v[((size_t)j * hkv + g) * D + e];
          dp[j] += dout[((size_t)i * hq + h) * D + e] * v[((size_t)j * hkv + g) * D + e];
        }
        del += p[j] * dp[j];
      }
      for (int j = 0; j <= i; j++) if (vis(i, j, sink, window)) {
        double ds = p[j] * (dp[j] - del) * scale;
        for (int e = 0; e < D; e++) {
          rdq[((size_t)i * hq + h) * D + e] += ds * k[((size_t)j * hkv + g) * D + e];
          rdk[((size_t)j * hkv + g) * D + e] += ds * q[((size_t)i * hq + h) * D + e];
          rdv[((size_t)j * hkv + g) * D + e] += p[j] * dout[((size_t)i * hq + h) * D + e];
        }
      }
    }
  }
  double le = 0;
  for (int i = 0; i < hq * n; i++) le = std::max(le, lse[i] != lse[i] ? 1e9 : fabs(lse[i] - rl[i]));
  double eo = rel(out, ro), eq = rel(dq, rdq), ek = rel(dk, rdk), ev = rel(dv, rdv);
  double wr = std::max(std::max(rowErr(out, ro, D), rowErr(dq, rdq, D)), std::max(rowErr(dk, rdk, D), rowErr(dv, rdv, D)));
  bool fenced = guarded(out, nq) && guarded(dq, nq) && guarded(dk, nk) && guarded(dv, nk) && guarded(lse, hq * n) && guarded(delta, hq * n);
  // cuda/train_test.go's tolerances
  bool ok = eo < 5e-3 && le < 1e-4 && eq < 2e-2 && ek < 2e-2 && ev < 1e-2 && wr < 6e-2 && fenced;
  printf("%s n %3d hq %d hkv %d D %3d sink %2d window %4d scale %-6g: out %.2e lse %.2e dq %.2e dk %.2e dv %.2e, worst row %.2e%s\n",
         ok ? "ok  " : "FAIL", n, hq, hkv, D, sink, window, scale, eo, le, eq, ek, ev, wr, fenced ? "" : " (wrote past its rows)");
  return ok ? 0 : 1;
}

int main() {
  int bad = 0;
  bad += run(200, 4, 4, 64, 0, 0, 0.125f);        // full, n not a multiple of a tile
  bad += run(200, 8, 4, 128, 0, 0, 0.0884f);      // full, D 128, groups of 2
  bad += run(300, 4, 2, 64, 0, 0, 0.125f);        // full, several query tiles a key tile
  bad += run(300, 8, 4, 64, 4, 64, 0.125f);       // sink 4, window 64
  bad += run(300, 4, 2, 128, 4, 64, 0.0884f);     // the same, D 128
  bad += run(300, 4, 2, 128, 0, 32, 0.0884f);     // window 32, no sink
  bad += run(200, 4, 2, 64, 0, 32, 0.125f);       // the same, D 64
  bad += run(200, 4, 2, 64, 4, 1000, 0.125f);     // window longer than the sequence
  bad += run(130, 2, 1, 128, 3, 500, 0.0884f);    // the same, D 128
  bad += run(200, 4, 2, 64, 0, 50, 0.125f);       // streaming without a sink
  bad += run(333, 8, 2, 128, 5, 70, 0.0884f);     // sink and window, groups of 4
  bad += run(97, 4, 1, 64, 40, 20, 0.125f);       // sink longer than the window
  bad += run(64, 4, 2, 128, 7, 0, 0.0884f);       // full band ignores the sink
  bad += run(77, 2, 2, 64, 1, 1, 0.125f);         // a query sees the sink and itself
  bad += run(3, 2, 1, 128, 0, 2, 0.0884f);        // a few tokens
  bad += run(300, 4, 2, 64, 64, 128, 0.125f);     // several skipped tiles per CTA
  bad += run(160, 8, 4, 128, 33, 33, 0.0884f);    // tile-straddling sink and window
  bad += run(300, 4, 2, 64, 3, 66, 0.125f);       // window ≡ 2 (mod 64): a key tile's last query opens a query tile
  bad += run(300, 4, 2, 128, 0, 65, 0.0884f);     // window ≡ 1 (mod 64): a query tile's first key opens a key tile
  bad += run(129, 2, 2, 64, 0, 0, 1.f);           // peaked softmax (scale 1)
  bad += run(129, 4, 1, 128, 0, 40, 0.5f);        // peaked, streaming
  printf("shared-memory races: %d\n", emu_races());
  if (emu_races() != 0) bad++;
  printf(bad ? "FAILURES\n" : "ALL OK\n");
  return bad;
}
