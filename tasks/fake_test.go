package tasks

// byteTok is a test tokenizer: one token per byte.
type byteTok struct{}

func (byteTok) Encode(s string) []int {
	ids := make([]int, len(s))
	for i := range len(s) {
		ids[i] = int(s[i])
	}
	return ids
}

func (byteTok) Decode(ids []int) string {
	b := make([]byte, 0, len(ids))
	for _, id := range ids {
		b = append(b, byte(id))
	}
	return string(b)
}

// pairTok is a test tokenizer whose tokens merge across seams like BPE's: scanning
// left to right, two lowercase letters or two digits in a row form one token.
type pairTok struct{}

func mergeable(a, b byte) bool {
	return ('a' <= a && a <= 'z' && 'a' <= b && b <= 'z') || ('0' <= a && a <= '9' && '0' <= b && b <= '9')
}

func (pairTok) Encode(s string) []int {
	var ids []int
	for i := 0; i < len(s); i++ {
		if i+1 < len(s) && mergeable(s[i], s[i+1]) {
			ids = append(ids, 256+int(s[i])*256+int(s[i+1]))
			i++
			continue
		}
		ids = append(ids, int(s[i]))
	}
	return ids
}

func (pairTok) Decode(ids []int) string {
	var b []byte
	for _, id := range ids {
		if id < 256 {
			b = append(b, byte(id))
		} else {
			id -= 256
			b = append(b, byte(id/256), byte(id%256))
		}
	}
	return string(b)
}
