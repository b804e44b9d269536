package cuda

import "fmt"

// $KVFOOT_SCORES picks the kernels of AttentionScores when a device opens: mma (the default),
// the tensor-core ones, or f32, the float32 FMA kernels (scores.cu has both). On the H100 the
// tensor-core kernels score SnapKV's 64-row window over 32K entries in 0.157 ms against 17.3
// (110x; 218 against 2 TFLOP/s), and the eviction tests keep the CPU's sets with either.
const scoresEnv = "KVFOOT_SCORES"

// scoresChoice reads $KVFOOT_SCORES.
func scoresChoice(v string) (string, error) {
	switch v {
	case "", "mma":
		return "mma", nil
	case "f32":
		return v, nil
	}
	return "", fmt.Errorf("cuda: $%s=%q: want f32 (float32 score kernels) or mma (tensor-core score kernels)", scoresEnv, v)
}

// ScoreHead is what one KV head asks of AttentionScores (a kv.ScoreRequest placed on the pool):
// the softmax probabilities of the forward's rows [From, To), row i over the head's entries
// [First, Past+i+1), summed over the rows and averaged over the head's query heads, for its
// first Count entries. To ≤ From asks nothing.
type ScoreHead struct {
	From, To int
	Past     int // entries the head kept before the forward; its rows follow them in the pool
	First    int // the first entry every asked row sees: Past for a chunk-local softmax, else 0
	Count    int // entries scored: Past plus the forward's rows that are not patch rows
}

func (h ScoreHead) asked() bool { return h.To > h.From }

// scoreParams is the int per head fields hp of the scores kernels: from, to, past, first,
// count and the offset of the head's scores in the output.
const scoreParams = 6

// ScoresLen is the float32 values AttentionScores writes: the asked heads' Counts, one after the
// other in head order.
func ScoresLen(heads []ScoreHead) int {
	n := 0
	for _, h := range heads {
		if h.asked() {
			n += h.Count
		}
	}
	return n
}

// ScoresWorkBytes is the workspace AttentionScores needs, with either kernels: each asked row's
// softmax max and sum per query head, per split of the keys (scoreSplits), then the tensor-core
// kernels' log-sum-exp per row and query head.
func ScoresWorkBytes(hq int, heads []ScoreHead) int64 {
	splits, _ := scoreSplits(hq, heads)
	return scoresStatsBytes(hq, heads, splits) + int64(hq)*int64(maxRows(heads))*f32Bytes
}

func scoresStatsBytes(hq int, heads []ScoreHead, splits int) int64 {
	return int64(hq) * int64(maxRows(heads)) * 2 * f32Bytes * int64(splits)
}

const (
	scoresMMARows = 128 // rows a scores_mma_stats block takes, and entries a scores_mma_probs block
	scoresMMATile = 64  // entries a key tile of scores_mma_stats holds: one pool block
	// scores_mma_stats splits the keys until it has about this many blocks (a few waves of an
	// H100's 132 SMs): SnapKV's 64-row window is 2 blocks a KV head, each walking every key.
	scoresSplitBlocks = 512
	scoresSplitTiles  = 8 // key tiles a split takes at least, so that its Q load and merge pay off
)

// scoreSplits is how scores_mma_stats splits the key tiles the asked rows see: splits parts of
// per tiles each, tile t in part t/per. Fewer rows than fill the GPU get more splits.
func scoreSplits(hq int, heads []ScoreHead) (splits, per int) {
	rows, tiles := 0, 0
	for _, h := range heads {
		if h.asked() {
			rows = max(rows, h.To-h.From)
			tiles = max(tiles, (h.Past+h.To+scoresMMATile-1)/scoresMMATile) // row To−1 sees up to Past+To−1
		}
	}
	if rows == 0 {
		return 1, 0
	}
	blocks := (rows*(hq/len(heads)) + scoresMMARows - 1) / scoresMMARows * len(heads)
	splits = min((scoresSplitBlocks+blocks-1)/blocks, max(1, tiles/scoresSplitTiles))
	per = (tiles + splits - 1) / splits
	return (tiles + per - 1) / per, per // no empty last split
}

// scoresMMASharedBytes holds 128 rows of one operand and two stages of 64 rows of the other, padded.
func scoresMMASharedBytes(dim int) int { return (scoresMMARows + 2*64) * (dim + 8) * bf16Bytes }

func maxRows(heads []ScoreHead) int {
	rows := 0
	for _, h := range heads {
		if h.asked() {
			rows = max(rows, h.To-h.From)
		}
	}
	return rows
}

