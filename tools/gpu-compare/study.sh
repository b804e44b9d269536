#!/bin/sh
# study.sh KVFOOT: the full study on the GPU, timed (issue 19: under 30 minutes), after a probe
# of how fast its first stage runs with each worker count: for each N of $WORKERS (default
# "1 8"), `kvfoot eval --study full` from a fresh folder for $PROBE seconds (default 35; one
# worker runs as --shard 0/1, the same samples in the same order), its rate read off the last
# progress line. Then the whole study with $RUNWORKERS workers (default: the fastest probed)
# into ${OUT:-/tmp}/study-full, wall clock around the command. Haystacks come from $GOROOT/src
# (set GOROOT to a folder holding Go's sources where no Go is installed).
set -u
kvfoot=$1
out=${OUT:-/tmp}/study-full
probe=${PROBE:-35}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
rate() { # samples a second on the last progress line of file $1
	python3 - "$1" <<'PY'
import re, sys
last = None
for l in open(sys.argv[1], errors="replace"):
    m = re.search(r"\] (\d+) of up to \d+ samples, (\S+) elapsed", l)
    if m:
        last = m
if not last:
    print("0 (no progress line)")
    sys.exit()
secs = sum(float(v) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for v, u in re.findall(r"([\d.]+)(h|ms|m|s)", last.group(2)))
print("%.1f (%s samples in %s)" % (int(last.group(1)) / max(secs, 1e-9), last.group(1), last.group(2)))
PY
}
best=0 pick=1
for n in ${WORKERS:-1 8}; do
	dir=$(mktemp -d)
	args="--workers $n"; [ "$n" = 1 ] && args="--shard 0/1"
	timeout "$probe" "$kvfoot" eval --device cuda --study full --out "$dir/s" $args >"$dir/log" 2>&1
	r=$(rate "$dir/log")
	echo "workers $n: $r samples a second"
	if python3 -c "import sys; sys.exit(0 if float('${r%% *}') > float('$best') else 1)"; then best=${r%% *} pick=$n; fi
	rm -rf "$dir"
done
n=${RUNWORKERS:-$pick}
rm -rf "$out"; mkdir -p "$(dirname "$out")"
start=$(date +%s)
"$kvfoot" eval --device cuda --study full --out "$out" --workers "$n" >"$out.log" 2>&1
rc=$?
echo "the full study, $n workers: rc $rc in $(($(date +%s) - start)) s; $(cat "$out"/results.jsonl "$out"/shards/*.jsonl 2>/dev/null | wc -l) samples"
grep -E "^stage" "$out.log"
