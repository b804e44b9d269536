#include "emu.h"
Fiber* emu_cur;
std::vector<Fiber>* emu_fibers;
ucontext_t emu_sched;
dim3e blockIdx, gridDim, blockDim;
unsigned char* emu_smem;
static const std::function<void()>* emu_body;
static int barrierArrived, live;
static int warpArrived[64];
static long epoch;
static size_t smemBytes;
struct Shadow { int inflight = -1; long issued = -1; int writer = -1; long landed = -1; int reader = -1; long read = -1; };
static std::vector<Shadow> shadow;
static int races;
static Shadow* piece(const void* p) {
  const unsigned char* c = (const unsigned char*)p;
  if (c < emu_smem || c >= emu_smem + smemBytes) return nullptr;
  return &shadow[(c - emu_smem) / 16];
}
static void race(const char* what, const void* p, int other) {
  if (races++ < 10)
    fprintf(stderr, "RACE block (%u,%u,%u) epoch %ld: %s at smem %ld by thread %u (other %d)\n", blockIdx.x, blockIdx.y, blockIdx.z,
            epoch, what, (long)((const unsigned char*)p - emu_smem), emu_cur->tid.x, other);
}
void emu_smem_issue(void* dst) {
  Shadow* s = piece(dst);
  if (!s) return;
  int me = emu_cur->tid.x;
  if (s->inflight >= 0 && s->inflight != me) race("cp.async over another thread's cp.async in flight", dst, s->inflight);
  if (s->read == epoch && s->reader / 32 != me / 32) race("cp.async over a piece another warp read this epoch", dst, s->reader);
  s->inflight = me;
  s->issued = epoch;
}
void emu_smem_land(void* dst) {
  Shadow* s = piece(dst);
  if (!s) return;
  s->inflight = -1;
  s->writer = emu_cur->tid.x;
  s->landed = epoch;
}
void emu_smem_read(const void* p, int bytes) {
  Shadow* s = piece(p);
  if (!s) return;
  int me = emu_cur->tid.x;  // the warp's collective runs on its last lane: compare warps
  if (s->inflight >= 0) race("read of a piece with a cp.async in flight", p, s->inflight);
  else if (s->landed == epoch && s->writer / 32 != me / 32) race("read of a piece another warp's cp.async landed this epoch", p, s->writer);
  s->reader = me;
  s->read = epoch;
}
int emu_races() { return races; }

static void yieldKind(int kind) {
  emu_cur->blocked = true;
  emu_cur->waitKind = kind;
  swapcontext(&emu_cur->ctx, &emu_sched);
}
void emu_yield_blocked() { yieldKind(0); }
static void releaseBarrier() {
  epoch++;
  for (auto& f : *emu_fibers)
    if (!f.done && f.blocked && f.waitKind == 1) f.blocked = false;
  barrierArrived = 0;
}
void emu_barrier() {
  if (++barrierArrived == live) { releaseBarrier(); return; }
  yieldKind(1);
}
void emu_warp(const std::function<void(Fiber**)>& fn) {
  int w = emu_cur->tid.x / 32;
  if (++warpArrived[w] == 32) {
    Fiber* lanes[32];
    for (int l = 0; l < 32; l++) lanes[l] = &(*emu_fibers)[w * 32 + l];
    for (int l = 0; l < 32; l++) if (lanes[l]->done) { fprintf(stderr, "collective with an exited lane\n"); abort(); }
    fn(lanes);
    warpArrived[w] = 0;
    for (int l = 0; l < 32; l++) lanes[l]->blocked = false;
    return;
  }
  yieldKind(2);
}
static void trampoline() {
  (*emu_body)();
  if (!emu_cur->open.empty() || !emu_cur->groups.empty()) {
    // exiting with cp.async in flight: complete them (harmless on hardware too)
  }
  emu_cur->done = true;
  live--;
  if (live > 0 && barrierArrived == live) releaseBarrier();
  swapcontext(&emu_cur->ctx, &emu_sched);
}
static const size_t stackBytes = 1 << 18;
void emu_launch(dim3e grid, int threads, size_t smem, const std::function<void()>& body) {
  gridDim = grid;
  blockDim = dim3e{(unsigned)threads, 1, 1};
  std::vector<unsigned char> sm(smem + 16);
  emu_body = &body;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        blockIdx = dim3e{x, y, z};
        memset(sm.data(), 0xff, sm.size());
        emu_smem = sm.data();
        smemBytes = smem;
        shadow.assign(smem / 16 + 1, Shadow());
        epoch = 0;
        std::vector<Fiber> fibers(threads);
        // the fibers' stacks, kept from block to block (allocating them per block cost more
        // than the blocks' work)
        static std::vector<char> stacks;
        if (stacks.size() < (size_t)threads * stackBytes) stacks.resize((size_t)threads * stackBytes);
        emu_fibers = &fibers;
        live = threads;
        barrierArrived = 0;
        memset(warpArrived, 0, sizeof warpArrived);
        for (int t = 0; t < threads; t++) {
          Fiber& f = fibers[t];
          f.tid = dim3e{(unsigned)t, 0, 0};
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = stacks.data() + (size_t)t * stackBytes;
          f.ctx.uc_stack.ss_size = stackBytes;
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, trampoline, 0);
        }
        for (;;) {
          bool any = false, all = true;
          for (auto& f : fibers) {
            if (f.done) continue;
            all = false;
            if (f.blocked) continue;
            any = true;
            emu_cur = &f;
            swapcontext(&emu_sched, &f.ctx);
          }
          if (all) break;
          if (!any) { fprintf(stderr, "deadlock in block (%u,%u,%u)\n", x, y, z); abort(); }
        }
      }
}
