package tasks

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Short common words, so that keys cost few tokens (RULER draws keys from a
// dictionary of adjective-noun pairs; these lists play that role).
var adjectives = strings.Fields(`able acid angry bad big bitter black blue bold brave
brief bright broad brown busy calm cheap clean clear cold cool dark deep dry early
easy empty fair fast fat fine firm flat free fresh full glad gold good gray great
green happy hard heavy high hot huge kind large late lazy light long loud low mad
mild new nice odd old pale plain poor proud pure quick quiet rare raw red rich rough
round sad safe sharp short shy sick slow small smart soft sour strong sweet tall thin
tiny tired true warm weak wet white wide wild wise young`)

var nouns = strings.Fields(`apple arm baby bag ball band bank bar bath bed bell bird
boat body bone book boot box boy bread brick bridge brush bus cake camp car card cat
chair chest clock cloud coat coin cow cup desk dog door dress drum duck ear egg eye
farm fish flag floor flower fork frog game gate girl glass goat hat heart hill horse
house key king kite lamp leaf lion lock map milk moon mouse nest net nose oil owl
pan park pen pig pipe plane plate pot queen rain ring road rock roof rope salt sand
ship shoe sock star stone sun table tent tiger town toy train tree wall watch wheel
window wolf`)

// iclClasses are the classes of icl_labels: a text is a few words of one class. The
// labels shown to the model are random integers drawn per instance, so the mapping
// from class to label can only be learnt from the demonstrations.
var iclClasses = [][]string{
	strings.Fields("apple pear plum grape lemon melon peach cherry mango lime"),
	strings.Fields("red blue green yellow purple orange pink brown black white"),
	strings.Fields("dog cat horse cow sheep goat pig mouse rabbit fox"),
	strings.Fields("hammer saw drill wrench nail screw chisel file clamp ruler"),
	strings.Fields("rain snow wind storm fog frost hail cloud sun thunder"),
	strings.Fields("piano drum flute violin guitar harp horn bell organ cello"),
	strings.Fields("iron gold silver copper tin lead zinc steel brass nickel"),
	strings.Fields("river lake sea ocean pond stream creek bay gulf canal"),
	strings.Fields("shirt coat hat sock shoe dress scarf glove belt boot"),
	strings.Fields("bread rice soup cheese butter meat salad cake pie milk"),
}

// key returns a random adjective-noun key.
func (g *gen) wordKey() string {
	return adjectives[g.rng.IntN(len(adjectives))] + "-" + nouns[g.rng.IntN(len(nouns))]
}

// distinct draws n distinct strings from draw.
func distinct(n int, draw func() string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, n)
	for len(out) < n {
		s := draw()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// number returns a random 7-digit number, as RULER's values.
func (g *gen) number() string { return fmt.Sprint(1000000 + g.rng.IntN(9000000)) }

// hexID returns n random lowercase hex digits. kvfoot's short stand-in for RULER's and
// JSON KV's UUIDs: a 36-character UUID costs a 4K-vocabulary tokenizer some 25 tokens.
func hexID(rng *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rng.IntN(16)]
	}
	return string(b)
}

// varName returns n random uppercase letters (RULER's variable names have 5).
func (g *gen) varName(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('A' + g.rng.IntN(26))
	}
	return string(b)
}
