#!/bin/sh
# Host emulations of CUDA kernels written before a GPU could run them (issues 19 and 23): the
# real sources in cuda/kernels, turned into C++ by a few substitutions, run against float64
# references. train: train.cu, one std::thread per CUDA thread, std::barrier for barriers and
# warp collectives. scores: scores.cu's float32 and tensor-core kernels beside attention.cu's
# attn_prefill (the calibration), threads as fibers, ldmatrix/mma.sync emulated, cp.async
# deferred to its wait, shared-memory races reported. Neither models tensor-core rounding,
# ex2.approx or time: they catch index, tiling, barrier and race mistakes, not a GPU's numbers.
#   tools/cuda-emu/run.sh [train] [scores]        (needs g++ with C++20; minutes on 2 cores)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
k=$here/../../cuda/kernels
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for what in ${*:-train scores}; do
	case $what in
	train)
		mkdir -p "$tmp/train" && cd "$tmp/train"
		cp "$here/train/main.cc" "$here/train/rest.cc" . && cp "$here/train/shim.cuh" common.cuh
		sed 's/extern "C" //' "$k/train.cu" >train.cc
		g++ -std=c++20 -O2 -fno-strict-aliasing -pthread -w -I. main.cc -o emu
		g++ -std=c++20 -O2 -fno-strict-aliasing -pthread -w -I. rest.cc -o rest
		./emu && ./rest ;;
	scores)
		mkdir -p "$tmp/scores" && cd "$tmp/scores"
		# common.cuh's tensor-core tile product, on emu.h's ldmatrix and mma
		awk '/^\/\/ warp_products /{on=1} on{print} on&&/^}$/{exit}' "$k/common.cuh" >warp_products.h
		for f in scores attention; do
			sed -e 's|#include "common.cuh"|#include "emu.h"\n#include "warp_products.h"|' \
				-e 's|extern __shared__ __align__(16) unsigned char smem\[\];|unsigned char* smem = emu_smem;|' \
				-e 's|__shared__|static|g' \
				-e 's|asm("ex2.approx.ftz.f32 %0, %1;\\n" : "=f"(y) : "f"(x));|y = exp2f(x);|' \
				"$k/$f.cu" >${f}_emu.cc
			g++ -std=c++17 -O2 -fno-strict-aliasing -w -I"$here/scores" -I. -c ${f}_emu.cc -o ${f}_emu.o
		done
		g++ -std=c++17 -O2 -fno-strict-aliasing -c "$here/scores/emu.cc" -o emu.o
		g++ -std=c++17 -O2 -fno-strict-aliasing -c "$here/scores/main.cc" -o main.o
		g++ -o emu main.o emu.o scores_emu.o attention_emu.o
		./emu ;;
	*) echo "run.sh: unknown emulation $what (train, scores)" >&2; exit 2 ;;
	esac
done
