package cuda

import (
	"slices"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The direct bindings pass every argument where the C ABI puts it (registers, then the
// stack: cuLaunchKernel's 11, cublasLtMatmul's 16) and read a C int result: checked
// against C-callable stand-ins (purego callbacks) that record what they receive and return
// an int whose register's upper half is garbage.
func TestDirectBindings(t *testing.T) {
	const garbage = uintptr(0xdead) << 40
	var got []uintptr
	record := func(args ...uintptr) uintptr {
		got = append(got[:0], args...)
		return garbage | 7
	}
	syms := map[string]uintptr{
		"cuCtxSetCurrent": purego.NewCallback(func(a uintptr) uintptr { return record(a) }),
		"cuLaunchKernel": purego.NewCallback(func(a, b, c, d, e, f, g, h, i, j, k uintptr) uintptr {
			return record(a, b, c, d, e, f, g, h, i, j, k)
		}),
		"cuMemcpyHtoDAsync_v2": purego.NewCallback(func(a, b, c, d uintptr) uintptr { return record(a, b, c, d) }),
		"cuGraphLaunch":        purego.NewCallback(func(a, b uintptr) uintptr { return record(a, b) }),
		"cublasLtMatmul": purego.NewCallback(func(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p uintptr) uintptr {
			return record(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p)
		}),
	}
	lookup := func(name string) uintptr { return syms[name] }
	var d driver
	d.bindDirect(lookup)
	var lt cublasLtAPI
	lt.bindDirect(lookup)

	var x, y byte
	px, py := unsafe.Pointer(&x), unsafe.Pointer(&y)
	params := &px
	algo := &ltAlgo{}
	for _, c := range []struct {
		name string
		call func() int32
		want []uintptr
	}{
		{"cuCtxSetCurrent", func() int32 { return int32(d.cuCtxSetCurrent(0x1234)) }, []uintptr{0x1234}},
		{"cuLaunchKernel", func() int32 {
			return int32(d.cuLaunchKernel(0xf00, 1, 2, 3, 128, 1, 1, 49152, 0x5, params, nil))
		}, []uintptr{0xf00, 1, 2, 3, 128, 1, 1, 49152, 0x5, uintptr(unsafe.Pointer(params)), 0}},
		{"cuMemcpyHtoDAsync", func() int32 { return int32(d.cuMemcpyHtoDAsync(1<<40, py, 4096, 0x5)) },
			[]uintptr{1 << 40, uintptr(py), 4096, 0x5}},
		{"cuGraphLaunch", func() int32 { return int32(d.cuGraphLaunch(0x77, 0x5)) }, []uintptr{0x77, 0x5}},
		{"cublasLtMatmul", func() int32 {
			return int32(lt.matmul(1, 2, px, 1<<33, 4, 1<<34, 6, py, 1<<35, 8, 1<<36, 10, algo, 1<<37, 32<<20, 0x5))
		}, []uintptr{1, 2, uintptr(px), 1 << 33, 4, 1 << 34, 6, uintptr(py), 1 << 35, 8, 1 << 36, 10,
			uintptr(unsafe.Pointer(algo)), 1 << 37, 32 << 20, 0x5}},
	} {
		if r := c.call(); r != 7 {
			t.Errorf("%s returned %d, want 7 (the C int in the register's low half)", c.name, r)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: the C side got %#x, want %#x", c.name, got, c.want)
		}
	}
}

// BenchmarkBindings: a call through RegisterFunc's reflective binding against the direct
// one, to a C function (a purego callback here) of cuLaunchKernel's and cuCtxSetCurrent's
// prototypes. The callback's own cost is in both.
//
//	go test ./cuda -run '^$' -bench Bindings
func BenchmarkBindings(b *testing.B) {
	sym11 := purego.NewCallback(func(a, b, c, d, e, f, g, h, i, j, k uintptr) uintptr { return 0 })
	sym1 := purego.NewCallback(func(a uintptr) uintptr { return 0 })
	var reflective, direct driver
	purego.RegisterFunc(&reflective.cuLaunchKernel, sym11)
	purego.RegisterFunc(&reflective.cuCtxSetCurrent, sym1)
	direct.bindDirect(func(name string) uintptr {
		return map[string]uintptr{"cuLaunchKernel": sym11, "cuCtxSetCurrent": sym1}[name]
	})
	var x byte
	p := unsafe.Pointer(&x)
	for _, c := range []struct {
		name string
		d    *driver
	}{{"reflect", &reflective}, {"direct", &direct}} {
		b.Run("launch/"+c.name, func(b *testing.B) {
			for b.Loop() {
				c.d.cuLaunchKernel(1, 2, 3, 4, 5, 6, 7, 8, 9, &p, nil)
			}
		})
		b.Run("ctx/"+c.name, func(b *testing.B) {
			for b.Loop() {
				c.d.cuCtxSetCurrent(1)
			}
		})
	}
}
