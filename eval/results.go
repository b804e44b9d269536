package eval

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// resultsFormat is the version of a results line; every line carries it in the field
// "kvfoot_results", which is how a kvfoot results file is told from any other file. A
// sample that failed on the device is written as failedFormat, so that a kvfoot that does
// not know failures refuses the file instead of scoring the sample 0.
const (
	resultsFormat = 1
	failedFormat  = 2
)

// resultsPrefixes begin every line this version writes (Sample's first field).
var resultsPrefixes = [][]byte{
	fmt.Appendf(nil, `{"kvfoot_results":%d,`, resultsFormat),
	fmt.Appendf(nil, `{"kvfoot_results":%d,`, failedFormat),
}

// sampleID is what a run asks for: a method on one sample of one task and length.
type sampleID struct {
	method, task  string
	length, index int
}

func (s *Sample) id() sampleID { return sampleID{s.Method, s.Task, s.Length, s.Index} }

func (id sampleID) String() string {
	return fmt.Sprintf("%s on %s, length %d, sample %d", id.method, id.task, id.length, id.index)
}

// stored is one result read from the file, with its line number.
type stored struct {
	path string
	line int
	s    *Sample
}

// store is the results file: the results read at start, by sample, and an append
// handle. Nothing in the file is rewritten: a run only appends.
type store struct {
	path  string
	f     *os.File
	byID  map[sampleID][]stored
	good  int64 // bytes up to the end of the last whole result
	torn  bool  // bytes after good are a line cut short by an interrupted write
	noEOL bool  // the last result lacks its newline
	warn  io.Writer
	// created: the file did not exist; Close removes it if nothing was added
	created, added bool
	// retryFailed: a failed sample read from a file is not taken as done (Config.RetryFailed)
	retryFailed bool
}

// CheckResults reports whether path can take results (it is new, empty or a kvfoot
// results file without damage, and writable), without changing it: a command calls it
// before any work, so that a bad results file is refused at once.
func CheckResults(path string) error {
	s, err := openStore(path, nil)
	if err != nil {
		return err
	}
	return s.Close()
}

// openStore reads the results in path (which may be absent or empty) and opens it for
// appending. Anything but a kvfoot results file is refused untouched, and so is a
// damaged line anywhere but at the very end (reported with its line number). The
// exception is the one failure an interrupted run leaves: a last line without its
// newline that is the beginning of a result; it is reported on warn and cut off before
// the first new result is appended, and its sample runs again.
func openStore(path string, warn io.Writer) (*store, error) {
	s := &store{path: path, byID: map[sampleID][]stored{}, warn: warn}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	s.created = errors.Is(err, os.ErrNotExist)
	if err != nil && !s.created {
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	if err := s.read(path, data, warn); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	// one writer a file: two runs appending the same samples would each run them
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("results %s is being written by another kvfoot process; wait for it to end or give another file", path)
	}
	s.f = f
	return s, nil
}

// readOther adds the results of another file (a shard's) to the store, read-only: a
// last line cut short there is its writer's to repair, and is skipped.
func (s *store) readOther(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("results %s: %w", path, err)
	}
	o := &store{byID: s.byID}
	return o.read(path, data, nil)
}

