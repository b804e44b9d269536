#!/usr/bin/env python3
"""side-by-side.py: kvfoot against llama.cpp on the same GGUF files of real model shapes.

    side-by-side.py bundle DIR
        (here: needs Go, gcc, npm and git) put into DIR what `run` needs on a machine that
        can download nothing: llamapeer-bench and a quantize binary (tools/gguf-peer/quantize.c)
        linked against llama.cpp's prebuilt libraries (DIR/lib: only the CPU variants of
        AVX-512 Xeons, plus the generic one), a static gguf-tiny-llama, a static kvfoot and
        this script. Fails if DIR passes 60 MiB.
    side-by-side.py plan
        print the steps `run` would take, in order, with estimated seconds.
    side-by-side.py files DIR
        only write the model files.
    side-by-side.py run DIR
        write the model files that are missing, measure, and print one markdown table.

A cell is SHAPE/TYPE/THREADS/CTX: pre-fill of CTX tokens (ppCTX) and NGEN decoded tokens
after CTX of context (tgNGEN@dCTX). A shape's cells of one type and thread count run as
one llamapeer-bench, then one kvfoot bench, on the same file (each loads the model once).
llama.cpp runs with its defaults (f16 KV cache, flash attention auto, llama-bench's
warm-up), kvfoot with its own (kvfoot bench --model FILE: full KV cache, F16 weights
widened to float32 where pre-fill's GEMM packs them), plus a warm-up: one more repetition, left out of its figures (its
first run of each size allocates what later ones reuse). Decode rows also give each
engine's read GB/s (its weights as it holds them, and its KV cache) as a fraction of the
read bandwidth that kvfoot bench --bandwidth measures at that thread count. Rows are
printed as each step ends; progress goes to stderr.

Environment (defaults in brackets):
  SHAPES   [smollm2-135m llama-3.2-1b llama-3.1-8b]
  TYPES    [f16 q8_0 q4_k_m]
  THREADS  [1 4 16]
  CTX      [512,4096]   pre-fill lengths; decode is timed at each as depth
  NGEN     [32]         decoded tokens timed
  REPS     [2]
  WORK     [/tmp]       WORK/gguf-side-by-side holds the model files, SHAPE-TYPE.gguf,
                        written once (f16 by gguf-tiny-llama, the others by llama.cpp's
                        quantizer from it) and reused; done.tsv; the tools' logs.
  SKIP     []           cells to leave out: space-separated shell patterns matched
                        against SHAPE/TYPE/THREADS/CTX, e.g. "llama-3.1-8b/*/1/*".
  MAXCELL  [570]        leave out cells estimated (alone, with the loads) to take longer,
                        in seconds: they cannot end within a 10-minute command. 0: none.
  BUDGET   [570]        seconds: start no step whose estimate, scaled by how this run's
                        steps of the shape compared with theirs, would end past it (the
                        first step always starts; later ones that fit still run), so that
                        a 10-minute command ends between steps. 0: no limit.
  FRESH    [0]          1: measure again cells that done.tsv holds from an earlier run
                        with the same kvfoot binary and NGEN (otherwise their rows are
                        reprinted and they are skipped, so a run cut short resumes).
  QTHREADS [all cores]  quantizer threads (its output does not depend on them)
  WARMUP   [1]          0: neither engine warms up (llama.cpp's --no-warmup; kvfoot's
                        extra first repetition, left out of its figures, not run). Saves
                        a pre-fill of each CTX in each engine where that costs minutes.
  LLAMA_ARGS, KVFOOT_ARGS  extra options for llamapeer-bench and kvfoot bench
"""
import fnmatch
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Published shapes (Hugging Face configs); random weights time the same as trained ones.
SHAPES = {
    "smollm2-135m": dict(vocab=49152, dim=576, layers=30, heads=9, kv_heads=3, ffn=1536,
                         tied=True, rope_base=100000, ctx=8192),
    "llama-3.2-1b": dict(vocab=128256, dim=2048, layers=16, heads=32, kv_heads=8, ffn=8192,
                         tied=True, rope_base=500000, ctx=131072),
    "llama-3.1-8b": dict(vocab=128256, dim=4096, layers=32, heads=32, kv_heads=8, ffn=14336,
                         tied=False, rope_base=500000, ctx=131072),
}
TYPES = ("f16", "q8_0", "q4_k_m")

