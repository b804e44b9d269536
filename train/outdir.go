package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// runMarker is the first file a run writes in its output folder. It names the
// method and the files its runs write there, so that a later run resumes and
// replaces only those, never a file the user put in the folder.
const runMarker = "kvfoot-run.json"

type marker struct {
	WrittenBy string   `json:"written_by"` // "kvfoot prulong" or "kvfoot duo"
	Files     []string `json:"files"`
}

// OutputFiles names the files a run of method ("prulong" or "duo") writes in its
// output folder, the marker included.
func OutputFiles(method string, trainWeights bool) ([]string, error) {
	files := []string{runMarker, checkpointName, "log.jsonl"}
	for _, x := range MaskSparsities {
		files = append(files, fmt.Sprintf("masks_sp%.1f.tsv", x))
	}
	switch method {
	case "prulong":
		files = append(files, "masks_soft.tsv", "log_alpha.tsv")
		if trainWeights {
			files = append(files, "model.safetensors")
		}
	case "duo":
		if trainWeights {
			return nil, errors.New("duo trains no weights")
		}
		files = append(files, "full_attention_heads.tsv", "config.json")
	default:
		return nil, fmt.Errorf("unknown training method %q", method)
	}
	return files, nil
}

// CheckOut reports whether a run of method may write its files in dir: none of
// them exists yet, or the folder's marker says a run of the same method wrote
// them (a run to resume), or force. It returns the files that exist and are the
// method's own.
func CheckOut(dir, method string, trainWeights, force bool) (own map[string]bool, err error) {
	files, err := OutputFiles(method, trainWeights)
	if err != nil {
		return nil, err
	}
	var m marker
	if f, err := os.Open(filepath.Join(dir, runMarker)); err == nil {
		// a marker is a few hundred bytes: a larger file is not one
		b, _ := io.ReadAll(io.LimitReader(f, 1<<16))
		f.Close()
		if json.Unmarshal(b, &m) != nil || m.WrittenBy != "kvfoot "+method {
			m = marker{} // another method's folder, or not kvfoot's marker at all
		}
	}
	own = map[string]bool{}
	for _, f := range files {
		st, err := os.Lstat(filepath.Join(dir, f))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("output folder: %w", err)
		case !st.Mode().IsRegular():
			return nil, fmt.Errorf("output folder %s: %s is not a regular file", dir, f)
		case slices.Contains(m.Files, f):
			own[f] = true
		case !force:
			return nil, fmt.Errorf("output folder %s: %s exists and was not written by a kvfoot %s run there; pass --force to replace it, or give another folder",
				dir, f, method)
		}
	}
	return own, nil
}

// claimOut checks c.Out for m's run and writes the marker; it returns the files
// that are the method's own from an earlier run (with force, the others are
// replaced as if they were not there).
func claimOut(c *RunConfig, m method) (map[string]bool, error) {
	own, err := CheckOut(c.Out, m.kind(), m.trainsWeights(), c.Force)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return nil, fmt.Errorf("output folder: %w", err)
	}
	files, _ := OutputFiles(m.kind(), m.trainsWeights())
	b, _ := json.MarshalIndent(marker{WrittenBy: "kvfoot " + m.kind(), Files: files}, "", "  ")
	err = writeAtomic(filepath.Join(c.Out, runMarker), func(w *bufio.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
	return own, err
}

// trimLog keeps the lines of a run's log.jsonl up to step, the checkpoint being
// resumed, so that the steps an interrupted run did after it are not logged twice.
func trimLog(path string, step int) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	var keep []byte
	for line := range bytes.Lines(data) {
		var l struct {
			Step *int `json:"step"`
		}
		if json.Unmarshal(line, &l) != nil || l.Step == nil || *l.Step > step {
			break // a torn last line, or past the checkpoint
		}
		keep = append(keep, line...)
	}
	return writeAtomic(path, func(w *bufio.Writer) error {
		_, err := w.Write(keep)
		return err
	})
}
