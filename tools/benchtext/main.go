// Command benchtext writes the shared speed-measurement text to standard output.
package main

import (
	"github.com/kvfoot/kvfoot/internal/benchtext"
	"os"
)

func main() {
	b, err := benchtext.Mixed()
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(b)
}