# Estimates. Compute and bandwidth: the reference machine's figures on the SmolLM2 shape
# (docs/PERFORMANCE.md): pre-fill near 85 GFLOP/s on one core, about t^0.72 on t cores;
# read bandwidth 13 GB/s on one core, about t^0.8 on t. Bits a weight as each engine holds
# it (llama.cpp's Q4_K_M mixes Q4_K with Q6_K; kvfoot widens F16 to float32). Seconds per
# billion weights on one core, from the (busy) development machine's CPU times: writing
# the f16 file, quantizing, llama.cpp repacking Q4_K at load, and kvfoot widening F16 at
# load.
EST_GFLOPS1, EST_FLOPS_EXP = 85.0, 0.72
EST_BW1, EST_BW_EXP = 13.0, 0.8
EST_BITS = {"f16": 16.0, "q8_0": 8.5, "q4_k_m": 4.9}
EST_KVFOOT_BITS = {"f16": 32.0, "q8_0": 8.5, "q4_k_m": 4.9}
EST_WRITE_S_PER_G = 40.0
EST_QUANT_S_PER_G = {"q8_0": 10.0, "q4_k_m": 42.0}
EST_LLAMA_LOAD_S_PER_G = {"f16": 0.5, "q8_0": 0.5, "q4_k_m": 3.0}
EST_KVFOOT_LOAD_S_PER_G = {"f16": 25.0, "q8_0": 3.0, "q4_k_m": 2.0}

# ggml tensor types: (values a block, bytes a block).
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
               8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
               14: (256, 210), 30: (1, 2)}

BUNDLE_LIMIT = 60 << 20
# libggml-cpu variants kept: the AVX-512 Xeons' (Skylake-SP and later; Sapphire and
# Emerald Rapids get AMX) and the generic one. The loader picks the best the CPU runs.
CPU_VARIANTS = ("sapphirerapids", "icelake", "skylakex", "x64")


def die(msg):
    print("side-by-side: " + msg, file=sys.stderr)
    sys.exit(1)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def env_list(name, default):
    return os.environ.get(name, default).replace(",", " ").split()


def env_int(name, default, minimum):
    v = os.environ.get(name, str(default))
    try:
        n = int(v)
    except ValueError:
        die("%s=%r: want an integer" % (name, v))
    if n < minimum:
        die("%s=%d: want at least %d" % (name, n, minimum))
    return n


class Config:
    def __init__(self):
        self.shapes = env_list("SHAPES", " ".join(SHAPES))
        for s in self.shapes:
            if s not in SHAPES:
                die("SHAPES: unknown shape %r (known: %s)" % (s, ", ".join(SHAPES)))
        self.types = env_list("TYPES", " ".join(TYPES))
        for t in self.types:
            if t not in TYPES:
                die("TYPES: unknown type %r (known: %s)" % (t, ", ".join(TYPES)))
        self.threads = [self.count("THREADS", v) for v in env_list("THREADS", "1 4 16")]
        self.ctx = [self.count("CTX", v) for v in env_list("CTX", "512,4096")]
        self.ngen = env_int("NGEN", 32, 1)
        self.reps = env_int("REPS", 2, 1)
        self.maxcell = env_int("MAXCELL", 570, 0)
        self.budget = env_int("BUDGET", 570, 0)
        self.qthreads = env_int("QTHREADS", os.cpu_count() or 1, 1)
        self.fresh = os.environ.get("FRESH", "0") == "1"
        self.skip = os.environ.get("SKIP", "").split()
        self.work = os.path.join(os.environ.get("WORK", "/tmp"), "gguf-side-by-side")
        self.llama_args = os.environ.get("LLAMA_ARGS", "").split()
        self.kvfoot_args = os.environ.get("KVFOOT_ARGS", "").split()
        self.warmup = env_int("WARMUP", 1, 0)
        if self.warmup > 1:
            die("WARMUP=%d: want 1 or 0" % self.warmup)
        for s in self.shapes:
            for n in self.ctx:
                if n + self.ngen > SHAPES[s]["ctx"]:
                    die("CTX %d + NGEN %d pass %s's context of %d" % (n, self.ngen, s, SHAPES[s]["ctx"]))

    @staticmethod
    def count(name, v):
        if not v.isdigit() or int(v) < 1:
            die("%s: %r is not a positive integer" % (name, v))
        return int(v)

    def path(self, shape, typ):
        return os.path.join(self.work, "%s-%s.gguf" % (shape, typ))

    def steps(self):
        """The groups of cells that run together, (shape, type, threads, [ctx]), in
        order, each with the cells left out (SKIP, MAXCELL) and why."""
        out = []
        for s in self.shapes:
            for t in self.threads:
                for ty in self.types:
                    keep, left = [], []
                    for n in self.ctx:
                        key = cell_key(s, ty, t, n)
                        if any(fnmatch.fnmatchcase(key, p) for p in self.skip):
                            left.append((key, "SKIP"))
                        elif self.maxcell and est_step(self, s, ty, t, [n]) > self.maxcell:
                            left.append((key, "estimated %.0f s > MAXCELL=%d"
                                         % (est_step(self, s, ty, t, [n]), self.maxcell)))
                        else:
                            keep.append(n)
                    out.append(((s, ty, t, keep), left))
        return out


