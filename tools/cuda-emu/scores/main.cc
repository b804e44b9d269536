#include "emu.h"
#include <random>
#include <string>
extern "C" {
void scores_stats_d64(float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
void scores_stats_d128(float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
void scores_probs_d64(float*, const float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
void scores_probs_d128(float*, const float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
void scores_mma_stats_d64(float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, int, float);
void scores_mma_stats_d128(float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, int, float);
void scores_mma_lse(float*, const float*, const int*, int, int, int, int);
void scores_mma_probs_d64(float*, const float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
void scores_mma_probs_d128(float*, const float*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
void attn_prefill_d64(bf16*, const bf16*, const bf16*, const bf16*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
void attn_prefill_d128(bf16*, const bf16*, const bf16*, const bf16*, const bf16*, const bf16*, const int*, const int*, int, int, int, int, float);
}
int emu_races();
struct Head { int from, to, past, first, count; };
static std::mt19937_64 rng(7);
static float uni(float s) { return std::uniform_real_distribution<float>(-s, s)(rng); }
static const bf16 NaNbf{0x7fc0};

struct Pool {
  int D, blocks, maxBlocks, nanBlock;
  std::vector<bf16> k, v;
  std::vector<int> table;
  std::vector<std::vector<int>> slots;  // per head, entry → slot
  Pool(int D, const std::vector<int>& lens) : D(D) {
    int hkv = lens.size();
    maxBlocks = 0;
    int total = 0;
    for (int l : lens) { maxBlocks = max(maxBlocks, (l + 63) / 64); total += (l + 63) / 64; }
    blocks = total + 1;
    nanBlock = total;
    std::vector<int> perm(total);
    for (int i = 0; i < total; i++) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    k.assign((size_t)blocks * 64 * D, NaNbf);
    v.assign((size_t)blocks * 64 * D, NaNbf);
    table.assign((size_t)hkv * maxBlocks, nanBlock);
    slots.resize(hkv);
    int next = 0;
    for (int g = 0; g < hkv; g++)
      for (int j = 0; j < lens[g]; j++) {
        if (j % 64 == 0) table[g * maxBlocks + j / 64] = perm[next++];
        int slot = table[g * maxBlocks + j / 64] * 64 + j % 64;
        slots[g].push_back(slot);
        for (int x = 0; x < D; x++) k[(size_t)slot * D + x] = f2bf(uni(1)), v[(size_t)slot * D + x] = f2bf(uni(1));
      }
  }
  float key(int g, int j, int x) const { return bf2f(k[(size_t)slots[g][j] * D + x]); }
  float val(int g, int j, int x) const { return bf2f(v[(size_t)slots[g][j] * D + x]); }
};

static void splitsOf(int hq, const std::vector<Head>& heads, int& splits, int& per) {
  int rows = 0, tiles = 0;
  for (auto& h : heads) if (h.to > h.from) { rows = max(rows, h.to - h.from); tiles = max(tiles, (h.past + h.to + 63) / 64); }
  if (rows == 0) { splits = 1; per = 0; return; }
  int hkv = heads.size();
  int blocks = (rows * (hq / hkv) + 127) / 128 * hkv;
  splits = min((512 + blocks - 1) / blocks, max(1, tiles / 8));
  per = (tiles + splits - 1) / splits;
  splits = (tiles + per - 1) / per;
}

static double relErr(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); i++) {
    if (std::isnan(got[i])) return NAN;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return sqrt(num / den);
}

static bool scoresCase(int D, int hq, int n, std::vector<Head> heads) {
  int hkv = heads.size(), G = hq / hkv;
  std::vector<int> lens;
  for (auto& h : heads) lens.push_back(h.past + n);
  Pool pool(D, lens);
  std::vector<bf16> q((size_t)n * hq * D);
  for (auto& x : q) x = f2bf(uni(2));
  float scale = 1 / sqrtf(D), scaleLog2 = scale * 1.4426950408889634f;
  std::vector<int> hp;
  int off = 0, rows = 0, most = 0, total = 0;
  for (auto& h : heads) {
    if (h.to <= h.from) { for (int i = 0; i < 6; i++) hp.push_back(0); continue; }
    hp.insert(hp.end(), {h.from, h.to, h.past, h.first, h.count, off});
    off += h.count; rows = max(rows, h.to - h.from); most = max(most, h.count);
  }
  total = off;
  // reference
  std::vector<double> want;
  for (int g = 0; g < hkv; g++) {
    auto& h = heads[g];
    if (h.to <= h.from) continue;
    std::vector<double> w(h.past + n, 0);
    for (int i = h.from; i < h.to; i++)
      for (int hh = 0; hh < G; hh++) {
        int end = h.past + i + 1;
        std::vector<double> lg(end - h.first);
        double mx = -INFINITY;
        for (int j = h.first; j < end; j++) {
          double d = 0;
          for (int x = 0; x < D; x++) d += (double)bf2f(q[((size_t)i * hq + g * G + hh) * D + x]) * pool.key(g, j, x);
          lg[j - h.first] = d * scale; mx = max(mx, lg[j - h.first]);
        }
        double sum = 0;
        for (auto& e : lg) { e = exp(e - mx); sum += e; }
        for (size_t j = 0; j < lg.size(); j++) w[h.first + j] += lg[j] / sum / G;
      }
    want.insert(want.end(), w.begin(), w.begin() + h.count);
  }
  int splits, per;
  splitsOf(hq, heads, splits, per);
  // f32
  std::vector<float> work((size_t)hq * rows * (2 * splits + 1) + 1, NAN), out32(total, NAN), outM(total, NAN);
  auto kp = pool.k.data();
  auto tb = pool.table.data();
  auto hpp = hp.data();
  int mb = pool.maxBlocks;
  emu_launch({(unsigned)rows, (unsigned)hkv, 1}, 128, 0, [&] {
    (D == 64 ? scores_stats_d64 : scores_stats_d128)(work.data(), q.data(), kp, tb, hpp, mb, rows, hq, hkv, scaleLog2);
  });
  emu_launch({(unsigned)((most + 127) / 128), (unsigned)hkv, 1}, 128, 0, [&] {
    (D == 64 ? scores_probs_d64 : scores_probs_d128)(out32.data(), work.data(), q.data(), kp, tb, hpp, mb, rows, hq, hkv, scaleLog2);
  });
  // mma
  std::fill(work.begin(), work.end(), NAN);
  int rowBlocks = (rows * G + 127) / 128;
  size_t smem = 256 * (D + 8) * 2;
  float* lse = work.data() + (size_t)hq * rows * 2 * splits;
  emu_launch({(unsigned)rowBlocks, (unsigned)hkv, (unsigned)splits}, 128, smem, [&] {
    (D == 64 ? scores_mma_stats_d64 : scores_mma_stats_d128)(work.data(), q.data(), kp, tb, hpp, mb, rows, hq, hkv, per, scaleLog2);
  });
  emu_launch({(unsigned)rowBlocks, (unsigned)hkv, 1}, 128, 0, [&] { scores_mma_lse(lse, work.data(), hpp, rows, hq, hkv, splits); });
  emu_launch({(unsigned)((most + 127) / 128), (unsigned)hkv, 1}, 128, smem, [&] {
    (D == 64 ? scores_mma_probs_d64 : scores_mma_probs_d128)(outM.data(), lse, q.data(), kp, tb, hpp, mb, rows, hq, hkv, scaleLog2);
  });
  std::vector<double> g32(out32.begin(), out32.end()), gM(outM.begin(), outM.end());
  double e32 = relErr(g32, want), eM = relErr(gM, want), eMf = relErr(gM, g32);
  bool zeros = true;
  off = 0;
  for (auto& h : heads) {
    if (h.to <= h.from) continue;
    for (int j = 0; j < h.first; j++) if (gM[off + j] != 0) zeros = false;
    off += h.count;
  }
  bool ok = e32 < 1e-4 && eM < 1e-4 && eMf < 1e-4 && zeros;
  printf("scores d%d hq%d hkv%d n%d splits%d: f32 %.3g, mma %.3g, mma-f32 %.3g, zeros below first %s  %s\n", D, hq, hkv, n, splits,
         e32, eM, eMf, zeros ? "yes" : "NO", ok ? "ok" : "FAIL");
  return ok;
}

// attn_prefill on the emulator against float64 attention: checks the emulated ldmatrix and
// mma conventions on a kernel that passes on the GPU.
static bool prefillCase(int D, int hq, int hkv, int n, int len) {
  int G = hq / hkv;
  std::vector<int> lens(hkv, len);
  Pool pool(D, lens);
  std::vector<bf16> q((size_t)n * hq * D), kc((size_t)n * hkv * D), vc((size_t)n * hkv * D), out((size_t)n * hq * D, NaNbf);
  for (auto& x : q) x = f2bf(uni(2));
  for (auto& x : kc) x = f2bf(uni(1));
  for (auto& x : vc) x = f2bf(uni(1));
  std::vector<int> lensv(hkv, len);
  float scale = 1 / sqrtf(D);
  emu_launch({(unsigned)((n * G + 127) / 128), (unsigned)hkv, 1}, 128, (128 + 256) * (D + 8) * 2, [&] {
    (D == 64 ? attn_prefill_d64 : attn_prefill_d128)(out.data(), q.data(), kc.data(), vc.data(), pool.k.data(), pool.v.data(),
                                                     pool.table.data(), lensv.data(), pool.maxBlocks, n, hq, hkv, scale * 1.4426950408889634f);
  });
  std::vector<double> got, want;
  for (int i = 0; i < n; i++)
    for (int h = 0; h < hq; h++) {
      int g = h / G;
      std::vector<double> lg;
      auto qv = [&](int x) { return (double)bf2f(q[((size_t)i * hq + h) * D + x]); };
      for (int j = 0; j < len + i + 1; j++) {
        double d = 0;
        for (int x = 0; x < D; x++) d += qv(x) * (j < len ? pool.key(g, j, x) : bf2f(kc[((size_t)(j - len) * hkv + g) * D + x]));
        lg.push_back(d * scale);
      }
      double mx = *std::max_element(lg.begin(), lg.end()), sum = 0;
      for (auto& e : lg) { e = exp(e - mx); sum += e; }
      for (int x = 0; x < D; x++) {
        double o = 0;
        for (size_t j = 0; j < lg.size(); j++) o += lg[j] / sum * (j < (size_t)len ? pool.val(g, j, x) : bf2f(vc[((size_t)(j - len) * hkv + g) * D + x]));
        want.push_back(o);
        got.push_back(bf2f(out[((size_t)i * hq + h) * D + x]));
      }
    }
  double e = relErr(got, want);
  printf("attn_prefill d%d hq%d hkv%d n%d len%d: %.3g  %s\n", D, hq, hkv, n, len, e, e < 1e-2 ? "ok" : "FAIL");
  return e < 1e-2;
}

int main(int argc, char** argv) {
  bool ok = true;
  std::string only = argc > 1 ? argv[1] : "";
  if (only == "" || only == "prefill") {
    ok &= prefillCase(64, 8, 2, 70, 100);
    ok &= prefillCase(128, 4, 1, 40, 64);
  }
  if (only == "" || only == "scores") {
    ok &= scoresCase(64, 8, 40, {{32, 40, 100, 0, 140}, {32, 40, 0, 0, 40}});
    ok &= scoresCase(128, 4, 30, {{0, 30, 70, 0, 95}, {0, 0, 0, 0, 0}, {24, 30, 5, 5, 29}, {0, 30, 300, 0, 330}});
    ok &= scoresCase(64, 32, 1, {{0, 1, 500, 0, 501}, {0, 1, 63, 0, 64}, {0, 0, 0, 0, 0}, {0, 1, 64, 64, 65}});
    ok &= scoresCase(128, 8, 1, {{0, 1, 1000, 0, 1001}});
    ok &= scoresCase(64, 4, 200, {{0, 200, 129, 0, 329}, {0, 200, 0, 0, 200}});
    ok &= scoresCase(128, 12, 77, {{0, 77, 37, 0, 109}, {5, 72, 191, 191, 258}, {0, 0, 0, 0, 0}, {70, 77, 0, 0, 71}});
    ok &= scoresCase(64, 2, 150, {{3, 150, 300, 130, 444}, {0, 150, 64, 64, 214}});
    ok &= scoresCase(128, 8, 64, {{0, 64, 5000, 0, 5064}, {0, 64, 4000, 4000, 4058}});
  }
  if (only == "random") {
    std::mt19937_64 r(99);
    auto I = [&](int n) { return (int)(r() % (uint64_t)n); };
    for (int c = 0; c < 30; c++) {
      int hkv = 1 + I(3), G = std::vector<int>{1, 2, 3, 4, 8}[I(5)], n = 1 + I(100), D = I(2) ? 64 : 128;
      std::vector<Head> heads(hkv, Head{0, 0, 0, 0, 0});
      for (auto& h : heads) {
        if (I(6) == 0) continue;
        h.from = I(2) ? I(n) : max(0, n - 1 - I(64));
        h.past = I(3) ? I(600) : I(3000);
        h.to = h.from + 1 + I(n - h.from);
        int f = I(3);
        h.first = f == 0 ? 0 : f == 1 ? h.past : I(h.past + 1);
        h.count = h.past + n - I(min(n, 8));
      }
      bool any = false;
      for (auto& h : heads) any |= h.to > h.from;
      if (!any) continue;
      ok &= scoresCase(D, hkv * G, n, heads);
    }
  }
  printf("shared-memory races: %d\n", emu_races());
  ok &= emu_races() == 0;
  printf(ok ? "ALL OK\n" : "FAILURES\n");
  return ok ? 0 : 1;
}
