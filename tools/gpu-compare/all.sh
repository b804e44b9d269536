#!/bin/sh
# all.sh DIR: issue 18's checks and figures in one command on the GPU machine, run from the
# repository root. DIR holds kvfoot, cuda.test and gpu.test (each may be gzipped: carried files
# are few megabytes that way) and, optionally, model.safetensors.xz: the built-in model's weights,
# compressed to travel (xz -6), put in place first. Summaries go to $OUT (the device tool's
# folder; default /tmp/gpu-all), raw output to /tmp/gpu-compare. STEPS picks and orders them:
#   ptx       regenerate the PTX from cuda/kernels with nvcc into DIR/ptx, use it in the steps
#             after ($KVFOOT_CUDA_PTX_DIR) and pack it (with ptxas's resource report) into $OUT/ptx.tgz, to be committed
#   tests     the cuda and gpu packages' GPU tests (tools/gpu-test.sh, no benchmarks)
#   bench     the cuda package's kernel benchmarks (BENCHFILTER, default all)
#   agree     logits against a float32 reference beside transformers' bf16 (agree.py)
#   eval      the default study's recall tasks with full, duo and prulong on the GPU and the CPU
#             (haystacks from CORPUS, default Python's standard library: this machine has no Go)
#   speed     kvfoot against transformers on the 8B shape (speed.sh; SHAPES to change)
#   profile   per-kernel times of the 8B shape's pre-fill and decode at 32K (profile.sh, ncu)
#   serve     kvfoot serve --device cuda's GPU tests (DIR/kvfoot.test, cmd/kvfoot's) and, with
#             LOAD=1, tools/serve-load.sh on the built-in model
#   sanitize  the GPU tests under compute-sanitizer's memcheck
#   train     mask training on the GPU against the CPU (issue 23): two PruLong steps of two
#             4096-token sequences on each, from the same seed (their log.jsonl lines: the losses
#             should agree within a percent or two), the GPU's tokens/s, and the training
#             kernels' attention benchmark
#   mma       the tensor-core attention-score kernels ($KVFOOT_SCORES=mma): the score tests, the
#             eviction and KIVI tests on them, and the score benchmark under f32 and mma
#   rows      the default study at --step-rows 512 (one chunk a forward) and at the GPU's default:
#             the time of each and whether results.csv is the same
#   variant   a kernel variant under trial: DIR/variant/kernels/*.cu (with common.cuh) compiled
#             to PTX and DIR/variant/cuda.test's attention tests and benchmarks run on it
#             (appended to $OUT/bench.txt)
set -u
dir=$1
out=${OUT:-/tmp/gpu-all}
mkdir -p "$out"
for f in kvfoot cuda.test gpu.test kvfoot.test; do
	[ -f "$dir/$f.gz" ] && gunzip -f "$dir/$f.gz"
	[ -f "$dir/$f" ] && chmod +x "$dir/$f"
done
if [ -f "$dir/model.safetensors.xz" ]; then
	python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
		"$dir/model.safetensors.xz" models/kvfoot-small/model.safetensors
