package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// le builds little-endian bytes by hand, independently of the writer.
type le struct{ b []byte }

func (l *le) u8(v uint8)   { l.b = append(l.b, v) }
func (l *le) u32(v uint32) { l.b = binary.LittleEndian.AppendUint32(l.b, v) }
func (l *le) u64(v uint64) { l.b = binary.LittleEndian.AppendUint64(l.b, v) }
func (l *le) str(s string) { l.u64(uint64(len(s))); l.b = append(l.b, s...) }
func (l *le) pad(a int) {
	for len(l.b)%a != 0 {
		l.b = append(l.b, 0)
	}
}

// handFile is a v3 file with two metadata pairs and two F32 tensors at alignment 32:
// "x" [3] at offset 0 and "y" [2, 1] at offset 32.
func handFile() []byte {
	var l le
	l.b = append(l.b, "GGUF"...)
	l.u32(3)
	l.u64(2) // tensors
	l.u64(2) // kv
	l.str("general.architecture")
	l.u32(uint32(TypeString))
	l.str("llama")
	l.str("tokenizer.ggml.scores")
	l.u32(uint32(TypeArray))
	l.u32(uint32(TypeFloat32))
	l.u64(2)
	l.u32(math.Float32bits(-1.5))
	l.u32(math.Float32bits(2))
	l.str("x")
	l.u32(1)
	l.u64(3)
	l.u32(uint32(F32))
	l.u64(0)
	l.str("y")
	l.u32(2)
	l.u64(2)
	l.u64(1)
	l.u32(uint32(F32))
	l.u64(32)
	l.pad(32)
	for _, v := range []float32{1, 2, 3} {
		l.u32(math.Float32bits(v))
	}
	l.pad(32)
	for _, v := range []float32{4, 5} {
		l.u32(math.Float32bits(v))
	}
	return l.b
}

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func TestReadHandBuilt(t *testing.T) {
	raw := handFile()
	f, err := Read(bytes.NewReader(raw), int64(len(raw)), "hand.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 32 || len(f.Tensors) != 2 {
		t.Fatalf("version %d alignment %d tensors %d", f.Version, f.Alignment, len(f.Tensors))
	}
	if s, err := f.String("general.architecture"); err != nil || s != "llama" {
		t.Fatalf("architecture %q %v", s, err)
	}
	if sc, err := f.Float32s("tokenizer.ggml.scores"); err != nil || !reflect.DeepEqual(sc, []float32{-1.5, 2}) {
		t.Fatalf("scores %v %v", sc, err)
	}
	y, _ := f.Tensor("y")
	if !reflect.DeepEqual(y.Dims, []uint64{2, 1}) || y.Offset != 32 || y.Size != 8 {
		t.Fatalf("y = %+v", *y)
	}
	data, err := f.ReadTensor(y)
	if err != nil || !bytes.Equal(data, f32bytes(4, 5)) {
		t.Fatalf("y data %v %v", data, err)
	}
	// The writer, given the same content, writes the same bytes.
	var buf bytes.Buffer
	err = Write(&buf, []KV{{"general.architecture", "llama"}, {"tokenizer.ggml.scores", Array{TypeFloat32, []float32{-1.5, 2}}}},
		[]Tensor{{"x", []uint64{3}, F32, f32bytes(1, 2, 3)}, {"y", []uint64{2, 1}, F32, f32bytes(4, 5)}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), raw) {
		t.Fatalf("writer output differs from the hand-built file:\n%x\n%x", buf.Bytes(), raw)
	}
}

