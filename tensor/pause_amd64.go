//go:build amd64 && !purego

package tensor

// cpuPause executes PAUSE (pause_amd64.s).
//
//go:noescape
func cpuPause()
