package gguf

import (
	"fmt"
	"math"
)

// The accessors below return a metadata value converted to a Go type; the error
// names the file and the key when the key is absent or its value has another type.

// Has reports whether key is present.
func (f *File) Has(key string) bool { _, ok := f.kv[key]; return ok }

func (f *File) get(key string) (any, error) {
	v, ok := f.Lookup(key)
	if !ok {
		return nil, fmt.Errorf("%s: metadata %q: missing", f.Path, key)
	}
	return v, nil
}

func (f *File) typeErr(key string, v any, want string) error {
	return fmt.Errorf("%s: metadata %q: %s, want %s", f.Path, key, describe(v), want)
}

func describe(v any) string {
	if a, ok := v.(Array); ok {
		return fmt.Sprintf("array of %s", a.Elem)
	}
	return fmt.Sprintf("%T %v", v, v)
}

// String returns a string value.
func (f *File) String(key string) (string, error) {
	v, err := f.get(key)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", f.typeErr(key, v, "a string")
	}
	return s, nil
}

// asInt converts any integer value that fits in an int64.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	case int64:
		return x, true
	}
	return 0, false
}

// Int returns an integer value of any integer type.
func (f *File) Int(key string) (int64, error) {
	v, err := f.get(key)
	if err != nil {
		return 0, err
	}
	n, ok := asInt(v)
	if !ok {
		return 0, f.typeErr(key, v, "an integer")
	}
	return n, nil
}

// Float returns a float32, float64 or integer value as a float64.
func (f *File) Float(key string) (float64, error) {
	v, err := f.get(key)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	}
	if n, ok := asInt(v); ok {
		return float64(n), nil
	}
	return 0, f.typeErr(key, v, "a number")
}

// Bool returns a bool value.
func (f *File) Bool(key string) (bool, error) {
	v, err := f.get(key)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, f.typeErr(key, v, "a bool")
	}
	return b, nil
}

// Strings returns an array of strings.
func (f *File) Strings(key string) ([]string, error) {
	v, err := f.get(key)
	if err != nil {
		return nil, err
	}
	if a, ok := v.(Array); ok {
		if s, ok := a.Values.([]string); ok {
			return s, nil
		}
	}
	return nil, f.typeErr(key, v, "an array of strings")
}

// Float32s returns an array of float32 values.
func (f *File) Float32s(key string) ([]float32, error) {
	v, err := f.get(key)
	if err != nil {
		return nil, err
	}
	if a, ok := v.(Array); ok {
		if s, ok := a.Values.([]float32); ok {
			return s, nil
		}
	}
	return nil, f.typeErr(key, v, "an array of float32")
}

// Ints returns an array of any integer type as int64s.
func (f *File) Ints(key string) ([]int64, error) {
	v, err := f.get(key)
	if err != nil {
		return nil, err
	}
	a, ok := v.(Array)
	if !ok {
		return nil, f.typeErr(key, v, "an array of integers")
	}
	var out []int64
	switch s := a.Values.(type) {
	case []uint8:
		out = widen(s)
	case []int8:
		out = widen(s)
	case []uint16:
		out = widen(s)
	case []int16:
		out = widen(s)
	case []uint32:
		out = widen(s)
	case []int32:
		out = widen(s)
	case []int64:
		out = s
	case []uint64:
		out = make([]int64, len(s))
		for i, x := range s {
			if x > math.MaxInt64 {
				return nil, fmt.Errorf("%s: metadata %q: element %d: %d does not fit in int64", f.Path, key, i, x)
			}
			out[i] = int64(x)
		}
	default:
		return nil, f.typeErr(key, v, "an array of integers")
	}
	return out, nil
}

func widen[T uint8 | int8 | uint16 | int16 | uint32 | int32](s []T) []int64 {
	out := make([]int64, len(s))
	for i, x := range s {
		out[i] = int64(x)
	}
	return out
}