func TestRoundTrip(t *testing.T) {
	kv := []KV{
		{"general.alignment", uint32(64)},
		{"u8", uint8(200)}, {"i8", int8(-100)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4e9)}, {"i32", int32(-2e9)}, {"f32", float32(0.25)}, {"bool", true},
		{"str", "héllo"}, {"u64", uint64(1) << 63}, {"i64", int64(-1) << 62}, {"f64", math.Pi},
		{"a.u8", Array{TypeUint8, []uint8{1, 2}}}, {"a.i8", Array{TypeInt8, []int8{-1}}},
		{"a.u16", Array{TypeUint16, []uint16{7}}}, {"a.i16", Array{TypeInt16, []int16{-7}}},
		{"a.u32", Array{TypeUint32, []uint32{}}}, {"a.i32", Array{TypeInt32, []int32{-3, 3}}},
		{"a.f32", Array{TypeFloat32, []float32{1.5}}}, {"a.bool", Array{TypeBool, []bool{true, false}}},
		{"a.str", Array{TypeString, []string{"", "b"}}}, {"a.u64", Array{TypeUint64, []uint64{9}}},
		{"a.i64", Array{TypeInt64, []int64{-9}}}, {"a.f64", Array{TypeFloat64, []float64{2.5}}},
		{"a.nested", Array{TypeArray, []Array{{TypeString, []string{"a b", "c"}}, {TypeInt32, []int32{1}}}}},
	}
	q := make([]byte, 2*34) // two Q8_0 blocks
	for i := range q {
		q[i] = byte(i)
	}
	ts := []Tensor{
		{"a", []uint64{5}, F32, f32bytes(1, 2, 3, 4, 5)},
		{"b", []uint64{32, 2}, Q8_0, q},
		{"c", []uint64{3}, F16, []byte{1, 2, 3, 4, 5, 6}},
	}
	path := filepath.Join(t.TempDir(), "rt.gguf")
	if err := WriteFile(path, kv, ts, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, kv, ts, false); err == nil {
		t.Fatal("WriteFile replaced an existing file without force")
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !reflect.DeepEqual(f.KV, kv) {
		t.Fatalf("metadata:\n got %v\nwant %v", f.KV, kv)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Fatalf("alignment %d, data at %d", f.Alignment, f.DataOffset)
	}
	for _, want := range ts {
		info, ok := f.Tensor(want.Name)
		if !ok || info.Type != want.Type || !reflect.DeepEqual(info.Dims, want.Dims) || info.Offset%64 != 0 {
			t.Fatalf("tensor %s: %+v", want.Name, info)
		}
		got, err := f.ReadTensor(info)
		if err != nil || !bytes.Equal(got, want.Data) {
			t.Fatalf("tensor %s data %v %v", want.Name, got, err)
		}
	}
	if n, err := f.Int("u64"); err == nil {
		t.Fatalf("Int of 2^63 = %d, want an error", n)
	}
	if n, err := f.Int("i16"); err != nil || n != -30000 {
		t.Fatalf("Int(i16) %d %v", n, err)
	}
	if v, err := f.Ints("a.i32"); err != nil || !reflect.DeepEqual(v, []int64{-3, 3}) {
		t.Fatalf("Ints %v %v", v, err)
	}
	if _, err := f.String("u8"); err == nil || !strings.Contains(err.Error(), `"u8"`) || !strings.Contains(err.Error(), "rt.gguf") {
		t.Fatalf("type mismatch error %v should name the file and key", err)
	}
	if _, err := f.String("absent"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing key error %v", err)
	}
}

