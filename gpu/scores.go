package gpu

import (
	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/kv"
)

// The attention probabilities token-eviction policies ask for (kv.ScoreRequest), computed on
// the GPU from the pool's bf16 keys as the CPU's storage defines them: per stored head, the
// asked rows' softmax over all they see (Local: over the forward's own entries only), summed
// over the rows and averaged over the head's query heads, for its Past + Tokens entries (patch
// rows are scored against but not scored).

// scoreHeads returns in dst the kernels' view of a's requests, one per stored head.
func scoreHeads(dst []cuda.ScoreHead, a *kv.AttendArgs) []cuda.ScoreHead {
	dst = dst[:0]
	for g, r := range a.Req {
		if r.To <= r.From {
			dst = append(dst, cuda.ScoreHead{})
			continue
		}
		h := cuda.ScoreHead{From: r.From, To: r.To, Past: a.Past[g], Count: a.Past[g] + a.Tokens}
		if r.Local {
			h.First = a.Past[g]
		}
		dst = append(dst, h)
	}
	return dst
}

// queueScores queues the kernels computing the scores layer's heads ask for and returns where
// they will be, or false when no head asks. The heads' rows must be in the pool (Append).
func (s *storage) queueScores(layer int, q compute.Buf, a *kv.AttendArgs) (cuda.Buffer, bool) {
	s.req = scoreHeads(s.req, a)
	total := cuda.ScoresLen(s.req)
	if total == 0 {
		for g := range a.Scores {
			a.Scores[g] = a.Scores[g][:0]
		}
		return cuda.Buffer{}, false
	}
	outBytes := (int64(total)*4 + 255) &^ 255
	buf := s.grow(&s.mem.scores, outBytes+cuda.ScoresWorkBytes(s.shape.Heads, s.req)) // before staging: it may wait
	res := cuda.Buffer{Ptr: buf.Ptr, Bytes: outBytes}
	work := cuda.Buffer{Ptr: buf.Ptr + uint64(outBytes), Bytes: buf.Bytes - outBytes}
	heads := s.stageTables(layer, func(_ int, held int32) int32 { return held })
	check(s.d.AttentionScores(res, dev(q), s.mem.pool, heads, a.N, s.req, work))
	return res, true
}

// collectScores waits for the scores queueScores queued in res and hands each asked head its own.
func (s *storage) collectScores(layer int, res cuda.Buffer, a *kv.AttendArgs) {
	s.scores = append(s.scores[:0], make([]float32, cuda.ScoresLen(s.req))...)
	check(cuda.Download(s.d, s.scores, res))
	off := 0
	for g, h := range s.req {
		a.Scores[g] = a.Scores[g][:0]
		if h.To > h.From {
			a.Scores[g] = byEntry(a.Scores[g], s.scores[off:off+h.Count], s.pages.Places(s.head(layer, g)))
			off += h.Count
		}
	}
}

// byEntry appends to dst the scores of a head's entries from the kernels' scores by place
// (places: the head's cuda.PagedCache.Places, nil when entry i is at place i). The entries the
// forward appended, past the places' end at the time, are at their own places.
func byEntry(dst, byPlace []float32, places []int32) []float32 {
	if places == nil {
		return append(dst, byPlace...)
	}
	for i := range byPlace {
		p := i
		if i < len(places) {
			p = int(places[i])
		}
		dst = append(dst, byPlace[p])
	}
	return dst
}