def cell_key(shape, typ, t, n):
    return "%s/%s/%d/%d" % (shape, typ, t, n)


# ---- estimates

def shape_counts(shape):
    """Matrix weights a token passes through (the LM head included), and all weights."""
    c = SHAPES[shape]
    hd = c["dim"] // c["heads"]
    q, kv = c["heads"] * hd, c["kv_heads"] * hd
    layer = c["dim"] * (2 * q + 2 * kv) + 3 * c["dim"] * c["ffn"]
    emb = c["vocab"] * c["dim"]
    matmul = c["layers"] * layer + emb
    return matmul, matmul + (0 if c["tied"] else emb)


def est_step(cfg, shape, typ, t, ctxs):
    """Seconds for both engines to load the file and measure the cells."""
    c = SHAPES[shape]
    matmul, total = shape_counts(shape)
    bw = EST_BW1 * t ** EST_BW_EXP * 1e9
    sec = (2 + total / 1e9 * (EST_LLAMA_LOAD_S_PER_G[typ] + EST_KVFOOT_LOAD_S_PER_G[typ])
           + 6 * 1.07e9 / bw)  # the loads, and kvfoot's bandwidth measurement
    for n in ctxs:
        flops = 2.0 * matmul * n + 2.0 * c["dim"] * c["layers"] * n * n  # weights, causal attention
        pre = flops / (EST_GFLOPS1 * t ** EST_FLOPS_EXP * 1e9)
        dec_l = cfg.ngen * matmul * EST_BITS[typ] / 8 / bw
        dec_k = cfg.ngen * matmul * EST_KVFOOT_BITS[typ] / 8 / bw
        # llama.cpp: a warm-up pre-fill, the timed ones, and one before each timed decode;
        # kvfoot: its warm-up and timed repetitions, each a pre-fill and a decode
        sec += (cfg.warmup + 2 * cfg.reps) * pre + cfg.reps * dec_l + (cfg.warmup + cfg.reps) * (pre + dec_k)
    return sec


def est_file(cfg, shape, typ):
    _, total = shape_counts(shape)
    if typ == "f16":
        return 2 + total / 1e9 * EST_WRITE_S_PER_G
    return 2 + total / 1e9 * EST_QUANT_S_PER_G[typ] / min(cfg.qthreads, 16) ** 0.9


# ---- GGUF header: what a decode step reads