func TestWriteRejects(t *testing.T) {
	cases := []struct {
		name string
		kv   []KV
		ts   []Tensor
		want string
	}{
		{"dup key", []KV{{"a", uint8(1)}, {"a", uint8(2)}}, nil, "twice"},
		{"bad type", []KV{{"a", 3}}, nil, "cannot be written"},
		{"mismatched array", []KV{{"a", Array{TypeInt32, []uint32{1}}}}, nil, "holds"},
		{"bad alignment", []KV{{"general.alignment", uint32(3)}}, nil, "power of two"},
		{"short data", nil, []Tensor{{"t", []uint64{4}, F32, make([]byte, 15)}}, "need 16"},
		{"partial block", nil, []Tensor{{"t", []uint64{16}, Q8_0, make([]byte, 17)}}, "multiple"},
		{"unknown type", nil, []Tensor{{"t", []uint64{1}, Type(99), nil}}, "unknown"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		err := Write(&buf, c.kv, c.ts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: wrote %d bytes before failing", c.name, buf.Len())
		}
	}
}

// mutate returns the hand-built file with the bytes at off replaced.
func mutate(off int, b []byte) []byte {
	raw := handFile()
	copy(raw[off:], b)
	return raw
}

func u64b(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func u32b(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func TestReadRejects(t *testing.T) {
	raw := handFile()
	// Offsets into handFile: the header is 24 bytes; the first key follows.
	xInfo := bytes.Index(raw, []byte("\x01\x00\x00\x00\x00\x00\x00\x00x")) + 9 // after "x"'s name
	yInfo := bytes.Index(raw, []byte("\x01\x00\x00\x00\x00\x00\x00\x00y")) + 9
	scores := bytes.Index(raw, []byte("scores")) + len("scores")
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"magic", mutate(0, []byte("GGUG")), "magic"},
		{"version 1", mutate(4, u32b(1)), "version: 1"},
		{"big-endian", mutate(4, []byte{0, 0, 0, 3}), "big-endian"},
		{"version 9", mutate(4, u32b(9)), "version: 9"},
		{"absurd tensor count", mutate(8, u64b(1<<60)), "tensor_count"},
		{"absurd kv count", mutate(16, u64b(1<<40)), "metadata_kv_count"},
		{"absurd key length", mutate(24, u64b(1<<50)), "string length"},
		{"unknown value type", mutate(24+8+20, u32b(13)), "unknown value type 13"},
		{"absurd array length", mutate(scores+4+4, u64b(1<<61)), "array length"},
		{"too many dims", mutate(xInfo, u32b(5)), "n_dimensions"},
		{"unknown tensor type", mutate(xInfo+4+8, u32b(31)), "unknown tensor type 31"},
		{"offset past end", mutate(xInfo+4+8+4, u64b(1<<40)), "past its end"},
		{"misaligned", mutate(xInfo+4+8+4, u64b(4)), "alignment"},
		{"overlap", mutate(yInfo+4+16+4, u64b(0)), "overlap"},
		{"absurd dims", mutate(yInfo+4, append(u64b(1<<40), u64b(1<<40)...)), "2^62"},
		{"block does not divide", mutate(xInfo+4+8, u32b(uint32(Q8_0))), "block of 32"},
		{"truncated data", raw[:len(raw)-1], "past its end"},
		{"truncated counts", raw[:40], "tensor_count"},
		{"truncated tensor info", raw[:yInfo], "ends early"},
	}
	for _, c := range cases {
		_, err := Read(bytes.NewReader(c.raw), int64(len(c.raw)), "bad.gguf")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "bad.gguf: ") {
			t.Errorf("%s: %v, want an error naming bad.gguf containing %q", c.name, err, c.want)
		}
	}
	// Every truncation fails cleanly.
	for n := range len(raw) - 1 {
		if _, err := Read(bytes.NewReader(raw[:n]), int64(n), "t.gguf"); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

func TestReadV2(t *testing.T) {
	raw := mutate(4, u32b(2))
	f, err := Read(bytes.NewReader(raw), int64(len(raw)), "v2.gguf")
	if err != nil || f.Version != 2 {
		t.Fatalf("v2: %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "none.gguf")); !os.IsNotExist(err) {
		t.Fatalf("%v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(handFile())
	f.Add(mutate(4, u32b(2)))
	var buf bytes.Buffer
	Write(&buf, []KV{{"n", Array{TypeArray, []Array{{TypeString, []string{"x"}}}}}, {"general.alignment", uint32(8)}},
		[]Tensor{{"q", []uint64{32}, Q8_0, make([]byte, 34)}, {"k", []uint64{256}, Q4_K, make([]byte, 144)}})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		g, err := Read(bytes.NewReader(raw), int64(len(raw)), "fuzz.gguf")
		if err != nil {
			return
		}
		for i := range g.Tensors {
			ti := &g.Tensors[i]
			if g.DataOffset+ti.Offset+ti.Size > uint64(len(raw)) {
				t.Fatalf("tensor %q accepted past the end", ti.Name)
			}
			if _, err := g.ReadTensor(ti); err != nil {
				t.Fatal(err)
			}
		}
	})
}
