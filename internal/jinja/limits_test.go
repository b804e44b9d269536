package jinja

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Hostile templates stop at a limit with an error naming it, instead of
// overflowing the stack or eating the memory (either would kill the test binary).
func TestHostileTemplatesStop(t *testing.T) {
	quick := DefaultLimits
	quick.Timeout = 300 * time.Millisecond
	for _, c := range []struct{ name, src, want string }{
		{"recursive macro", `{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}`, "calls nested more than 64 deep (in f)"},
		{"macro given itself", `{% macro a(g) %}{{ g(g) }}{% endmacro %}{{ a(a) }}`, "nested more than 64 deep"},
		{"recursion through caller", `{% macro m() %}{% call m() %}x{% endcall %}{{ caller() }}{% endmacro %}{{ m() }}`, "nested more than 64 deep"},
		{"nested loops", `{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}`, "more than 2000000 steps"},
		{"huge range", `{% for i in range(10**12) %}{% endfor %}`, "range of more than 1048576 items"},
		{"range near the integer limit", `{{ range(9223372036854775800, 9223372036854775807, 5) | length }}`, ""},
		{"huge repeat", `{{ 'ab' * 1000000000000 }}`, "a repeated string over 16777216 bytes"},
		{"doubling", `{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}`, "a joined string over"},
		{"doubling with +", `{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}`, "a joined string over"},
		{"list doubling", `{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}`, "a list of more than"},
		{"self-containing list printed", `{% set l = [] %}{% set _ = l.append(l) %}{{ l }}`, "nested more than 128 deep"},
		{"self-containing list compared", `{% set l = [] %}{% set _ = l.append(l) %}{{ l == l }}`, "nested more than 128 deep"},
		{"self-containing list as JSON", `{% set l = [] %}{% set _ = l.append(l) %}{{ l | tojson }}`, "nested more than 128 deep"},
		{"deep nesting", `{% set ns = namespace(x=1) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}`, "nested more than 128 deep"},
		{"shared halves printed", `{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}`, "prints as more than"},
		{"shared halves joined", `{% set ns = namespace(x=['abcd']) %}{% for i in range(40) %}{% set ns.x = [ns.x|join, ns.x|join] %}{% endfor %}`, "over 16777216 bytes"},
		{"shared halves compared", `{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x == ns.x }}`, "running longer than 300ms"},
		{"replace blow-up", `{% set s = 'a' * 1000000 %}{{ s | replace('a', s) }}`, "a replaced string over"},
		{"format blow-up", `{% set s = '{0}' * 1000000 %}{{ s.format('x' * 1000) }}`, "a replaced string over"},
		{"indent blow-up", `{{ ('\n' * 100000) | indent(100000) }}`, "an indented string over"},
		{"tojson indent blow-up", `{{ range(1000) | list | tojson(indent=100000) }}`, "prints as more than"},
		{"split blow-up", `{{ ('x' * 16000000).split('') | length }}`, "a list of more than"},
		{"output", `{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}`, "output over 16777216 bytes"},
		{"memory", `{% set ns = namespace(l=[]) %}{% for i in range(100) %}{% set _ = ns.l.append('x' * 10000000) %}{% endfor %}`, "bytes of values made"},
		{"unique of big prints", `{% set s = 'x' * 10000000 %}{{ [s, s ~ 'y', s ~ 'z'] | unique | length }}`, "unique's printed items over"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tm, err := Compile(c.src)
			if err != nil {
				t.Fatal(err)
			}
			lim := DefaultLimits
			if strings.Contains(c.want, "running longer") {
				lim = quick
			}
			_, err = tm.RenderLimited(nil, lim)
			if c.want == "" {
				if err != nil {
					t.Errorf("error %v, want none", err)
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want a LimitError containing %q", err, c.want)
			}
		})
	}
}

