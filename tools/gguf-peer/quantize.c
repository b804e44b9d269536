// quantize.c — quantize a GGUF model with llama.cpp's own quantizer (llama_model_quantize,
// the code behind llama-quantize), linked against the prebuilt libraries that
// ../shared/tools/llamacpp-peer fetches. No imatrix, llama.cpp's defaults otherwise.
// f32 dequantizes a quantized file with llama.cpp's own dequantizers. THREADS (default 1)
// only splits the rows among threads: the output is the same for any count.
//
//   gguf-peer-quantize IN.gguf OUT.gguf q8_0|q4_k_m|q6_k|f32 [THREADS]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

int main(int argc, char ** argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s IN.gguf OUT.gguf q8_0|q4_k_m|q6_k|f32 [THREADS]\n", argv[0]);
        return 2;
    }
    llama_model_quantize_params p = llama_model_quantize_default_params();
    p.nthread = 1; // gentle on a shared machine
    if (argc == 5) {
        char * end;
        long n = strtol(argv[4], &end, 10);
        if (*end || n < 1 || n > 1024) { fprintf(stderr, "THREADS %s: want a count from 1 to 1024\n", argv[4]); return 2; }
        p.nthread = (int) n;
    }
    if (!strcmp(argv[3], "q8_0")) p.ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    else if (!strcmp(argv[3], "q4_k_m")) p.ftype = LLAMA_FTYPE_MOSTLY_Q4_K_M;
    else if (!strcmp(argv[3], "q6_k")) p.ftype = LLAMA_FTYPE_MOSTLY_Q6_K;
    else if (!strcmp(argv[3], "f32")) { p.ftype = LLAMA_FTYPE_ALL_F32; p.allow_requantize = true; p.pure = true; }
    else { fprintf(stderr, "unknown type %s\n", argv[3]); return 2; }
    llama_backend_init();
    uint32_t rc = llama_model_quantize(argv[1], argv[2], &p);
    llama_backend_free();
    if (rc != 0) { fprintf(stderr, "llama_model_quantize failed: %u\n", rc); return 1; }
    return 0;
}
