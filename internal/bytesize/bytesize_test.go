package bytesize

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for s, want := range map[string]int64{
		"1": 1, "512MiB": 512 << 20, "2GiB": 2 << 30, "2gib": 2 << 30, " 3 KB ": 3000, "1.5KiB": 1536, "2e9": 2e9, "2e9B": 2e9,
		"1.5e3": 1500, "0.5KB": 500, "1.9B": 1, "7EiB": 7 << 60, "8EB": 8e18, "4096K": 4 << 20,
		"9223372036854775807": Max, "9223372036854775807.9": Max,
		"8EiB": 0, "16EiB": 0, "1e30": 0, "9223372036854775808": 0, "1e999999": 0, "9.3EB": 0, // too large
		"0": -1, "0.1": -1, "1e-999999": -1, "0e999999": -1, "0B": -1, // below a byte
	} {
		got, err := Parse(s)
		switch {
		case want == 0:
			if err == nil || !strings.Contains(err.Error(), "more than the largest size, 9223372036854775807 bytes") {
				t.Errorf("%q: %d, %v; want the too-large error", s, got, err)
			}
		case want < 0:
			if err == nil || !strings.Contains(err.Error(), "want at least 1 byte") {
				t.Errorf("%q: %d, %v; want the at-least-one-byte error", s, got, err)
			}
		case err != nil || got != want:
			t.Errorf("%q: %d, %v; want %d", s, got, err, want)
		}
	}
	for s, want := range map[string]string{"": "want a number", "GiB": "want a number", "-1GiB": "want a number",
		"2 bytes": `unknown unit "bytes"`, "1/3": `unknown unit "/3"`, "NaN": "want a number", "Inf": "want a number", "0x10": `unknown unit "x10"`, "2E": `unknown unit "E"`} {
		if _, err := Parse(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", s, err, want)
		}
	}
}
