#!/bin/sh
# profile.sh KVFOOT [SHAPE [CTX]]: where a GPU forward's time goes, per kernel, with Nsight
# Compute (ncu): the pre-fill of one CTX-token chunk (default 32768) and decode steps at that
# depth, random weights of SHAPE (default llama-3.1-8b), bf16. Prints, per kernel name, the
# launches profiled, their mean time and what fraction of the H100's DRAM bandwidth and of its
# SM throughput they reach (ncu replays each kernel alone, so launch gaps do not show: compare
# the sum with `kvfoot bench`'s wall time to see them). KV=spec profiles another cache policy.
set -eu
kvfoot=$1
shape=${2:-llama-3.1-8b}
ctx=${3:-32768}
metrics=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed
run() { # $1: what; $2: kernel regex; $3: matched launches to skip; $4: to profile
	echo "== $1"
	ncu --csv --page raw --metrics "$metrics" -k "regex:$2" --launch-skip "$3" --launch-count "$4" \
		"$kvfoot" bench --random "$shape" --bf16 --device cuda --ctx "$ctx" --chunk "$ctx" --decode 3 --reps 1 \
		--kv "${KV:-full}" --format json 2>/dev/null |
		python3 -c '
import csv, sys, collections
rows = [r for r in csv.reader(l for l in sys.stdin if l.startswith("\""))]
head, rows = rows[0], rows[2:]  # names, units, values
col = {n: i for i, n in enumerate(head)}
agg = collections.defaultdict(list)
for r in rows:
    name = r[col["Kernel Name"]].split("(")[0][:60]
    num = lambda k: float(r[col[k]].replace(",", ""))
    agg[name].append((num("gpu__time_duration.sum"), num("dram__throughput.avg.pct_of_peak_sustained_elapsed"),
                      num("sm__throughput.avg.pct_of_peak_sustained_elapsed")))
print("| kernel | launches | mean time | DRAM % of peak | SM % of peak |")
print("|:--|--:|--:|--:|--:|")
total = 0
for name, v in sorted(agg.items(), key=lambda kv: -sum(x[0] for x in kv[1])):
    n = len(v); t = sum(x[0] for x in v) / n; total += t * n
    print(f"| {name} | {n} | {t/1e3:.1f} µs | {sum(x[1] for x in v)/n:.0f} | {sum(x[2] for x in v)/n:.0f} |")
print(f"sum of the profiled launches: {total/1e6:.3f} ms")
'
}
# pre-fill: every kernel of the second and third layers (after the embedding and layer 0)
run "pre-fill of $ctx tokens, two layers" '.' 16 30
# decode: the matrix-vector products and attention of a few layers of the second step
run "decode at depth $ctx, four layers" 'gemv|attn_decode|attn_merge' 300 24
