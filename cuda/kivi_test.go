package cuda

import (
	"strings"
	"testing"
)

// A quantized row's parts and bytes, by hand: codes of Dim·Bits/8 bytes for the key and the
// value, a float32 minimum and scale per value group, an int32 key group slot, padded to 16.
func TestKIVILayout(t *testing.T) {
	for _, c := range []struct {
		l                                  KIVILayout
		code, groups, row, stored, groupBy int
	}{
		{KIVILayout{Dim: 128, Bits: 4, Group: 32}, 64, 4, 176, 160, 1024},   // 64+64+16+16+4 = 164 → 176
		{KIVILayout{Dim: 64, Bits: 2, Group: 32}, 16, 2, 64, 48, 512},       // 16+16+8+8+4 = 52 → 64
		{KIVILayout{Dim: 128, Bits: 8, Group: 128}, 128, 1, 272, 264, 1024}, // 128+128+4+4+4 = 268 → 272
		{KIVILayout{Dim: 64, Bits: 4, Group: 24}, 32, 3, 96, 88, 512},       // 32+32+12+12+4 = 92 → 96
		{KIVILayout{Dim: 128, Bits: 2, Group: 1000}, 32, 1, 80, 72, 1024},   // 32+32+4+4+4 = 76 → 80
	} {
		if err := c.l.Check(); err != nil {
			t.Fatalf("%+v: %v", c.l, err)
		}
		if got := [...]int{c.l.CodeBytes(), c.l.ValueGroups(), c.l.RowBytes(), c.l.StoredRowBytes(), c.l.GroupBytes()}; got != [...]int{c.code, c.groups, c.row, c.stored, c.groupBy} {
			t.Errorf("%+v: code bytes, value groups, row, stored row and group bytes %v, want %v", c.l, got,
				[...]int{c.code, c.groups, c.row, c.stored, c.groupBy})
		}
		if ref := c.l.groupRef(); ref+4 > c.l.RowBytes() || ref != 2*c.code+8*c.groups {
			t.Errorf("%+v: the group slot at byte %d of a %d-byte row", c.l, ref, c.l.RowBytes())
		}
	}
}

func TestKIVILayoutRefusals(t *testing.T) {
	for _, c := range []struct {
		l    KIVILayout
		want string
	}{
		{KIVILayout{Dim: 96, Bits: 4, Group: 32}, "head dimension 96"},
		{KIVILayout{Dim: 64, Bits: 3, Group: 32}, "3 bits"},
		{KIVILayout{Dim: 64, Bits: 4, Group: 0}, "group of 0"},
		{KIVILayout{Dim: 64, Bits: 2, Group: 6}, "split bytes"},
		{KIVILayout{Dim: 64, Bits: 4, Group: 3}, "split bytes"},
	} {
		if err := c.l.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.l, err, c.want)
		}
	}
	// a group of whole bytes, or one spanning the row, is taken
	for _, l := range []KIVILayout{{Dim: 64, Bits: 8, Group: 3}, {Dim: 64, Bits: 2, Group: 100}, {Dim: 128, Bits: 8, Group: 1}, {Dim: 128, Bits: 2, Group: 4}} {
		if err := l.Check(); err != nil {
			t.Errorf("%+v: %v", l, err)
		}
	}
}

// ViewSource tells quantized rows (themselves) from KV pool slots (−1−slot), and gives ViewSkip
// for no slot of a pool whose slot count fits an int32.
func TestViewSource(t *testing.T) {
	if ViewSource(true, 0) != 0 || ViewSource(true, 7) != 7 || ViewSource(false, 0) != -1 || ViewSource(false, 7) != -8 {
		t.Fatal("ViewSource: rows are themselves, slot s is -1-s")
	}
	if ViewSource(false, 1<<31-2) == ViewSkip {
		t.Fatal("the largest slot reads as ViewSkip")
	}
}
