package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// file assembles a safetensors file from a raw header string and a data section,
// so that tests can write headers that lie.
func file(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestRoundTrip(t *testing.T) {
	ts := []Tensor{
		FromFloat32s("b", []int{2, 3}, []float32{1, -2, 3.5, 0, float32(math.Inf(1)), 6}),
		FromInt64s("a", []int{2}, []int64{-7, 1 << 40}),
		{Name: "h", Dtype: BF16, Shape: []int{2}, Data: []byte{0x80, 0x3f, 0x00, 0xc0}}, // 1, -2
		{Name: "f", Dtype: F16, Shape: []int{3}, Data: []byte{0x00, 0x3c, 0x01, 0x00, 0x00, 0xfc}},
	}
	var buf bytes.Buffer
	if err := Write(&buf, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := strings.Join(f.Names(), ","); got != "a,b,f,h" {
		t.Errorf("names %s", got)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	b, _ := f.Tensor("b")
	v, err := b.Float32s()
	if err != nil || len(v) != 6 || v[2] != 3.5 || !math.IsInf(float64(v[4]), 1) {
		t.Errorf("b = %v, %v", v, err)
	}
	a, _ := f.Tensor("a")
	iv, _ := a.Int64s()
	if iv[0] != -7 || iv[1] != 1<<40 {
		t.Errorf("a = %v", iv)
	}
	h, _ := f.Tensor("h")
	hv, _ := h.Float32s()
	if hv[0] != 1 || hv[1] != -2 {
		t.Errorf("bf16 = %v", hv)
	}
	// f16: 1, the smallest subnormal 2⁻²⁴, −∞
	fh, _ := f.Tensor("f")
	fv, _ := fh.Float32s()
	if fv[0] != 1 || fv[1] != float32(math.Ldexp(1, -24)) || !math.IsInf(float64(fv[2]), -1) {
		t.Errorf("f16 = %v", fv)
	}
}

func TestF16ToFloat(t *testing.T) {
	for _, c := range []struct {
		h    uint16
		want float32
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x3555, 0.333251953125},
		{0x0400, float32(math.Ldexp(1, -14))}, {0x03ff, float32(math.Ldexp(1023, -24))}, {0x8001, -float32(math.Ldexp(1, -24))},
	} {
		if got := F16ToFloat(c.h); got != c.want {
			t.Errorf("F16ToFloat(%#04x) = %g, want %g", c.h, got, c.want)
		}
	}
	if !math.IsNaN(float64(F16ToFloat(0x7e00))) {
		t.Error("0x7e00 should be NaN")
	}
}

func TestBadFiles(t *testing.T) {
	data8 := make([]byte, 8)
	cases := []struct {
		name, want string
		b          []byte
	}{
		{"short", "too short", []byte{1, 2, 3}},
		{"header past end", "exceeds", append([]byte{0xff, 0, 0, 0, 0, 0, 0, 0}, "{}"...)},
		{"not json", "header", file(`not json`, nil)},
		{"json array", "not a JSON object", file(`[1,2]`, nil)},
		{"truncated json", "header JSON", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`, data8)},
		{"trailing", "trailing", file(`{} {}`, nil)},
		{"unknown dtype", `unsupported dtype "Q4"`, file(`{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, data8)},
		{"offset out of range", "outside the data section", file(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, data8)},
		{"negative offset", "outside", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, data8)},
		{"size mismatch", "needs 12", file(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data8)},
		{"overlap", "overlap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8)},
		{"duplicate", "twice", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8)},
		{"negative shape", "invalid shape", file(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, data8)},
		{"huge shape", "invalid shape", file(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`, data8)},
		{"offsets count", "data_offsets has 1", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, data8)},
		{"bad metadata", "__metadata__", file(`{"__metadata__":{"a":1}}`, nil)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b, "bad.safetensors")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bad.safetensors") {
				t.Errorf("error %q should name the file and say %q", err, c.want)
			}
		})
	}
}

func TestOpenMissingAndTruncated(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none.safetensors")); err == nil || !strings.Contains(err.Error(), "none.safetensors") {
		t.Errorf("missing file: %v", err)
	}
	var buf bytes.Buffer
	Write(&buf, []Tensor{FromFloat32s("w", []int{4}, []float32{1, 2, 3, 4})}, nil)
	p := filepath.Join(dir, "cut.safetensors")
	os.WriteFile(p, buf.Bytes()[:buf.Len()-3], 0o644)
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), `tensor "w"`) {
		t.Errorf("truncated file: %v", err)
	}
}

func TestCheckpointShards(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ts ...Tensor) {
		var buf bytes.Buffer
		if err := Write(&buf, ts, nil); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644)
	}
	write("model-00001-of-00002.safetensors", FromFloat32s("x", []int{1}, []float32{1}))
	write("model-00002-of-00002.safetensors", FromFloat32s("y", []int{1}, []float32{2}))
	index := func(m map[string]string) {
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": m})
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), b, 0o644)
	}
	index(map[string]string{"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"})
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	y, _, err := c.Tensor("y")
	if v, _ := y.Float32s(); err != nil || v[0] != 2 {
		t.Errorf("y = %v, %v", v, err)
	}
	if _, _, err := c.Tensor("z"); err == nil || !strings.Contains(err.Error(), `"z"`) {
		t.Errorf("missing tensor: %v", err)
	}
	c.Close()

	index(map[string]string{"x": "model-00002-of-00002.safetensors"})
	if _, err := OpenCheckpoint(dir); err == nil || !strings.Contains(err.Error(), `tensor "x" is not in shard`) {
		t.Errorf("wrong shard: %v", err)
	}
	index(map[string]string{"x": "../elsewhere.safetensors"})
	if _, err := OpenCheckpoint(dir); err == nil || !strings.Contains(err.Error(), "same folder") {
		t.Errorf("shard outside the folder: %v", err)
	}
	if _, err := OpenCheckpoint(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no model.safetensors") {
		t.Errorf("empty folder: %v", err)
	}
}

// FuzzParse: any bytes either parse into tensors that lie inside the data, without
// overlap, or give an error; never a panic.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.safetensors")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := Parse(b, "fuzz")
		if err != nil {
			return
		}
		for _, n := range sf.Names() {
			tn, _ := sf.Tensor(n)
			count := 1
			for _, s := range tn.Shape {
				count *= s
			}
			if count*tn.Dtype.Size() != len(tn.Data) {
				t.Fatalf("tensor %q: %d bytes for shape %v of %s", n, len(tn.Data), tn.Shape, tn.Dtype)
			}
			if _, err := tn.Float32s(); err != nil && tn.Dtype != I64 && tn.Dtype != I32 {
				t.Fatal(err)
			}
		}
	})
}
