//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// Both vector dots and widenings join the F16 tests where the CPU runs them, not only the one
// init installed.
func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C {
		f16Kernels = append(f16Kernels, namedDot{"AVX2", dotF16Fast})
		f16Dequants = append(f16Dequants, namedDequant{"AVX2", dequantF16Fast})
		if cpu.X86.HasAVX512F {
			f16Kernels = append(f16Kernels, namedDot{"AVX-512", dotF16Fast512})
			f16Dequants = append(f16Dequants, namedDequant{"AVX-512", dequantF16Fast512})
		}
	}
}
