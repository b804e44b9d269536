#!/bin/sh
# Runs the cuda and gpu packages' GPU tests and benchmarks on a GPU machine, from test binaries
# built elsewhere with no cgo, within one short command (a few minutes on an H100):
#   CGO_ENABLED=0 go test -c -o DIR/cuda.test ./cuda      (on the build machine)
#   CGO_ENABLED=0 go test -c -o DIR/gpu.test ./gpu        (optional: the backend against the CPU)
#   tools/gpu-test.sh DIR                                  (on the GPU machine)
# REBUILD=1 first regenerates the PTX from DIR/kernels/*.cu with tools/cuda-ptx.sh (needs nvcc;
# DIR/cuda-ptx.sh is used when this tree has no tools/cuda-ptx.sh) into DIR/ptx and runs
# against it ($KVFOOT_CUDA_PTX_DIR). SANITIZE=1 runs the tests again under compute-sanitizer's
# memcheck. BENCHTIME (default 20x) is go test's -test.benchtime; BENCH=0 skips benchmarks;
# RUN (default GPU) and BENCHFILTER (default .) are go test's -test.run and -test.bench
# patterns, e.g. BENCHFILTER='Linear/8B' RUN='GPULinear'. $KVFOOT_GEMM=own runs the package's
# Linear on the own GEMM instead of cuBLASLt (BenchmarkLinear times both regardless).
set -eu
dir=${1:-.gpu}
here=$(dirname "$0")
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
if [ "${REBUILD:-0}" = 1 ]; then
	ptxsh=$here/cuda-ptx.sh
	[ -f "$ptxsh" ] || ptxsh=$dir/cuda-ptx.sh
	nvcc --version | tail -1
	RESOURCES=1 sh "$ptxsh" "$dir/kernels" "$dir/ptx"
	KVFOOT_CUDA_PTX_DIR=$dir/ptx
	export KVFOOT_CUDA_PTX_DIR
fi
status=0
tests="$dir/cuda.test"
[ -f "$dir/gpu.test" ] && tests="$tests $dir/gpu.test"
for t in $tests; do
	"$t" -test.run "${RUN:-GPU}" -test.v -test.count 1 || status=1
done
if [ "${BENCH:-1}" = 1 ]; then
	for t in $tests; do
		"$t" -test.run '^$' -test.bench "${BENCHFILTER:-.}" -test.benchtime "${BENCHTIME:-20x}" || status=1
	done
fi
if [ "${SANITIZE:-0}" = 1 ]; then
	for t in $tests; do
		compute-sanitizer --tool memcheck --print-limit 20 "$t" -test.run "${RUN:-GPU}" -test.count 1 || status=1
	done
fi
exit $status