fi
for step in ${STEPS:-tests agree eval speed sanitize}; do
	echo "== $step $(date +%T)" >&2
	case $step in
	ptx)
		mkdir -p "$dir/ptx"
		RESOURCES=1 sh tools/cuda-ptx.sh cuda/kernels "$dir/ptx" >"$dir/ptx/resources.txt" 2>&1
		KVFOOT_CUDA_PTX_DIR=$(cd "$dir/ptx" && pwd)
		export KVFOOT_CUDA_PTX_DIR
		tar czf "$out/ptx.tgz" -C "$dir/ptx" . ;;
	tests) BENCH=0 sh tools/gpu-test.sh "$dir" >"$out/tests.txt" 2>&1 ;;
	bench) RUN='^$' BENCHFILTER=${BENCHFILTER:-'Linear|Launch|Attention'} BENCHTIME=${BENCHTIME:-5x} sh tools/gpu-test.sh "$dir" >"$out/bench.txt" 2>&1 ;;
	agree) python3 tools/gpu-compare/agree.py "$dir/kvfoot" /tmp/gpu-compare/agree >"$out/agree.txt" 2>&1 ;;
	eval)
		for dev in cuda cpu; do
			rm -rf "/tmp/gpu-compare/eval-$dev"
			t0=$(date +%s)
			"$dir/kvfoot" eval --device $dev --methods 'full;duo;prulong' --out "/tmp/gpu-compare/eval-$dev" \
				--corpus "${CORPUS:-$(python3 -c 'import os; print(os.path.dirname(os.__file__))')}" >>"$out/eval.txt" 2>&1
			echo "eval --device $dev: $(($(date +%s) - t0)) s" >>"$out/eval.txt"
		done ;;
	speed) OUT=/tmp/gpu-compare sh tools/gpu-compare/speed.sh "$dir/kvfoot" ${SHAPES:-llama-3.1-8b} >"$out/speed.txt" 2>&1 ;;
	profile) sh tools/gpu-compare/profile.sh "$dir/kvfoot" >"$out/profile.txt" 2>&1 ;;
	variant)
		v=$dir/variant
		[ -f "$v/cuda.test.gz" ] && gunzip -f "$v/cuda.test.gz"
		chmod +x "$v/cuda.test"
		{
			echo "== variant"
			RESOURCES=1 sh tools/cuda-ptx.sh "$v/kernels" "$v/ptx" && tar czf "$out/variant-ptx.tgz" -C "$v/ptx" .
			KVFOOT_CUDA_PTX_DIR=$(cd "$v/ptx" && pwd) "$v/cuda.test" -test.run 'GPU.*Attention' -test.v -test.count 1 | grep -v -e '^=== RUN' -e '^    --- PASS'
			KVFOOT_CUDA_PTX_DIR=$(cd "$v/ptx" && pwd) "$v/cuda.test" -test.run '^$' -test.bench 'Attention' -test.benchtime 5x
		} >>"$out/bench.txt" 2>&1 ;;
	mma)
		{
			KVFOOT_SCORES=mma "$dir/cuda.test" -test.run 'GPU.*Score' -test.v -test.count 1
			[ -f "$dir/gpu.test" ] && KVFOOT_SCORES=mma "$dir/gpu.test" -test.run 'TestGPUEvictionMatchesCPU|TestGPUKIVIMatchesCPU' -test.v -test.count 1
			for s in f32 mma; do
				echo "## KVFOOT_SCORES=$s"
				KVFOOT_SCORES=$s "$dir/cuda.test" -test.run '^$' -test.bench AttentionScores -test.benchtime 5x
			done
		} >"$out/mma.txt" 2>&1 ;;
	rows)
		mkdir -p /tmp/gpu-compare
		for r in 512 0; do
			rm -rf "/tmp/gpu-compare/rows-$r"
			t0=$(date +%s)
			"$dir/kvfoot" eval --device cuda --step-rows $r --out "/tmp/gpu-compare/rows-$r" \
				--corpus "${CORPUS:-$(python3 -c 'import os; print(os.path.dirname(os.__file__))')}" >/dev/null 2>&1
			echo "eval --device cuda --step-rows $r: rc $? in $(($(date +%s) - t0)) s" >>"$out/rows.txt"
		done
		diff /tmp/gpu-compare/rows-512/results.csv /tmp/gpu-compare/rows-0/results.csv >>"$out/rows.txt" && echo "results.csv the same" >>"$out/rows.txt" ;;
	serve)
		{
			mkdir -p cmd/kvfoot
			(cd cmd/kvfoot && "../../$dir/kvfoot.test" -test.run 'TestServeGPU|TestServeDevice' -test.v -test.count 1)
			[ "${LOAD:-0}" = 1 ] && sh tools/serve-load.sh "$dir/kvfoot" cuda
		} >"$out/serve.txt" 2>&1 ;;
	train)
		{
			for dev in cuda cpu; do
				rm -rf "/tmp/gpu-compare/prulong-$dev"
				t0=$(date +%s)
				"$dir/kvfoot" prulong --device $dev --steps 2 --batch 2 --seq-len 4096 --checkpoint-every 1 \
					--out "/tmp/gpu-compare/prulong-$dev" --corpus "${CORPUS:-$(python3 -c 'import os; print(os.path.dirname(os.__file__))')}" 2>&1 | tail -3
				echo "prulong --device $dev: $(($(date +%s) - t0)) s"
				cat "/tmp/gpu-compare/prulong-$dev/log.jsonl"
			done
			"$dir/cuda.test" -test.run '^$' -test.bench GPUTrainAttention -test.benchtime 20x
		} >"$out/train.txt" 2>&1 ;;
	sanitize) BENCH=0 SANITIZE=1 sh tools/gpu-test.sh "$dir" 2>&1 | grep -v -e '^=== RUN' -e '^    --- PASS' >"$out/sanitize.txt" ;;
	*) echo "all.sh: unknown step $step" >&2 ;;
	esac
done
