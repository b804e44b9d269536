// Package cuda runs kvfoot's forward-pass kernels on an NVIDIA GPU through the CUDA driver API,
// loaded at run time with purego: no cgo, and only libcuda.so.1 is needed, and only once Open
// is called. The kernels are PTX (sm_80, JIT-compiled by the driver for the GPU at hand),
// generated from kernels/*.cu by tools/cuda-ptx.sh and embedded in the binary.
//
// Linear's matrix products above 8 rows run on NVIDIA's cuBLASLt when the machine has it
// (libcublasLt.so.13 or .so.12, found on the loader's path, in the CUDA toolkit or in pip's
// nvidia wheels; $KVFOOT_CUBLASLT names a file to try first), else on kvfoot's own tensor-core
// GEMM; $KVFOOT_GEMM=own forces the latter, =cublaslt makes Open fail without the former.
// GEMMName says which runs.
//
// Activations and weights are bf16 with f32 accumulation. Every method takes device buffers and
// plain sizes, checks the sizes against the buffers, and returns an error naming what was wrong.
// Kernels run in order on the device's one stream; Download and Sync wait for them.
//
// $KVFOOT_GRAPHS=1 (or SetGraphs) puts the device in graph mode: the kernels, staged copies
// and cuBLASLt matmuls queued between two eager operations (Sync, Download, Upload, Copy,
// Memset, Alloc, Free, an event) are captured as a CUDA graph and launched with one call at
// the eager operation, through a kept executable graph of the same topology updated with the
// new parameters (graph.go). A decode step's hundreds of launches then cost one.
//
// A context is current per OS thread, and Go moves goroutines between threads, so calls from
// an arbitrary goroutine would find no context (CUDA_ERROR_INVALID_CONTEXT, 201). Every driver
// call therefore pins its goroutine to its thread for the call (runtime.LockOSThread) and makes
// the device's context current first: no thread switch per call, which a goroutine owning the
// context would cost on every kernel launch. Use a Device from one goroutine at a time: a
// forward pass is a sequence of kernels whose order is the caller's.
package cuda
