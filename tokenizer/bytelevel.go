package tokenizer

// GPT-2's byte-level alphabet: every byte is shown as a printable rune so that
// byte-level vocabularies can be stored as text. Printable Latin-1 bytes stand for
// themselves; the rest are moved to U+0100 and up in byte order.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// byteLevelDecode maps a byte-level token back to its raw bytes. A token with a
// rune outside the alphabet (an added token such as "<|eot_id|>" is inside it, but
// a non-ASCII one need not be) contributes its UTF-8 bytes unchanged, as the
// tokenizers library does.
func byteLevelDecode(dst []byte, tok string) []byte {
	start := len(dst)
	for _, r := range tok {
		b, ok := runeToByte[r]
		if !ok {
			return append(dst[:start], tok...)
		}
		dst = append(dst, b)
	}
	return dst
}

// byteLevelEncode returns the byte-level spelling of raw bytes.
func byteLevelEncode(raw string) string {
	rs := make([]rune, len(raw))
	for i := 0; i < len(raw); i++ {
		rs[i] = byteToRune[raw[i]]
	}
	return string(rs)
}
