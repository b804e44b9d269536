package jinja

// kvfoot: this file is not part of github.com/ardanlabs/jinja v1.8.0, from which
// the rest of the package is copied (see README.md). It bounds a render, so that a
// hostile template (a model folder's chat template) can neither crash the process
// (Go's stack overflow and out-of-memory are fatal, not panics) nor hold it: every
// render has limits on its steps, call depth, output, memory and time, and every
// value it builds on its size and nesting.
//
// The builtins are plain functions with no render to hand, so the render being
// run is package state: renders take turns (renderMu). A chat template renders
// in well under a millisecond; a hostile one holds the others for at most its
// Timeout.

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

var (
	renderMu sync.Mutex
	cur      *budget // the running render's count; nil between renders
)

// The bounds on every value a template builds, whatever its Limits: a string of at
// most maxValueBytes, a list of at most maxItems, nested at most maxNesting deep
// (which also stops a list made to contain itself).
const (
	maxValueBytes = 16 << 20
	maxItems      = 1 << 20
	maxNesting    = 128
)

// Limits bound one render.
type Limits struct {
	MaxSteps       int           // template nodes executed, loop iterations and calls
	MaxDepth       int           // macro and caller() calls nested in one another
	MaxOutputBytes int           // bytes the template writes, captured blocks and macro results included
	MaxAllocBytes  int           // bytes of the strings and lists the render makes, its data included
	Timeout        time.Duration // wall-clock time (0: none)
}

// DefaultLimits are generous for any real chat template: a conversation of
// thousands of turns renders in a small part of them.
var DefaultLimits = Limits{MaxSteps: 2_000_000, MaxDepth: 64, MaxOutputBytes: maxValueBytes, MaxAllocBytes: 256 << 20, Timeout: 10 * time.Second}

// LimitError is the error of a render stopped at one of its limits.
type LimitError struct{ What string }

func (e *LimitError) Error() string { return "template stopped: " + e.What }

// exceed stops the render: RenderLimited recovers the panic as its error, which
// unwinds every nested evaluator and builtin at once.
func exceed(format string, args ...any) {
	panic(&LimitError{What: fmt.Sprintf(format, args...)})
}

// budget is a render's count against its Limits.
type budget struct {
	Limits
	steps, depth, out, alloc int
	work                     int // values visited by comparisons and measurements
	deadline                 time.Time
}

func (b *budget) step() {
	b.steps++
	if b.steps > b.MaxSteps {
		exceed("more than %d steps", b.MaxSteps)
	}
	b.checkTime()
}

func (b *budget) checkTime() {
	if b.Timeout > 0 && time.Now().After(b.deadline) {
		exceed("running longer than %v", b.Timeout)
	}
}

// visit counts a value visited by a walk (comparison, measurement), checking the
// clock now and then: a walk of a list shared many times over can take long
// without a step.
func (b *budget) visit() {
	if b == nil {
		return // a Value method used outside a render
	}
	b.work++
	if b.work%(1<<16) == 0 {
		b.checkTime()
	}
}

// allocated counts n bytes of strings or lists made by the render.
func (b *budget) allocated(n int) {
	if b == nil {
		return
	}
	b.alloc += n
	if b.alloc > b.MaxAllocBytes {
		exceed("more than %d bytes of values made", b.MaxAllocBytes)
	}
	if b.alloc>>20 != (b.alloc-n)>>20 {
		b.checkTime() // once per MiB
	}
}

func (b *budget) enter(name string) {
	b.step()
	b.depth++
	if b.depth > b.MaxDepth {
		exceed("calls nested more than %d deep (in %s)", b.MaxDepth, name)
	}
}

func (b *budget) leave() { b.depth-- }

func (b *budget) wrote(n int) {
	b.out += n
	if b.out > b.MaxOutputBytes {
		exceed("output over %d bytes", b.MaxOutputBytes)
	}
}

// checkBytes stops a render about to build a string of n bytes past the bound.
func checkBytes(n int, what string) {
	if n > maxValueBytes || n < 0 {
		exceed("%s over %d bytes", what, maxValueBytes)
	}
}

// checkItems stops a render about to build a list of n items past the bound.
func checkItems(n int) {
	if n > maxItems || n < 0 {
		exceed("a list of more than %d items", maxItems)
	}
}

// checkValue bounds every value an expression yields: its own size, and the size
// and nesting of what printing it would write.
func checkValue(v Value) {
	switch v.kind {
	case KindString:
		checkBytes(len(v.AsString()), "a string")
	case KindList:
		checkItems(v.AsList().Len())
	case KindDict:
		checkItems(v.AsDict().Len())
	}
}

