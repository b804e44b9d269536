//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// Every vector kernel the CPU can run joins TestBlockDotRandomBytes and
// TestBlockDequantRandomBytes, not only the one init installed in the format.
func init() {
	avx2 := cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	if avx2 {
		extraDots["Q8_0"] = append(extraDots["Q8_0"], namedDot{"AVX2", dotQ8_0Fast})
		extraDots["Q4_0"] = append(extraDots["Q4_0"], namedDot{"AVX2", dotQ4_0Fast})
		extraDots["Q4_K"] = append(extraDots["Q4_K"], namedDot{"AVX2", dotQ4_KFast})
		extraDots["Q5_K"] = append(extraDots["Q5_K"], namedDot{"AVX2", dotQ5_KFast})
		extraDots["Q6_K"] = append(extraDots["Q6_K"], namedDot{"AVX2", dotQ6_KFast})
	}
	if avx2 && cpu.X86.HasAVX512F {
		extraDots["Q8_0"] = append(extraDots["Q8_0"], namedDot{"AVX-512", dotQ8_0Fast512})
	}
	if avx2 && cpu.X86.HasAVX512F {
		extraDots["Q4_K"] = append(extraDots["Q4_K"], namedDot{"AVX-512", dotQ4_KFast512})
		extraDots["Q5_K"] = append(extraDots["Q5_K"], namedDot{"AVX-512", dotQ5_KFast512})
		extraDots["Q6_K"] = append(extraDots["Q6_K"], namedDot{"AVX-512", dotQ6_KFast512})
		extraDequants["Q4_K"] = append(extraDequants["Q4_K"], namedDequant{"AVX-512", dequantQ4_KFast512})
		extraDequants["Q6_K"] = append(extraDequants["Q6_K"], namedDequant{"AVX-512", dequantQ6_KFast512})
	}
}