// scoreTable packs heads for the kernels, checking each request against a forward of n rows
// whose heads hold their Past entries and the n rows within maxBlocks blocks.
func scoreTable(heads []ScoreHead, n, maxBlocks int) ([]int32, error) {
	hp := make([]int32, 0, scoreParams*len(heads))
	off := 0
	for g, h := range heads {
		if !h.asked() {
			hp = append(hp, 0, 0, 0, 0, 0, 0)
			continue
		}
		switch {
		case h.From < 0 || h.To > n:
			return nil, fmt.Errorf("cuda: attention scores: head %d asks rows [%d, %d) of a forward of %d", g, h.From, h.To, n)
		case h.Past < 0 || h.First < 0 || h.First > h.Past:
			return nil, fmt.Errorf("cuda: attention scores: head %d: first entry %d, past %d: want 0 ≤ first ≤ past", g, h.First, h.Past)
		case h.Count < 1 || h.Count > h.Past+n:
			return nil, fmt.Errorf("cuda: attention scores: head %d scores %d entries of %d", g, h.Count, h.Past+n)
		case h.Past+n > maxBlocks*BlockEntries:
			return nil, fmt.Errorf("cuda: attention scores: head %d holds %d entries, its block table %d", g, h.Past+n, maxBlocks*BlockEntries)
		}
		hp = append(hp, int32(h.From), int32(h.To), int32(h.Past), int32(h.First), int32(h.Count), int32(off))
		off += h.Count
	}
	return hp, nil
}

// AttentionScores writes into out (float32, ScoresLen(heads)) the probabilities heads ask for,
// head after head, of a forward of n queries q ([n][HQ][Dim] bf16) whose keys the pool already
// holds after each head's Past entries (Append before, and score before the attention: its
// output may overwrite q). a's lengths are not read. work holds ScoresWorkBytes. Heads asking
// nothing launch nothing. $KVFOOT_SCORES, read at Open, picks the kernels.
func (d *Device) AttentionScores(out, q Buffer, p KVPool, a AttentionHeads, n int, heads []ScoreHead, work Buffer) error {
	return d.attentionScores(d.scores, out, q, p, a, n, heads, work)
}

// attentionScores is AttentionScores on the kernels kernels (scoresChoice) asks for.
func (d *Device) attentionScores(kernels string, out, q Buffer, p KVPool, a AttentionHeads, n int, heads []ScoreHead, work Buffer) error {
	if err := a.check("attention scores", p); err != nil {
		return err
	}
	if len(heads) != a.HKV {
		return fmt.Errorf("cuda: attention scores: %d requests for %d KV heads", len(heads), a.HKV)
	}
	if g := a.HQ / a.HKV; g > 8 {
		return fmt.Errorf("cuda: attention scores: %d query heads per KV head; the kernels take up to 8", g)
	}
	if n <= 0 {
		return fmt.Errorf("cuda: attention scores: a forward of %d queries", n)
	}
	hp, err := scoreTable(heads, n, a.MaxBlocks)
	if err != nil {
		return err
	}
	total, rows := ScoresLen(heads), maxRows(heads)
	if total == 0 {
		return nil
	}
	if err := need("attention scores queries", q, n*a.HQ*p.Dim, bf16Bytes); err != nil {
		return err
	}
	if err := need("attention scores output", out, total, f32Bytes); err != nil {
		return err
	}
	if err := need("attention scores workspace", work, int(ScoresWorkBytes(a.HQ, heads)), 1); err != nil {
		return err
	}
	most := 0
	for _, h := range heads {
		if h.asked() {
			most = max(most, h.Count)
		}
	}
	staged, err := d.StageInts(hp)
	if err != nil {
		return err
	}
	scale := softmaxScaleLog2(a.Scale)
	if kernels == "mma" {
		splits, per := scoreSplits(a.HQ, heads)
		rowBlocks := (rows*(a.HQ/a.HKV) + scoresMMARows - 1) / scoresMMARows
		stats := grid2(rowBlocks, a.HKV, scoresThreads)
		stats.grid[2] = uint32(splits)
		stats.shared = uint32(scoresMMASharedBytes(p.Dim))
		lse, err := work.Slice(scoresStatsBytes(a.HQ, heads, splits), int64(a.HQ)*int64(rows)*f32Bytes)
		if err != nil {
			return err
		}
		if err := d.launch(fmt.Sprintf("scores_mma_stats_d%d", p.Dim), stats, work, q, p.K, a.Tables, staged,
			int32(a.MaxBlocks), int32(rows), int32(a.HQ), int32(a.HKV), int32(per), scale); err != nil {
			return err
		}
		if err := d.launch("scores_mma_lse", grid2(rowBlocks, a.HKV, scoresThreads), lse, work, staged,
			int32(rows), int32(a.HQ), int32(a.HKV), int32(splits)); err != nil {
			return err
		}
		probs := grid2((most+scoresMMARows-1)/scoresMMARows, a.HKV, scoresThreads)
		probs.shared = stats.shared
		return d.launch(fmt.Sprintf("scores_mma_probs_d%d", p.Dim), probs, out, lse, q, p.K, a.Tables, staged,
			int32(a.MaxBlocks), int32(rows), int32(a.HQ), int32(a.HKV), scale)
	}
	if err := d.launch(fmt.Sprintf("scores_stats_d%d", p.Dim), grid2(rows, a.HKV, scoresThreads), work, q, p.K, a.Tables,
		staged, int32(a.MaxBlocks), int32(rows), int32(a.HQ), int32(a.HKV), scale); err != nil {
		return err
	}
	return d.launch(fmt.Sprintf("scores_probs_d%d", p.Dim), grid2((most+scoresThreads-1)/scoresThreads, a.HKV, scoresThreads),
		out, work, q, p.K, a.Tables, staged, int32(a.MaxBlocks), int32(rows), int32(a.HQ), int32(a.HKV), scale)
}

const scoresThreads = 128 // SCORES_THREADS in scores.cu