// read parses a results file's data into the store (see openStore).
func (s *store) read(path string, data []byte, warn io.Writer) error {
	var damaged []int
	var firstErr error
	results := false // a result was read
	for line, off := 1, 0; off < len(data); line++ {
		nl := bytes.IndexByte(data[off:], '\n')
		end := len(data)
		if nl >= 0 {
			end = off + nl
		}
		l := data[off:end]
		off = end + 1
		if len(bytes.TrimSpace(l)) == 0 {
			if nl < 0 { // trailing blanks: the next result starts on a line of its own
				s.good, s.noEOL = int64(end), true
			}
			continue
		}
		smp, perr := parseResult(l)
		switch {
		case perr == nil:
			results = true
			s.byID[smp.id()] = append(s.byID[smp.id()], stored{path, line, smp})
			s.good, s.noEOL = int64(min(off, len(data))), nl < 0
		case !results && len(damaged) == 0 && !bytes.HasPrefix(l, []byte(`{"kvfoot_results":`)):
			return fmt.Errorf("results %s is not a kvfoot results file (line %d does not begin with {\"kvfoot_results\":…}); it was left untouched: give a new or empty file", path, line)
		case nl < 0 && len(damaged) == 0 && slices.ContainsFunc(resultsPrefixes, func(p []byte) bool { return bytes.HasPrefix(l, p) }):
			s.torn = true
			if warn != nil {
				fmt.Fprintf(warn, "results %s: line %d is cut short (an interrupted write); it will be cut off and its sample run again\n", path, line)
			}
		default:
			if firstErr == nil {
				firstErr = perr
			}
			damaged = append(damaged, line)
		}
	}
	if len(damaged) > 0 {
		return fmt.Errorf("results %s: %s damaged (first: %v); the file was left untouched: repair or remove %s",
			path, lineList(damaged), firstErr, pronoun(len(damaged)))
	}
	return nil
}

// counts reports whether st stands for its sample: a failed sample read from a file does
// not while failed samples are retried.
func (s *store) counts(st stored) bool {
	return !(s.retryFailed && st.line > 0 && st.s.Failed != "")
}

// has reports whether the store holds a result for the sample.
func (s *store) has(id sampleID) bool { return slices.ContainsFunc(s.byID[id], s.counts) }

// best is the result that stands for a sample: the first that ran, else the first
// failure; nil if none counts.
func (s *store) best(sts []stored) *Sample {
	var failed *Sample
	for _, st := range sts {
		switch {
		case !s.counts(st):
		case st.s.Failed == "":
			return st.s
		case failed == nil:
			failed = st.s
		}
	}
	return failed
}

// samples are the store's results, each sample once (the first that ran, else the first
// failure: a results file that holds a sample twice, or two files that both do, count it
// once), in a fixed order.
func (s *store) samples() []*Sample {
	out := make([]*Sample, 0, len(s.byID))
	for _, sts := range s.byID {
		if b := s.best(sts); b != nil {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *Sample) int {
		return cmp.Or(strings.Compare(a.Method, b.Method), strings.Compare(a.Task, b.Task), cmp.Compare(a.Length, b.Length), cmp.Compare(a.Index, b.Index))
	})
	return out
}

// ResultsFiles are a study folder's results files: results.jsonl and the shards'.
func ResultsFiles(dir string) []string {
	var out []string
	if _, err := os.Stat(ResultsPath(dir)); err == nil {
		out = append(out, ResultsPath(dir))
	}
	shards, _ := filepath.Glob(filepath.Join(dir, shardDir, "*.jsonl"))
	slices.Sort(shards)
	return append(out, shards...)
}

// parseResult reads one line as a results line of this format.
func parseResult(l []byte) (*Sample, error) {
	var smp Sample
	dec := json.NewDecoder(bytes.NewReader(l))
	if err := dec.Decode(&smp); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("text after the result")
	}
	switch {
	case smp.Format == 0:
		return nil, errors.New(`no "kvfoot_results" field`)
	case smp.Format != resultsFormat && smp.Format != failedFormat:
		return nil, fmt.Errorf("results format %d, this kvfoot reads %d and %d (a failed sample)", smp.Format, resultsFormat, failedFormat)
	case (smp.Format == failedFormat) != (smp.Failed != ""):
		return nil, fmt.Errorf(`results format %d with "failed" %q: a failed sample is format %d, and only it`, smp.Format, smp.Failed, failedFormat)
	case smp.Method == "" || smp.Task == "":
		return nil, errors.New("no method or task")
	}
	return &smp, nil
}