def gguf_header(path):
    """Metadata (scalars only) and tensors (name -> (dims, type, bytes)) of a GGUF file."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8", "replace")

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def value(vt):
            if vt == 8:
                return rstr()
            if vt == 9:
                et, n = rd("I"), rd("Q")
                if et in scalar:
                    f.seek(n * struct.calcsize(scalar[et]), 1)
                else:
                    for _ in range(n):
                        value(et)
                return None
            if vt not in scalar:
                raise ValueError("%s: metadata value type %d unknown" % (path, vt))
            return rd(scalar[vt])

        if f.read(4) != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        version, n_tensors, n_kv = rd("I"), rd("Q"), rd("Q")
        if version not in (2, 3):
            raise ValueError("%s: GGUF version %d" % (path, version))
        meta = {}
        for _ in range(n_kv):
            key = rstr()
            meta[key] = value(rd("I"))
        tensors = {}
        for _ in range(n_tensors):
            name = rstr()
            dims = [rd("Q") for _ in range(rd("I"))]
            typ = rd("I")
            rd("Q")  # offset
            if typ not in GGML_BLOCKS:
                raise ValueError("%s: tensor %s: ggml type %d unknown here" % (path, name, typ))
            per, size = GGML_BLOCKS[typ]
            n = 1
            for d in dims:
                n *= d
            tensors[name] = (dims, typ, n // per * size)
    return meta, tensors


def decode_reads(path):
    """Bytes of weight matrices a decode step reads in llama.cpp (the token embedding only
    when it is also the output), and the f16 KV bytes a token of context adds."""
    meta, tensors = gguf_header(path)
    arch = meta["general.architecture"]
    w = sum(b for name, (dims, _, b) in tensors.items()
            if len(dims) == 2 and (name != "token_embd.weight" or "output.weight" not in tensors))
    hd = meta[arch + ".embedding_length"] // meta[arch + ".attention.head_count"]
    kv = 2 * meta[arch + ".block_count"] * meta[arch + ".attention.head_count_kv"] * hd * 2
    return w, kv


# ---- files

def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def make_files(cfg, d, shape, types, clock):
    """Writes the shape's f16 file and quantizes the others from it, each under a
    temporary name first, so that a run cut short leaves no file that looks whole.
    False when the BUDGET stopped it."""
    os.makedirs(cfg.work, exist_ok=True)
    f16 = cfg.path(shape, "f16")
    for typ in ["f16"] + [t for t in TYPES if t != "f16" and t in types]:
        out = cfg.path(shape, typ)
        if os.path.exists(out):
            continue
        est = est_file(cfg, shape, typ)
        if not clock.fits(shape, est, os.path.basename(out)):
            return False
        _, total = shape_counts(shape)
        need = total * EST_BITS[typ] / 8 * 1.05
        free = shutil.disk_usage(cfg.work).free
        if free < need:
            die("%s: %.1f GB free, %s needs about %.1f GB" % (cfg.work, free / 1e9, out, need / 1e9))
        tmp = out + ".partial"
        start = time.time()
        if typ == "f16":
            # gguf-tiny-llama holds every weight as float32 before it writes; Go's heap
            # peaked at 1.5 times that for the 1B shape. When that is more than the machine
            # has, it writes block 0 alone and `repeat` makes every block a copy of it: an
            # engine reads the same bytes, and these weights are random either way.
            c = SHAPES[shape]
            hd = c["dim"] // c["heads"]
            block = c["dim"] * (2 * c["heads"] * hd + 2 * c["kv_heads"] * hd) + 3 * c["dim"] * c["ffn"]
            avail = mem_available()
            layers = c["layers"]
            if avail and avail < total * 4 * 1.6:
                layers = 1
                need_mem = (total - (c["layers"] - 1) * block) * 4 * 1.6
                if avail < need_mem:
                    die("gguf-tiny-llama needs about %.1f GB of memory for one block of %s, MemAvailable is %.1f GB"
                        % (need_mem / 1e9, shape, avail / 1e9))
            one = tmp + ".block0" if layers == 1 else tmp
            args = [os.path.join(d, "gguf-tiny-llama"), "-o", one, "-wtype", "f16",
                    "-vocab", str(c["vocab"]), "-dim", str(c["dim"]), "-layers", str(layers),
                    "-heads", str(c["heads"]), "-kv-heads", str(c["kv_heads"]), "-ffn", str(c["ffn"]),
                    "-rope-base", str(c["rope_base"]), "-ctx", str(c["ctx"]), "-name", "random-" + shape]
            if c["tied"]:
                args.append("-tied")
            if layers == 1:
                args = ["sh", "-c", '"$@" && "%s" -in "%s" -blocks %d -out "%s" && rm "%s"'
                        % (os.path.join(d, "repeat"), one, c["layers"], tmp, one), "sh"] + args
        else:
            args = [os.path.join(d, "quantize"), f16, tmp, typ, str(cfg.qthreads)]
        logf = os.path.join(cfg.work, "files.log")
        with open(logf, "a") as lf:
            lf.write("$ %s\n" % " ".join(args))
            lf.flush()
            rc = subprocess.call(args, stdout=lf, stderr=lf)
        if rc != 0:
            die("%s failed (exit %d), see %s" % (" ".join(args), rc, logf))
        os.rename(tmp, out)
        # write-back of gigabytes would later count as other processes' CPU time, which
        # llamapeer-bench waits out before each repetition
        os.sync()
        took = time.time() - start
        clock.record(shape, est, took)
        log("file %s: %.2f GB in %.0f s (estimated %.0f s)" % (out, os.path.getsize(out) / 1e9, took, est))
    return True


class Clock:
    """The BUDGET: a step starts only if its estimate, scaled by how this run's steps of
    the same shape compared with theirs, ends within it. The first step always starts."""

    def __init__(self, budget):
        self.budget, self.start, self.seen, self.ran = budget, time.time(), {}, False

    def fits(self, shape, est, what):
        if not self.budget or not self.ran:
            self.ran = True
            return True
        e, a = self.seen.get(shape, (0.0, 0.0))
        want = est * (a / e if e > 0 else 1.0)
        left = self.budget - (time.time() - self.start)
        if want > left:
            log("BUDGET=%d: %s left for the next command (estimated %.0f s, %.0f s left)"
                % (self.budget, what, want, left))
            return False
        return True

    def record(self, shape, est, took):
        e, a = self.seen.get(shape, (0.0, 0.0))
        self.seen[shape] = (e + est, a + took)


# ---- measuring

def llama_results(out):
    res = {}
    for line in out.splitlines():
        m = re.search(r"RESULT prefill n_prompt=(\d+) .*clean=(\d+)/\d+ tok_s mean=([\d.]+) sd=([\d.]+)", line)
        if m:
            res["pp" + m[1]] = (float(m[3]), float(m[4]), m[2] == "0")
        m = re.search(r"RESULT decode n_gen=(\d+) depth=(\d+) .*clean=(\d+)/\d+ tok_s mean=([\d.]+) sd=([\d.]+)", line)
        if m:
            res["tg%s@d%s" % (m[1], m[2])] = (float(m[4]), float(m[5]), m[3] == "0")
    return res


def warmed(row, warm):
    """A kvfoot bench row without its first warm repetitions: its first run of each
    size pays for allocations that later ones reuse (SmolLM2 Q8_0 pp64 on one core:
    116 tokens/s, then 352 and 361), and llama.cpp's figures come after a warm-up."""
    v = row["samples"][warm:]
    mean = sum(v) / len(v)
    sd = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
    if row.get("read_gb_per_s"):
        row["read_gb_per_s"] *= mean / row["tokens_per_second"]
    row["tokens_per_second"], row["sd"] = mean, sd
    return row


