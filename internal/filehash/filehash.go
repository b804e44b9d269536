// Package filehash computes the SHA-256 of files that name what a result was made
// with (weights, tokenizer, data), reading each file once: the digest is cached by
// path, size and modification time under the user's cache folder, so that hashing a
// model of many gigabytes costs one read, not one per run.
package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// cacheFile is where digests are remembered; "" disables the cache (tests set it).
var cacheFile = defaultCacheFile()

func defaultCacheFile() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "kvfoot", "sha256.json")
}

type entry struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	SHA256  string `json:"sha256"`
}

var mu sync.Mutex

// File returns the hex SHA-256 of the file at path.
func File(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	mu.Lock()
	defer mu.Unlock()
	cache := readCache()
	if e, ok := cache[abs]; ok && e.Size == st.Size() && e.ModTime == st.ModTime().UnixNano() {
		return e.SHA256, nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	cache[abs] = entry{Size: st.Size(), ModTime: st.ModTime().UnixNano(), SHA256: sum}
	writeCache(cache) // a cache that cannot be written only costs a re-read next time
	return sum, nil
}

// Files returns one hex SHA-256 over the given files in order: the digest of their
// digests, each written with its file's base name, so that renaming or reordering
// files changes it and moving the folder does not.
func Files(paths ...string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		sum, err := File(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %s\n", sum, filepath.Base(p))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readCache() map[string]entry {
	m := map[string]entry{}
	if cacheFile == "" {
		return m
	}
	b, err := os.ReadFile(cacheFile)
	if err == nil && json.Unmarshal(b, &m) != nil {
		m = map[string]entry{} // a damaged cache is rebuilt
	}
	return m
}

func writeCache(m map[string]entry) {
	if cacheFile == "" {
		return
	}
	b, err := json.Marshal(m)
	if err != nil || os.MkdirAll(filepath.Dir(cacheFile), 0o755) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(cacheFile), ".sha256-*.json")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), cacheFile) != nil {
		os.Remove(tmp.Name())
	}
}
