#!/bin/sh
# Regenerates cuda/kernels/*.ptx from cuda/kernels/*.cu with nvcc (run it where nvcc is, e.g. the
# GPU machine): sm_80 PTX, which the driver JIT-compiles for sm_80 and later (H100 included).
# Each .ptx starts with "// sha256 <hash>" of common.cuh followed by its .cu, which
# TestPTXMatchesSource checks, so the PTX cannot drift from its source.
#   tools/cuda-ptx.sh [kernels-dir [out-dir]]     (defaults: cuda/kernels, the same)
# With RESOURCES=1 it also prints ptxas's sm_90 register/shared/spill report of each kernel.
set -eu
src=${1:-cuda/kernels}
out=${2:-$src}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for cu in "$src"/*.cu; do
	name=$(basename "$cu" .cu)
	hash=$(cat "$src/common.cuh" "$cu" | sha256sum | cut -d' ' -f1)
	nvcc -ptx -arch=compute_80 -O3 -std=c++17 -o "$tmp/$name.ptx" "$cu"
	if [ "${RESOURCES:-0}" = 1 ]; then
		ptxas -arch=sm_90 -v -o /dev/null "$tmp/$name.ptx" 2>&1 | grep -E "Compiling|registers|spill" || true
	fi
	{ echo "// sha256 $hash"; cat "$tmp/$name.ptx"; } >"$out/$name.ptx"
done
