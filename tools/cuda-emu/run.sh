#!/bin/sh
# Host emulations of CUDA kernels written before a GPU could run them (issues 19 and 23): the
# real sources in cuda/kernels, turned into C++ by a few substitutions, run against float64
# references on scores/emu.h: threads as fibers, ldmatrix/mma.sync emulated, cp.async deferred
# to its wait, shared-memory races reported (cp.async writes against ldmatrix reads and other
# cp.asyncs, in the dynamic shared memory). train: train.cu's tensor-core band attention
# (forward, dK/dV, dQ) with cuda/train.go's launch geometry, then its other kernels. scores:
# scores.cu's float32 and tensor-core kernels beside attention.cu's attn_prefill (the
# calibration). None models tensor-core rounding, ex2.approx or time: they catch index,
# tiling, barrier and race mistakes, not a GPU's numbers.
#   tools/cuda-emu/run.sh [train] [scores]        (needs g++ with C++17; minutes on 2 cores)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
k=$here/../../cuda/kernels
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cxx() { g++ -std=c++17 -O2 -fno-strict-aliasing -w -I"$here/scores" -I. "$@"; }
# emulate NAME compiles cuda/kernels/NAME.cu for emu.h into NAME_emu.o in the current directory.
emulate() {
	# common.cuh's tensor-core tile product, on emu.h's ldmatrix and mma
	awk '/^\/\/ warp_products /{on=1} on{print} on&&/^}$/{exit}' "$k/common.cuh" >warp_products.h
	sed -e 's|#include "common.cuh"|#include "emu.h"\n#include "warp_products.h"|' \
		-e 's|extern __shared__ __align__(16) unsigned char smem\[\];|unsigned char* smem = emu_smem;|' \
		-e 's|__shared__|static|g' \
		-e 's|asm("ex2.approx.ftz.f32 %0, %1;\\n" : "=f"(y) : "f"(x));|y = exp2f(x);|' \
		"$k/$1.cu" >"$1_emu.cc"
	cxx -c "$1_emu.cc" -o "$1_emu.o"
}
for what in ${*:-train scores}; do
	mkdir -p "$tmp/$what" && cd "$tmp/$what"
	case $what in
	train)
		emulate train
		cxx -c "$here/scores/emu.cc" -o emu.o
		cxx -c "$here/train/main.cc" -o main.o
		cxx -c "$here/train/rest.cc" -o rest.o
		g++ -o emu main.o emu.o train_emu.o
		g++ -o rest rest.o emu.o train_emu.o
		./emu && ./rest ;;
	scores)
		emulate scores
		emulate attention
		cxx -c "$here/scores/emu.cc" -o emu.o
		cxx -c "$here/scores/main.cc" -o main.o
		g++ -o emu main.o emu.o scores_emu.o attention_emu.o
		./emu ;;
	*) echo "run.sh: unknown emulation $what (train, scores)" >&2; exit 2 ;;
	esac
done