def run_logged(args, logf):
    """Runs args with stderr to logf; returns the exit code, stdout and seconds taken."""
    with open(logf, "a") as lf:
        lf.write("$ %s\n" % " ".join(args))
        lf.flush()
        start = time.time()
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=lf, universal_newlines=True)
        lf.write(p.stdout)
    return p.returncode, p.stdout, time.time() - start


def measure(cfg, d, shape, typ, t, ctxs):
    """Runs both engines on the cells and returns {ctx: (rows, whole)}, the cell's table
    rows and whether both engines gave both of its figures, and a line on their times."""
    path = cfg.path(shape, typ)
    logf = os.path.join(cfg.work, "engines.log")
    cs = ",".join(str(n) for n in ctxs)
    llama_args = [os.path.join(d, "llamapeer-bench"), "--libdir", os.path.join(d, "lib"), "-m", path,
                  "-t", str(t), "-r", str(cfg.reps), "--kv", "f16", "--fa", "auto", "-p", cs,
                  "-n", str(cfg.ngen), "--tg-depths", cs] + (["--no-warmup"] if not cfg.warmup else []) + cfg.llama_args
    kvfoot_args = [os.path.join(d, "kvfoot"), "bench", "--model", path, "--threads", str(t),
                   "--ctx", cs, "--decode", str(cfg.ngen), "--reps", str(cfg.warmup + cfg.reps),
                   "--bandwidth", "--format", "json"] + cfg.kvfoot_args
    rc, out, took_l = run_logged(llama_args, logf)
    llama = llama_results(out)
    if rc != 0 or not llama:
        log("llama.cpp failed on %s (exit %d), see %s" % (path, rc, logf))
    load = re.search(r"\| load ([\d.]+) s", out)
    rc, out, took_k = run_logged(kvfoot_args, logf)
    kv, bw, dtype = {}, 0.0, "?"
    try:
        doc = json.loads(out.strip().splitlines()[-1])
        kv = {r["test"]: warmed(r, cfg.warmup) for r in doc["rows"]}
        bw = doc.get("read_bw_gb_per_s", {}).get(str(t), 0.0)
        dtype = doc.get("dtype", "?")
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        log("kvfoot bench gave no JSON on %s (exit %d: %s), see %s" % (path, rc, e, logf))
    try:
        wbytes, kvtok = decode_reads(path)
    except (OSError, ValueError, KeyError, struct.error) as e:
        die("%s: cannot read the GGUF header (%s)" % (path, e))
    kw = next((r.get("weight_bytes") for r in kv.values() if r.get("weight_bytes")), None)
    if kw and typ != "f16" and kw != wbytes:  # both hold the file's blocks: a check on the header reading
        log("%s: kvfoot reads %d weight bytes a token, the GGUF header says %d" % (path, kw, wbytes))
    sd = cfg.reps > 1
    res = {}
    for n in ctxs:
        rows, whole = [], True
        for test in ("pp%d" % n, "tg%d@d%d" % (cfg.ngen, n)):
            a, b = llama.get(test), kv.get(test)
            whole = whole and a is not None and b is not None
            fa = "-" if a is None else "%.1f%s%s" % (a[0], " ± %.1f" % a[1] if sd else "", " (noisy)" if a[2] else "")
            fb = "-" if b is None else "%.1f%s" % (b["tokens_per_second"], " ± %.1f" % b["sd"] if sd else "")
            ratio = "**%.2f**" % (b["tokens_per_second"] / a[0]) if a and b and a[0] > 0 else "-"
            ra = rb = fbw = "-"
            if test.startswith("tg") and bw > 0:
                fbw = "%.1f" % bw
                if a:
                    gbs = (wbytes + kvtok * (n + (cfg.ngen + 1) / 2)) * a[0] / 1e9
                    ra = "%.1f (%.0f%%)" % (gbs, 100 * gbs / bw)
                if b and b.get("read_gb_per_s"):
                    rb = "%.1f (%.0f%%)" % (b["read_gb_per_s"], 100 * b["read_gb_per_s"] / bw)
            rows.append("| %s | %s (%s) | %d | %s | %s | %s | %s | %s | %s | %s |"
                        % (shape, typ, dtype, t, test, fa, fb, ratio, ra, rb, fbw))
        res[n] = (rows, whole)
    return res, "llama.cpp %.0f s (load %s s), kvfoot %.0f s" % (took_l, load[1] if load else "?", took_k)


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()[:12]


