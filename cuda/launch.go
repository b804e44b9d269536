package cuda

import (
	"fmt"
	"math"
	"unsafe"
)

// kernelArgs is a kernel's parameter list packed as the C ABI lays out a struct of the same
// fields: each value at the next offset aligned to its size. offsets[i] is where argument i
// starts; the driver gets one pointer per argument into buf.
type kernelArgs struct {
	buf     []byte
	offsets []int
}

// packArgs packs device buffers (as 8-byte pointers), int32, int64 and float32 values.
func packArgs(vals ...any) (kernelArgs, error) {
	var a kernelArgs
	for i, v := range vals {
		var size int
		var bits uint64
		switch x := v.(type) {
		case Buffer:
			size, bits = 8, x.Ptr
		case int32:
			size, bits = 4, uint64(uint32(x))
		case int64:
			size, bits = 8, uint64(x)
		case float32:
			size, bits = 4, uint64(math.Float32bits(x))
		default:
			return kernelArgs{}, fmt.Errorf("cuda: kernel argument %d: unsupported type %T", i, v)
		}
		off := (len(a.buf) + size - 1) / size * size
		for len(a.buf) < off+size {
			a.buf = append(a.buf, 0)
		}
		for b := 0; b < size; b++ { // little-endian, as on every CUDA host
			a.buf[off+b] = byte(bits >> (8 * b))
		}
		a.offsets = append(a.offsets, off)
	}
	return a, nil
}

// pointers returns the driver's kernelParams array: one pointer per argument into buf.
// The caller keeps a alive until the launch call returns (the driver copies the values).
func (a *kernelArgs) pointers() []unsafe.Pointer {
	p := make([]unsafe.Pointer, len(a.offsets))
	for i, off := range a.offsets {
		p[i] = unsafe.Pointer(&a.buf[off])
	}
	return p
}

// launchDims is a grid, a block and the dynamic shared memory of one launch.
type launchDims struct {
	grid   [3]uint32
	block  [3]uint32
	shared uint32
}

func grid1(x int, threads int) launchDims {
	return launchDims{grid: [3]uint32{uint32(x), 1, 1}, block: [3]uint32{uint32(threads), 1, 1}}
}

func grid2(x, y int, threads int) launchDims {
	return launchDims{grid: [3]uint32{uint32(x), uint32(y), 1}, block: [3]uint32{uint32(threads), 1, 1}}
}

// launch queues kernel name on the device's stream with vals as its arguments.
func (d *Device) launch(name string, dims launchDims, vals ...any) error {
	fn, ok := d.funcs[name]
	if !ok {
		return fmt.Errorf("cuda: no kernel %q in the loaded modules", name)
	}
	args, err := packArgs(vals...)
	if err != nil {
		return err
	}
	return d.do(func() error {
		if err := d.capture(nodeKernel, uint64(fn)); err != nil {
			return err
		}
		p := args.pointers()
		r := d.api.cuLaunchKernel(fn, dims.grid[0], dims.grid[1], dims.grid[2],
			dims.block[0], dims.block[1], dims.block[2], dims.shared, d.stream, &p[0], nil)
		if r == 0 { // the op's name is built only for an error: hundreds of launches a token
			return nil
		}
		return d.abortSegment(d.api.check("launch "+name, r))
	})
}