func lineList(lines []int) string {
	var b strings.Builder
	if len(lines) == 1 {
		b.WriteString("line ")
	} else {
		b.WriteString("lines ")
	}
	for i, l := range lines {
		if i == 10 {
			fmt.Fprintf(&b, " and %d more", len(lines)-10)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, l)
	}
	if len(lines) == 1 {
		b.WriteString(" is")
	} else {
		b.WriteString(" are")
	}
	return b.String()
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// check refuses results in the file for a sample of this run that were made with other
// settings: a results file holds one setting per sample, so that every reader of it
// aggregates like results.
func (s *store) check(id sampleID, settings map[string]string) error {
	for _, st := range s.byID[id] {
		if d := diffSettings(st.s.Settings, settings); d != "" {
			return s.mismatch(st, d)
		}
	}
	return nil
}

// lookup returns the stored result of the sample made with exactly what smp holds
// (its settings, instance seed, generation budget and prompt), nil if there is none,
// and an error if the file holds the sample made differently.
func (s *store) lookup(smp *Sample) (*Sample, error) {
	for _, st := range s.byID[smp.id()] {
		o := st.s
		d := diffSettings(o.Settings, smp.Settings)
		switch {
		case d != "":
		case o.Seed != smp.Seed:
			d = fmt.Sprintf("instance seed %d, this run %d", o.Seed, smp.Seed)
		case o.MaxNew != smp.MaxNew:
			d = fmt.Sprintf("generation budget %d tokens, this run %d", o.MaxNew, smp.MaxNew)
		case o.Prompt != smp.Prompt:
			d = "another prompt (prompt_sha256 differs: the task generator, the data or the tokenizer changed)"
		}
		if d != "" {
			return nil, s.mismatch(st, d)
		}
	}
	return s.best(s.byID[smp.id()]), nil
}

func (s *store) mismatch(st stored, diff string) error {
	return fmt.Errorf("results %s line %d: %s was made with %s; refusing to mix settings in one results file: use another file, or remove the line to run the sample again",
		st.path, st.line, st.s.id(), diff)
}

// diffSettings describes the first setting (in key order) whose value differs, or "".
func diffSettings(old, cur map[string]string) string {
	keys := make([]string, 0, len(old)+len(cur))
	for k := range old {
		keys = append(keys, k)
	}
	for k := range cur {
		if _, ok := old[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	show := func(m map[string]string, k string) string {
		if v, ok := m[k]; ok {
			return v
		}
		return "(not recorded)"
	}
	for _, k := range keys {
		if old[k] != cur[k] {
			return fmt.Sprintf("%s %s, this run %s", k, show(old, k), show(cur, k))
		}
	}
	return ""
}

// add appends one result as a single write and syncs it, so that a result is either
// on disk whole or (if the run dies mid-write) reported and cut at the next start.
func (s *store) add(smp *Sample) error {
	smp.Format = resultsFormat
	if smp.Failed != "" {
		smp.Format = failedFormat
	}
	s.byID[smp.id()] = append(s.byID[smp.id()], stored{s.path, 0, smp})
	if s.f == nil {
		return nil
	}
	s.added = true
	b, err := json.Marshal(smp)
	if err != nil {
		return err
	}
	if s.torn {
		if err := s.f.Truncate(s.good); err != nil {
			return fmt.Errorf("results %s: %w", s.path, err)
		}
		s.torn = false
	}
	if s.noEOL {
		b = append([]byte{'\n'}, b...)
		s.noEOL = false
	}
	if _, err := s.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("results %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("results %s: %w", s.path, err)
	}
	return nil
}

func (s *store) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	if s.created && !s.added {
		os.Remove(s.path)
	}
	return err
}

// promptHash is the hex SHA-256 of a prompt's token ids (int64 little-endian).
func promptHash(ids []int) string {
	h := sha256.New()
	var b [8]byte
	for _, id := range ids {
		binary.LittleEndian.PutUint64(b[:], uint64(id))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func containsStop(text, stop string) bool { return stop != "" && strings.Contains(text, stop) }

// cutStop returns text up to (not including) the first stop string.
func cutStop(text, stop string) string {
	if i := strings.Index(text, stop); stop != "" && i >= 0 {
		return text[:i]
	}
	return text
}