TABLE_HEAD = ("| shape | type (most bytes) | threads | test | llama.cpp tok/s | kvfoot tok/s | kvfoot / llama.cpp "
              "| llama.cpp read GB/s (of BW) | kvfoot read GB/s (of BW) | read BW GB/s |\n"
              "| --- | --- | --: | --- | --: | --: | --: | --: | --: | --: |")


def machine_line(cfg, d, kvfoot_id):
    tag = "?"
    try:
        with open(os.path.join(d, "llama.cpp.info.json")) as f:
            tag = json.load(f).get("tag", "?")
    except (OSError, ValueError):
        pass
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return ("machine: %d cores, %s; kvfoot %s (sha256); llama.cpp %s; NGEN %d, REPS %d"
            % (os.cpu_count() or 0, cpu, kvfoot_id, tag, cfg.ngen, cfg.reps))


def cmd_run(d, files_only=False):
    cfg = Config()
    d = os.path.abspath(d)
    for exe in ("llamapeer-bench", "quantize", "gguf-tiny-llama", "kvfoot"):
        if not os.access(os.path.join(d, exe), os.X_OK):
            die("%s/%s is missing: make the folder with `side-by-side.py bundle %s`" % (d, exe, d))
    os.makedirs(cfg.work, exist_ok=True)
    clock = Clock(cfg.budget)
    steps = cfg.steps()
    for _, left in steps:
        for key, why in left:
            log("leave out %s: %s" % (key, why))
    if files_only:
        for s in cfg.shapes:
            types = {ty for (sh, ty, _, ctxs), _ in steps if sh == s and ctxs}
            if types and not make_files(cfg, d, s, types, clock):
                return
        return
    kvfoot_id = file_hash(os.path.join(d, "kvfoot"))
    done_path = os.path.join(cfg.work, "done.tsv")
    done = {}
    if os.path.exists(done_path) and not cfg.fresh:
        with open(done_path) as f:
            prev = None
            for line in f:
                k, _, row = line.rstrip("\n").partition("\t")
                if k != prev:  # a cell's rows are written together; a later block replaces it
                    done[k], prev = [], k
                done[k].append(row)
    print(machine_line(cfg, d, kvfoot_id) + "\n")
    print(TABLE_HEAD, flush=True)
    ready = set()
    for i, ((shape, typ, t, ctxs), _) in enumerate(steps):
        dkey = lambda n: "%s/%d/%s" % (cell_key(shape, typ, t, n), cfg.ngen, kvfoot_id)
        todo = []
        for n in ctxs:
            if dkey(n) in done:
                print("\n".join(done[dkey(n)]), flush=True)
                log("%s: done in an earlier run (FRESH=1 measures it again)" % cell_key(shape, typ, t, n))
            else:
                todo.append(n)
        if not todo:
            continue
        if shape not in ready:
            types = {ty for (sh, ty, _, cs), _ in steps[i:] if sh == shape and cs}
            if not make_files(cfg, d, shape, types, clock):
                return
            ready.add(shape)
        # as many of the cells as the budget allows, the rest left for the next command
        while todo and not clock.fits(shape, est_step(cfg, shape, typ, t, todo),
                                      "%s/%s/%d/%s" % (shape, typ, t, ",".join(map(str, todo)))):
            todo = todo[:-1]
        if not todo:
            continue
        est = est_step(cfg, shape, typ, t, todo)
        start = time.time()
        res, times = measure(cfg, d, shape, typ, t, todo)
        took = time.time() - start
        clock.record(shape, est, took)
        for n in todo:
            rows, whole = res[n]
            print("\n".join(rows), flush=True)
            if whole:
                with open(done_path, "a") as f:
                    f.write("".join("%s\t%s\n" % (dkey(n), r) for r in rows))
        log("[%d/%d] %s/%s/%d/%s: %.0f s (estimated %.0f s): %s"
            % (i + 1, len(steps), shape, typ, t, ",".join(map(str, todo)), took, est, times))


