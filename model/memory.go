package model

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// memAvailable is the memory the kernel says a new process can take without swapping
// out others, plus free swap, in bytes (Linux' /proc/meminfo); ok false where unknown.
// A variable so that tests can make a machine small.
var memAvailable = func() (bytes uint64, ok bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var avail, swap uint64
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "MemAvailable":
			avail, found = kb<<10, true
		case "SwapFree":
			swap = kb << 10
		}
	}
	return avail + swap, found
}

// checkGGUFMemory refuses, before anything is read, a GGUF file whose weights cannot fit
// in the memory the machine has: LoadGGUF reads them into memory (as stored, or widened to
// float32 with opts.F32), and a process that outgrows the machine is killed without a word.
func checkGGUFMemory(f *gguf.File, opts LoadOptions) error {
	avail, ok := memAvailable()
	if !ok {
		return nil
	}
	var need uint64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if opts.F32 {
			need += t.Elements() * 4
		} else {
			need += t.Size
		}
	}
	if need <= avail {
		return nil
	}
	return fmt.Errorf("%s: its weights take %.1f GB in memory, and this machine has %.1f GB available (MemAvailable and free swap): use a smaller quantized file (Q8_0, Q4_K_M) or a machine with more memory",
		f.Path, float64(need)/1e9, float64(avail)/1e9)
}