// printedSize bounds the bytes v prints as (String, printValue, tojson with
// indent per level), stopping a render at a value nested past maxNesting or one
// whose print would pass maxValueBytes. Shared items count every time they occur,
// as printing writes them every time.
func printedSize(v Value, indent int) int {
	n := 0
	var walk func(v Value, depth int)
	walk = func(v Value, depth int) {
		cur.visit()
		checkDepth(depth)
		n += 2 + indent*depth
		switch v.kind {
		case KindString:
			n += jsonLen(v.AsString())
		case KindList:
			for _, item := range v.AsList().Items {
				walk(item, depth+1)
			}
		case KindDict:
			d := v.AsDict()
			for _, k := range d.Keys {
				n += 6*len(k) + 4
				walk(d.Data[k], depth+1)
			}
		default:
			n += 32
		}
		if n > maxValueBytes {
			exceed("a value that prints as more than %d bytes", maxValueBytes)
		}
	}
	walk(v, 0)
	return n
}

// jsonLen bounds the bytes of s quoted as JSON (or as a Python repr).
func jsonLen(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 5 // \u00XX
		case c == '"' || c == '\\':
			n++
		case c == 0xE2:
			n += 3 // U+2028 and U+2029 as \u2028
		}
	}
	return n
}

// countFields is len(strings.Fields(s)) without making them.
func countFields(s string) int {
	n, in := 0, false
	for _, r := range s {
		space := unicode.IsSpace(r)
		if !space && !in {
			n++
		}
		in = !space
	}
	return n
}

// checkDepth stops a recursive walk of a value nested past maxNesting.
func checkDepth(depth int) {
	if depth > maxNesting {
		exceed("a value nested more than %d deep", maxNesting)
	}
}

// replaceChecked is strings.Replace with the result's size checked first.
func replaceChecked(s, old, new string, n int) string {
	count := strings.Count(s, old)
	if old == "" {
		count = utf8.RuneCountInString(s) + 1
	}
	if n >= 0 {
		count = min(count, n)
	}
	if grow := len(new) - len(old); grow > 0 && count > 0 {
		if count > (maxValueBytes-len(s))/grow {
			exceed("a replaced string over %d bytes", maxValueBytes)
		}
	}
	return strings.Replace(s, old, new, n)
}

// checkNesting refuses a template whose blocks ({% if %} … {% endif %} and the
// like) or whose brackets within one tag nest more than maxNesting deep: the
// parser and the evaluator recurse on them, and parsing deep brackets takes time
// quadratic in their depth.
func checkNesting(segs []segment) error {
	blocks := 0
	for _, s := range segs {
		if s.kind != segExpr && s.kind != segStmt {
			continue
		}
		depth := 0
		var quote byte
		for i := 0; i < len(s.text); i++ {
			switch c := s.text[i]; {
			case quote != 0:
				if c == '\\' {
					i++
				} else if c == quote {
					quote = 0
				}
			case c == '"' || c == '\'':
				quote = c
			case c == '(' || c == '[' || c == '{':
				if depth++; depth > maxNesting {
					return fmt.Errorf("line %d: brackets nested more than %d deep", s.line, maxNesting)
				}
			case c == ')' || c == ']' || c == '}':
				depth--
			}
		}
		if s.kind != segStmt {
			continue
		}
		words := strings.Fields(s.text)
		if len(words) == 0 {
			continue
		}
		switch w := words[0]; {
		case w == "if" || w == "for" || w == "macro" || w == "call" || w == "filter" || w == "raw" ||
			(w == "set" && !strings.Contains(s.text, "=")):
			if blocks++; blocks > maxNesting {
				return fmt.Errorf("line %d: blocks nested more than %d deep", s.line, maxNesting)
			}
		case strings.HasPrefix(w, "end"):
			blocks--
		}
	}
	return nil
}

// RenderLimited renders the template within lim. A render stopped at a limit
// returns a *LimitError; one that fails inside the engine (a panic) returns an
// error too, never taking the process down.
func (t *Template) RenderLimited(data map[string]any, lim Limits) (out string, err error) {
	renderMu.Lock()
	defer renderMu.Unlock()
	cur = &budget{Limits: lim}
	if lim.Timeout > 0 {
		cur.deadline = time.Now().Add(lim.Timeout)
	}
	defer func() {
		cur = nil
		if r := recover(); r != nil {
			if le, ok := r.(*LimitError); ok {
				out, err = "", le
				return
			}
			out, err = "", fmt.Errorf("template failed: %v", r)
		}
	}()
	vals := make(map[string]Value, len(data))
	for k, v := range data {
		vals[k] = FromGoValue(v)
	}
	return render(t.nodes, vals)
}