// The bounds follow Python where a template may rely on it: a negative repeat
// is empty, slices clamp, range counts exactly.
func TestLimitsKeepSemantics(t *testing.T) {
	renderEach(t, map[string]string{
		`{{ 'ab' * -3 }}|{{ 'ab' * 2 }}`:                                  "|abab",
		`{{ [1,2,3,4,5][1:10**12:2] }}`:                                   "[2, 4]",
		`{{ 'abcdef'[10**12:0:-2] }}`:                                     "fdb",
		`{{ range(9223372036854775800, 9223372036854775807, 5) | list }}`: "[9223372036854775800, 9223372036854775805]",
		`{{ range(10, 0, -3) | list }}`:                                   "[10, 7, 4, 1]",
		`{{ 'a b  c'.split() | length }} {{ 'a b  c' | wordcount }}`:      "3 3",
		`{{ 'x,y'.split(',') }} {{ 'aXa' | replace('a', 'bb') }}`:         "['x', 'y'] bbXbb",
	})
}

// Compile refuses nesting the parser would recurse on past maxNesting (and whose
// parse time grows with the square of its depth); up to it a template compiles.
func TestCompileNesting(t *testing.T) {
	nest := func(open, mid, close string, n int) string {
		return strings.Repeat(open, n) + mid + strings.Repeat(close, n)
	}
	for _, c := range []struct {
		src  string
		want string // "" for none
	}{
		{"{{ " + nest("(", "1", ")", 128) + " }}", ""},
		{"{{ " + nest("(", "1", ")", 129) + " }}", "brackets nested more than 128 deep"},
		{"{{ " + nest("[", "", "]", 100000) + " }}", "brackets nested more than 128 deep"},
		{"{{ '" + strings.Repeat("(", 1000) + "' }}", ""}, // in a string, not nesting
		{nest("{% if 1 %}", "x", "{% endif %}", 128), ""},
		{nest("{% for i in [1] %}", "x", "{% endfor %}", 129), "blocks nested more than 128 deep"},
		{strings.Repeat("{% if 1 %}x{% endif %}", 1000), ""}, // many, not nested
	} {
		_, err := Compile(c.src)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%.40s…: error %v, want %q", c.src, err, c.want)
		}
	}
}

// Renders and compilations from many goroutines at once are safe (run with -race)
// and each counts only its own work.
func TestConcurrentRenders(t *testing.T) {
	done := make(chan error, 8)
	for g := range 8 {
		go func() {
			for range 20 {
				tm, err := Compile(`{% for i in range(n) %}{{ i }}{% endfor %}`)
				if err != nil {
					done <- err
					return
				}
				lim := DefaultLimits
				lim.MaxSteps = 1000
				// 300 iterations of two steps each fit; 600 do not, whoever else renders
				n := 300 * (1 + g%2)
				_, err = tm.RenderLimited(map[string]any{"n": n}, lim)
				if (err != nil) != (n == 600) {
					done <- fmt.Errorf("n = %d: %v", n, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// FuzzTemplate: no template, however malformed or hostile, ends the process or
// runs past its limits; every failure is an error.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		`{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}`,
		`{% set l = [] %}{% set _ = l.append(l) %}{{ l }}`,
		`{% for m in messages %}{{ m.role ~ ': ' ~ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}`,
		`{{ (messages | tojson(indent=2))[1:-1:3] | replace('a', 'bb') | indent(4) }}`,
		`{% set ns = namespace(x=[1]) %}{% for i in range(30) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x | length }}`,
		`{% call(x) m() %}{{ x }}{% endcall %}{{ 'x'.format(1, 2) }}{{ 'a,b'.split(',') | join('-') }}`,
	} {
		f.Add(s)
	}
	lim := DefaultLimits
	lim.Timeout = 2 * time.Second
	data := map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	f.Fuzz(func(t *testing.T, src string) {
		tm, err := Compile(src)
		if err != nil {
			return
		}
		start := time.Now()
		tm.RenderLimited(data, lim)
		if d := time.Since(start); d > 10*lim.Timeout {
			t.Errorf("render took %v, past its %v limit", d, lim.Timeout)
		}
	})
}

// renderEach renders each template with no data and compares the output.
func renderEach(t *testing.T, want map[string]string) {
	t.Helper()
	for src, w := range want {
		tm, err := Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tm.Render(nil)
		if err != nil || got != w {
			t.Errorf("%s = %q, %v; want %q", src, got, err, w)
		}
	}
}
