//go:build amd64 && !purego

#include "textflag.h"

// func cpuPause()
// The spin-wait hint: waiting loops poll less often and leave the core's resources
// to the other work on it.
TEXT ·cpuPause(SB), NOSPLIT, $0-0
	PAUSE
	RET
