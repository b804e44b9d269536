package cuda

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"unsafe"
)

// packArgs packs vals into a fresh kernelArgs.
func packArgs(vals ...any) (*kernelArgs, error) {
	a := &kernelArgs{}
	return a, a.pack(vals...)
}

// The packed layout must be what nvcc gives a kernel with these parameters: each at the next
// offset aligned to its size, little-endian.
func TestPackArgsLayout(t *testing.T) {
	a, err := packArgs(Buffer{Ptr: 0x1122334455667788}, int32(-7), float32(1.5), int64(-2), int32(9), Buffer{Ptr: 42})
	if err != nil {
		t.Fatal(err)
	}
	wantOff := []int{0, 8, 12, 16, 24, 32}
	for i, o := range wantOff {
		if a.offsets[i] != o {
			t.Fatalf("argument %d at offset %d, want %d", i, a.offsets[i], o)
		}
	}
	if len(a.packed()) != 40 || a.count != 6 {
		t.Fatalf("packed %d bytes, %d arguments; want 40, 6", len(a.packed()), a.count)
	}
	le := binary.LittleEndian
	if got := le.Uint64(a.buf[0:]); got != 0x1122334455667788 {
		t.Errorf("pointer = %#x", got)
	}
	if got := int32(le.Uint32(a.buf[8:])); got != -7 {
		t.Errorf("int32 = %d", got)
	}
	if got := math.Float32frombits(le.Uint32(a.buf[12:])); got != 1.5 {
		t.Errorf("float32 = %v", got)
	}
	if got := int64(le.Uint64(a.buf[16:])); got != -2 {
		t.Errorf("int64 = %d", got)
	}
	if got := le.Uint32(a.buf[24:]); got != 9 {
		t.Errorf("second int32 = %d", got)
	}
	if got := le.Uint64(a.buf[32:]); got != 42 {
		t.Errorf("second pointer = %d", got)
	}
	for i, p := range a.pointers() {
		if uintptr(p)-uintptr(unsafe.Pointer(&a.buf[0])) != uintptr(wantOff[i]) {
			t.Errorf("kernel parameter %d points at byte %d", i, uintptr(p)-uintptr(unsafe.Pointer(&a.buf[0])))
		}
	}
}

// An int32 before a pointer leaves a 4-byte hole, as in a C struct.
func TestPackArgsPadding(t *testing.T) {
	a, err := packArgs(int32(1), Buffer{Ptr: 2})
	if err != nil {
		t.Fatal(err)
	}
	if a.offsets[1] != 8 || len(a.packed()) != 16 || a.buf[4]|a.buf[5]|a.buf[6]|a.buf[7] != 0 {
		t.Fatalf("offsets %v, %d bytes %v; want pointer at 8 of 16, a zero hole", a.offsets[:2], len(a.packed()), a.packed())
	}
}

// A device's kernelArgs is packed again for every launch: nothing of the last one's is left.
func TestPackArgsReused(t *testing.T) {
	var a kernelArgs
	if err := a.pack(int64(-1), int64(-1), int64(-1)); err != nil {
		t.Fatal(err)
	}
	if err := a.pack(int32(5), Buffer{Ptr: 9}); err != nil {
		t.Fatal(err)
	}
	want := []byte{5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0}
	if a.count != 2 || len(a.pointers()) != 2 || string(a.packed()) != string(want) {
		t.Fatalf("%d arguments, packed %v; want 2, %v", a.count, a.packed(), want)
	}
	vals := make([]any, maxArgs+1)
	for i := range vals {
		vals[i] = int32(i)
	}
	if err := a.pack(vals...); err == nil {
		t.Fatalf("%d arguments packed", len(vals))
	}
}

func TestPackArgsRejectsOtherTypes(t *testing.T) {
	if _, err := packArgs(int32(1), 3); err == nil {
		t.Fatal("a plain int was packed; its width is not the kernel's to guess")
	}
}

func TestMissingDriverIsAClearError(t *testing.T) {
	_, err := loadDriver("libcuda-kvfoot-absent.so.1")
	if err == nil || !containsAll(err.Error(), "no NVIDIA driver", "libcuda-kvfoot-absent.so.1") {
		t.Fatalf("err = %v", err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// BenchmarkPackArgs: packing a launch of 10 arguments (4 buffers, 5 int32, a float32), as
// the attention kernels take, into a device's kernelArgs.
//
//	go test ./cuda -run '^$' -bench PackArgs -benchmem
func BenchmarkPackArgs(b *testing.B) {
	x := Buffer{Ptr: 1 << 30}
	var a kernelArgs
	for b.Loop() {
		if err := a.pack(x, x, x, x, int32(1), int32(2), int32(3), float32(0.5), int32(4), int32(5)); err != nil {
			b.Fatal(err)
		}
		_ = a.pointers()
	}
}
