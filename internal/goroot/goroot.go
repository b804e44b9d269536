// Package goroot finds the Go installation whose sources kvfoot uses as text: the
// default haystack corpus and the shared benchmark text.
package goroot

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Dir returns the Go installation's root: runtime.GOROOT(), else $GOROOT, else what
// `go env GOROOT` prints, else "".
func Dir() string {
	//lint:ignore SA1019 the toolchain's sources are kvfoot's default text by design.
	if r := runtime.GOROOT(); r != "" {
		return r
	}
	if r := os.Getenv("GOROOT"); r != "" {
		return r
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
