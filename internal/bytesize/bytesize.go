// Package bytesize reads byte sizes such as 512MiB or 2GB, for flags like
// --kv-budget, exactly: a size is computed in rational arithmetic, so that a value
// past the largest int64 is refused as too large rather than wrapping or being
// rounded into range.
package bytesize

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Max is the largest size: 2^63 − 1 bytes (8 EiB less one byte).
const Max = math.MaxInt64

var units = map[string]int64{"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15, "EB": 1e18,
	"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40, "PIB": 1 << 50, "EIB": 1 << 60}

const unitList = "B, KB, MB, GB, TB, PB, EB (powers of 1000) or KiB, MiB, GiB, TiB, PiB, EiB (powers of 1024)"

// Parse reads a size: a decimal number (1.5, 2e9) with an optional unit, case
// insensitive. A fraction of a byte is dropped; the size must be 1 to Max bytes.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num, unit := splitNumber(t)
	if num == "" {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (%s)", s, unitList)
	}
	u, ok := units[strings.ToUpper(strings.TrimSpace(unit))]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (want %s)", s, strings.TrimSpace(unit), unitList)
	}
	mant, exp, _ := strings.Cut(strings.ToLower(num), "e")
	e := 0
	if exp != "" {
		var err error
		// past ±400 a non-zero size is far outside 1…Max whatever its digits, and
		// big.Rat would build 10^exp first
		if e, err = strconv.Atoi(exp); err != nil || e > 400 || e < -400 {
			if strings.Trim(mant, "0.") == "" {
				return 0, fmt.Errorf("size %q: want at least 1 byte", s)
			}
			if strings.HasPrefix(exp, "-") {
				return 0, fmt.Errorf("size %q: want at least 1 byte", s)
			}
			return 0, fmt.Errorf("size %q: more than the largest size, %d bytes (8 EiB less one byte)", s, int64(Max))
		}
	}
	x, ok := new(big.Rat).SetString(mant + "e" + strconv.Itoa(e))
	if !ok {
		return 0, fmt.Errorf("size %q: %q is not a number", s, num)
	}
	x.Mul(x, new(big.Rat).SetInt64(u))
	bytes := new(big.Int).Quo(x.Num(), x.Denom()) // the fraction of a byte dropped
	switch {
	case bytes.Sign() < 1:
		return 0, fmt.Errorf("size %q: want at least 1 byte", s)
	case !bytes.IsInt64():
		return 0, fmt.Errorf("size %q: more than the largest size, %d bytes (8 EiB less one byte)", s, int64(Max))
	}
	return bytes.Int64(), nil
}

// splitNumber splits t into a leading unsigned decimal number (digits, one point,
// an optional exponent) and the rest.
func splitNumber(t string) (num, rest string) {
	i, digits := 0, 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9') {
		i, digits = i+1, digits+1
	}
	if i < len(t) && t[i] == '.' {
		i++
		for i < len(t) && (t[i] >= '0' && t[i] <= '9') {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return "", t
	}
	// an exponent only where digits follow ("2E" is a number and a unit)
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		j := i + 1
		if j < len(t) && (t[j] == '+' || t[j] == '-') {
			j++
		}
		k := j
		for k < len(t) && t[k] >= '0' && t[k] <= '9' {
			k++
		}
		if k > j {
			i = k
		}
	}
	return t[:i], t[i:]
}