def cmd_plan():
    cfg = Config()
    total = 0.0
    made = set()
    print("estimated seconds (NGEN %d, REPS %d, QTHREADS %d; rates in the script's EST_ constants):"
          % (cfg.ngen, cfg.reps, cfg.qthreads))
    for (shape, typ, t, ctxs), left in cfg.steps():
        for key, why in left:
            print("  %-34s          left out: %s" % (key, why))
        if not ctxs:
            continue
        for ft in ("f16", typ):
            if (shape, ft) not in made:
                made.add((shape, ft))
                fe = est_file(cfg, shape, ft)
                total += fe
                print("  %-34s %7.0f  total %6.0f  (unless WORK has it)" % ("write " + shape + "-" + ft + ".gguf", fe, total))
        est = est_step(cfg, shape, typ, t, ctxs)
        total += est
        print("  %-34s %7.0f  total %6.0f" % ("%s/%s/%d/%s" % (shape, typ, t, ",".join(map(str, ctxs))), est, total))


def cmd_bundle(d):
    peer = os.environ.get("PEER", os.path.join(os.path.dirname(ROOT), "shared", "tools", "llamacpp-peer"))
    if not os.access(os.path.join(peer, "llamacpp-peer.sh"), os.X_OK):
        die("no llamacpp-peer at %s (set PEER)" % peer)
    os.makedirs(d, exist_ok=True)
    d = os.path.abspath(d)
    env = dict(os.environ, CGO_ENABLED="0")
    subprocess.check_call(["go", "build", "-o", os.path.join(d, "gguf-tiny-llama"), "."],
                          cwd=os.path.join(peer, "gguf-tiny-llama"), env=env)
    subprocess.check_call(["go", "build", "-tags", "nocuda", "-o", os.path.join(d, "kvfoot"), "./cmd/kvfoot"],
                          cwd=ROOT, env=env)
    subprocess.check_call(["go", "build", "-o", os.path.join(d, "repeat"), "./tools/gguf-peer/repeat"], cwd=ROOT, env=env)
    # A first llamacpp-peer run fetches llama.cpp's prebuilt libraries and headers (npm pack).
    home = os.path.join(os.environ.get("LLAMAPEER_HOME", os.path.expanduser("~/.cache/llamacpp-peer")),
                        "nlc-" + os.environ.get("NLC_VERSION", "3.21.1"))
    bins = os.path.join(home, "bin-pkg", "package", "bins", "linux-x64")
    if not os.path.exists(os.path.join(home, "headers", "include", "llama.h")):
        tmp = os.path.join(d, "warm.tmp")
        os.makedirs(tmp, exist_ok=True)
        subprocess.check_call([os.path.join(d, "gguf-tiny-llama"), "-o", os.path.join(tmp, "t.gguf")])
        subprocess.call([os.path.join(peer, "llamacpp-peer.sh"), os.path.join(tmp, "t.gguf"), "1,2,3",
                         os.path.join(tmp, "l.txt")], env=dict(os.environ, PROMPTS="", NGEN="0"))
        shutil.rmtree(tmp)
    libs = sorted(os.listdir(bins)) if os.path.isdir(bins) else []
    llama_so = [f for f in libs if re.match(r"libllama\.v.*\.so$", f)]
    ggml_so = [f for f in libs if re.match(r"libggml\.v.*\.so$", f)]
    if not llama_so or not ggml_so:
        die("llama.cpp's libraries are not in %s (see %s/llamacpp-peer.sh)" % (bins, peer))
    lib = os.path.join(d, "lib")
    shutil.rmtree(lib, ignore_errors=True)
    os.makedirs(lib)
    for f in [llama_so[0], ggml_so[0], "libggml-base.so"] + ["libggml-cpu-%s.so" % v for v in CPU_VARIANTS]:
        shutil.copy(os.path.join(bins, f), lib)
    shutil.copy(os.path.join(home, "llama.cpp.info.json"), d)
    for src, exe in ((os.path.join(peer, "llamapeer-bench.c"), "llamapeer-bench"),
                     (os.path.join(HERE, "quantize.c"), "quantize")):
        subprocess.check_call(["gcc", "-O2", "-std=c11", "-Wall", "-I" + os.path.join(home, "headers", "include"),
                               "-I" + os.path.join(home, "headers", "ggml", "include"), src, "-L" + lib,
                               "-l:" + llama_so[0], "-l:" + ggml_so[0], "-l:libggml-base.so",
                               "-Wl,-rpath,$ORIGIN/lib", "-lm", "-o", os.path.join(d, exe)])
    shutil.copy(os.path.abspath(__file__), os.path.join(d, "side-by-side.py"))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    if size > BUNDLE_LIMIT:
        die("%s holds %.1f MiB, more than %d MiB" % (d, size / 2**20, BUNDLE_LIMIT >> 20))
    log("%s: %.1f MiB" % (d, size / 2**20))


def main():
    args = sys.argv[1:]
    if args == ["plan"]:
        cmd_plan()
    elif len(args) == 2 and args[0] == "bundle":
        cmd_bundle(args[1])
    elif len(args) == 2 and args[0] in ("run", "files"):
        cmd_run(args[1], files_only=args[0] == "files")
    else:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
