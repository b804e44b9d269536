//go:build !amd64 || purego

package tensor

// cpuPause is the spin-wait hint; portable builds have none.
func cpuPause() {}
