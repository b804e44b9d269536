package tasks

import (
	"math"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"The  Cat's hat, a BIG one!", "cats hat big one"},
		{"an-apple", "anapple"},
		{"  An apple\tand THE pear ", "apple and pear"},
		{"théâtre: a b", "théâtre b"},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Hand-computed scores.
func TestScore(t *testing.T) {
	gold := "code\tname\tqty\nAB12\tbook\t5\nCD34\tcat\t7\nEF56\tdog\t9"
	for _, c := range []struct {
		metric, pred string
		golds        []string
		want         float64
	}{
		{ExactMatch, " 42", []string{"42"}, 1},
		{ExactMatch, " 42 3", []string{"42"}, 0},
		{ExactMatch, "The answer.", []string{"x", "answer"}, 1},
		{SubstringExactMatch, `The value is "DD-44".`, []string{"dd-44"}, 1},
		{SubstringExactMatch, `dd-4`, []string{"dd-44"}, 0},
		{RulerRecall, "7654321, 1234567", []string{"1234567", "7654321", "1111111", "2222222"}, 0.5},
		{RulerRecall, "ABCDE bcdef", []string{"abcde", "BCDEF", "XXXXX"}, 2.0 / 3},
		{RulerRecall, "", []string{"1"}, 0},
		// P = 1/2, R = 1/3: F1 = 2·(1/6)/(5/6) = 0.4.
		{RowF1, "```tsv\ncode\tname\tqty\nAB12\tbook\t5\nCD34\tcow\t7\n```", []string{gold}, 0.4},
		// Every gold row, in another order, cells normalised: 1.
		{RowF1, "```tsv\nc\tn\tq\nEF56\tDog\t9\nAB 12\tThe Book\t5\nCD34\tcat.\t7\n```", []string{gold}, 1},
		// A last row with too few columns is dropped: P = 1, R = 1/3, F1 = 0.5.
		{RowF1, "code\tname\tqty\nAB12\tbook\t5\nCD34\tcat", []string{gold}, 0.5},
		// A middle row with too few columns becomes N/A: P = R = 2/3.
		{RowF1, "h1\th2\th3\nAB12\tbook\t5\nbad\nCD34\tcat\t7", []string{gold}, 2.0 / 3},
		// Header with another number of columns: 0.
		{RowF1, "code\tname\nAB12\tbook", []string{gold}, 0},
		{RowF1, "```tsv\ncode\tname\tqty\n```", []string{gold}, 0},
		{"unknown", "x", []string{"x"}, 0},
		{ExactMatch, "x", nil, 0},
	} {
		if got := Score(c.metric, c.pred, c.golds); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s(%q, %q) = %v, want %v", c.metric, c.pred, c.golds, got, c.want)
		}
	}
}
