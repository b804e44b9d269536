// train.cu's kernels other than the attention on ../scores/emu.h's fibers, against float64.
#include "emu.h"
#include <random>
extern "C" {
void train_mix_heads(bf16*, const bf16*, const bf16*, const float*, long long, int, int, int);
void train_mix_heads_backward(bf16*, bf16*, float*, const bf16*, const bf16*, const bf16*, const float*, int, int, int, int);
void train_rmsnorm_backward(float*, const bf16*, const bf16*, const bf16*, int, float);
void train_swiglu_backward(bf16*, bf16*, const bf16*, const bf16*, const bf16*, long long);
void train_cross_entropy(bf16*, float*, const bf16*, const int*, int, float);
void train_squared_error(bf16*, float*, const bf16*, const float*, const int*, int, int, float);
void train_to_bf16(bf16*, const float*, long long);
void train_add_bf16(float*, const bf16*, long long);
}
static void launch(unsigned gx, unsigned gy, unsigned threads, const std::function<void()>& f) { emu_launch({gx, gy, 1}, threads, 0, f); }
static std::mt19937 rng(7);
static float U(float s) { return std::uniform_real_distribution<float>(-s, s)(rng); }
static std::vector<bf16> B(size_t n, float s) { std::vector<bf16> v(n); for (auto& x : v) x = __float2bfloat16(U(s)); return v; }
static double F(bf16 b) { return __bfloat162float(b); }
static int bad = 0;
static void check(const char* what, double err, double tol) { printf("%s %s %.3g\n", err <= tol ? "ok  " : "FAIL", what, err); if (!(err <= tol)) bad++; }
int main() {
  { // mix heads
    int n = 37, hq = 8, hkv = 2, dim = 64; size_t c = n * hq * dim;
    auto full = B(c, 1), st = B(c, 1), da = B(c, 1); std::vector<float> z{0.25f, 0.875f}, dz{0.5f, -1.5f};
    std::vector<bf16> att(c), df(c), ds(c);
    launch(8, 1, 256, [&] { train_mix_heads(att.data(), full.data(), st.data(), z.data(), c, dim, hq, hq / hkv); });
    launch(hkv, 1, 1024, [&] { train_mix_heads_backward(df.data(), ds.data(), dz.data(), da.data(), full.data(), st.data(), z.data(), n, dim, hq, hq / hkv); });
    double e1 = 0, e2 = 0, e3 = 0; double wdz[2] = {0.5, -1.5};
    for (size_t e = 0; e < c; e++) {
      int g = (e / dim) % hq / (hq / hkv); double zg = z[g];
      e1 = std::max(e1, fabs(F(att[e]) - (zg * F(full[e]) + (1 - zg) * F(st[e]))));
      e2 = std::max(e2, fabs(F(df[e]) - zg * F(da[e])) + fabs(F(ds[e]) - (1 - zg) * F(da[e])));
      wdz[g] += F(da[e]) * (F(full[e]) - F(st[e]));
    }
    e3 = std::max(fabs(dz[0] - wdz[0]), fabs(dz[1] - wdz[1]));
    check("mix att (abs)", e1, 8e-3); check("mix dfull/dstream (abs)", e2, 8e-3); check("mix dz (abs)", e3, 1e-3);
  }
  { // rmsnorm backward
    int rows = 3, dim = 1000; float eps = 1e-5f;
    auto x = B(rows * dim, 2), w = B(dim, 1.5), dy = B(rows * dim, 1);
    std::vector<float> dres(rows * dim, 0.25f);
    launch(rows, 1, 256, [&] { train_rmsnorm_backward(dres.data(), x.data(), w.data(), dy.data(), dim, eps); });
    double err = 0;
    for (int r = 0; r < rows; r++) {
      double ss = 0, dot = 0;
      for (int k = 0; k < dim; k++) { ss += F(x[r*dim+k]) * F(x[r*dim+k]); dot += F(dy[r*dim+k]) * F(w[k]) * F(x[r*dim+k]); }
      double rs = 1 / sqrt(ss / dim + eps);
      for (int k = 0; k < dim; k++) err = std::max(err, fabs(dres[r*dim+k] - 0.25 - (rs * F(w[k]) * F(dy[r*dim+k]) - F(x[r*dim+k]) * rs*rs*rs*dot/dim)));
    }
    check("rmsnorm backward (abs)", err, 1e-5);
  }
  { // swiglu backward in place
    int c = 4104; auto a = B(c, 1), g = B(c, 6), u = B(c, 2); auto g0 = g, u0 = u;
    launch(3, 1, 256, [&] { train_swiglu_backward(g.data(), u.data(), a.data(), g.data(), u.data(), c); });
    double err = 0;
    for (int e = 0; e < c; e++) {
      double gf = F(g0[e]), uf = F(u0[e]), af = F(a[e]), sg = 1 / (1 + exp(-gf));
      double wdu = af * gf * sg, wdg = af * uf * sg * (1 + gf * (1 - sg));
      err = std::max(err, std::max(fabs(F(u[e]) - wdu) / (fabs(wdu) + 1e-3), fabs(F(g[e]) - wdg) / (fabs(wdg) + 1e-3)));
    }
    check("swiglu backward (rel)", err, 5e-3);
  }
  { // cross-entropy, aliased
    int vocab = 1003; std::vector<int> tg{1002, -1, 5, 2000};
    auto lg = B(tg.size() * vocab, 4); auto l0 = lg; std::vector<float> loss(tg.size(), NAN);
    launch(tg.size(), 1, 1024, [&] { train_cross_entropy(lg.data(), loss.data(), lg.data(), tg.data(), vocab, 0.25f); });
    double el = 0, ed = 0;
    for (size_t r = 0; r < tg.size(); r++) {
      int t = tg[r];
      if (t == 2000) { if (loss[r] == loss[r]) { printf("FAIL bad target loss %g\n", loss[r]); bad++; } }
      if (t < 0 || t >= vocab) { for (int j = 0; j < vocab; j++) ed = std::max(ed, fabs(F(lg[r*vocab+j]))); if (t == -1) el = std::max(el, (double)fabs(loss[r])); continue; }
      double mx = -1e30, s = 0; for (int j = 0; j < vocab; j++) mx = std::max(mx, F(l0[r*vocab+j]));
      for (int j = 0; j < vocab; j++) s += exp(F(l0[r*vocab+j]) - mx);
      double lse = mx + log(s); el = std::max(el, fabs(loss[r] - (lse - F(l0[r*vocab+t]))));
      for (int j = 0; j < vocab; j++) { double p = 0.25 * (exp(F(l0[r*vocab+j]) - lse) - (j == t)); ed = std::max(ed, fabs(F(lg[r*vocab+j]) - p)); }
    }
    check("cross-entropy loss (abs)", el, 1e-5); check("cross-entropy dlogits (abs)", ed, 1e-3);
  }
  { // squared error
    int n = 10, dim = 96; float g = 0.5f; auto h = B(n * dim, 2); std::vector<float> t(n * dim); for (auto& x : t) x = U(2);
    std::vector<int> rows{3, 7, 0, 10}; std::vector<bf16> dh(n * dim, bf16{0x7fc0}); std::vector<float> loss(4, 0);
    launch(4, 1, 256, [&] { train_squared_error(dh.data(), loss.data(), h.data(), t.data(), rows.data(), n, dim, g); });
    double el = 0, ed = 0;
    for (int i = 0; i < 3; i++) { int r = rows[i]; double s = 0; for (int j = 0; j < dim; j++) { double e = F(h[r*dim+j]) - t[r*dim+j]; s += e*e; ed = std::max(ed, fabs(F(dh[r*dim+j]) - g*e)); } el = std::max(el, fabs(loss[i] - s) / s); }
    check("squared error loss (rel)", el, 1e-5); check("squared error dh (abs)", ed, 1e-2);
    if (loss[3] == loss[3]) { printf("FAIL row 10 loss %g\n", loss[3]); bad++; }
    if (F(dh[1*dim]) == F(dh[1*dim])) { printf("FAIL unlisted row written\n"); bad++; }
  }
  { // conversions
    int c = 1001; std::vector<float> s(c); for (auto& x : s) x = U(100); std::vector<bf16> d(c); auto b = B(c, 3); std::vector<float> acc(c, 0.5f);
    launch(4, 1, 256, [&] { train_to_bf16(d.data(), s.data(), c); });
    launch(4, 1, 256, [&] { train_add_bf16(acc.data(), b.data(), c); });
    int wrong = 0; for (int i = 0; i < c; i++) { if (d[i].x != __float2bfloat16(s[i]).x) wrong++; if (acc[i] != 0.5f + __bfloat162float(b[i])) wrong++; }
    check("conversions (wrong count)", wrong, 0);
  }
  return bad;
}
