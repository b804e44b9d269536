package eval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// store is the results file: the samples read at start and an append handle.
type store struct {
	path string
	f    *os.File
	done map[string]*Sample
}

// openStore reads the samples already in path and opens it for appending. A last
// line cut short by an interrupted run is dropped (the file is truncated to the last
// complete line); a malformed line elsewhere is an error.
func openStore(path string) (*store, error) {
	s := &store{path: path, done: map[string]*Sample{}}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	good := 0 // bytes of complete, valid lines
	for line, rest := 1, data; len(rest) > 0; line++ {
		nl := bytes.IndexByte(rest, '\n')
		var l []byte
		if nl < 0 {
			l, rest = rest, nil
		} else {
			l, rest = rest[:nl], rest[nl+1:]
		}
		var smp Sample
		if err := json.Unmarshal(l, &smp); err != nil || nl < 0 {
			if len(rest) == 0 {
				break // the interrupted last line
			}
			return nil, fmt.Errorf("results %s: line %d is not a result: %v", path, line, err)
		}
		s.done[smp.key()] = &smp
		good += len(l) + 1
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	if err := f.Truncate(int64(good)); err != nil {
		f.Close()
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	if _, err := f.Seek(int64(good), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	s.f = f
	return s, nil
}

// add appends one sample as a single write and syncs it, so that a result is either
// on disk whole or (if the run dies mid-write) dropped at the next start.
func (s *store) add(smp *Sample) error {
	s.done[smp.key()] = smp
	if s.f == nil {
		return nil
	}
	b, err := json.Marshal(smp)
	if err != nil {
		return err
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
	return s.f.Close()
}

func containsStop(text, stop string) bool { return stop != "" && strings.Contains(text, stop) }

// cutStop returns text up to (not including) the first stop string.
func cutStop(text, stop string) string {
	if i := strings.Index(text, stop); stop != "" && i >= 0 {
		return text[:i]
	}
	return text
}
