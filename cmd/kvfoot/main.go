// Command kvfoot runs Llama-family models on the CPU with any KV cache policy and
// measures the KV footprint of every request. Each subcommand lives in its own file
// and registers itself here.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/kvfoot/kvfoot/internal/outfile"
)

type command struct {
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) error) {
	if _, dup := commands[name]; dup {
		panic("kvfoot: command registered twice: " + name)
	}
	commands[name] = command{summary, run}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kvfoot COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'kvfoot COMMAND -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "kvfoot: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if !stopsItself[os.Args[1]] {
		exitOnSignal()
	}
	if err := cmd.run(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "kvfoot %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// stopsItself names the commands that handle SIGINT and SIGTERM themselves: serve
// drains (503 to new requests, running ones finish within --drain-timeout), which
// exiting at the signal would cut short.
var stopsItself = map[string]bool{"serve": true}

// exitOnSignal ends the process at SIGINT or SIGTERM, with the status a shell
// reports for it, leaving no half-written output file.
func exitOnSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		outfile.RemovePending()
		fmt.Fprintf(os.Stderr, "kvfoot %s: %v\n", os.Args[1], s)
		code := 130 // 128 + SIGINT, as a shell reports it
		if s == syscall.SIGTERM {
			code = 143
		}
		os.Exit(code)
	}()
}

// newFlags returns a FlagSet for a subcommand that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("kvfoot "+name, flag.ContinueOnError)
	return fs
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseFlags parses a command's flags. A positional argument is an error naming it:
// flag parsing stops at the first one, so every flag after it would be ignored.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: this command takes flags only (a flag after them is not read)", fs.Args())
	}
	return nil
}
