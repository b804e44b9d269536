package modeldir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Kind is how a resolved model is stored.
type Kind int

const (
	// Folder is a Hugging Face model folder: config.json and safetensors weights.
	Folder Kind = iota
	// GGUF is a single GGUF file.
	GGUF
)

func (k Kind) String() string {
	if k == GGUF {
		return "gguf"
	}
	return "folder"
}

// Source is a model found on this machine.
type Source struct {
	Name  string // how to name it to --model
	Store string // "path", "ollama" or "huggingface"
	Path  string // the folder or the .gguf file
	Kind  Kind
}

// OllamaDir is Ollama's model store: $OLLAMA_MODELS, else ~/.ollama/models.
func OllamaDir() string {
	if d := os.Getenv("OLLAMA_MODELS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ollama", "models")
}

// HFHubDir is the Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
func HFHubDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface", "hub")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

// Resolve turns a --model argument into a model on this machine, never downloading
// anything: a folder with config.json or a .gguf file; else a Hugging Face repo id
// org/name[@revision] in the hub cache; else an Ollama model name
// [[host/]namespace/]name[:tag] in Ollama's store, resolved through its manifest to
// the model blob. The error says where each reading was looked for.
func Resolve(arg string) (Source, error) {
	if arg == "" {
		return Source{}, errors.New("--model: empty")
	}
	if st, err := os.Stat(arg); err == nil {
		switch {
		case st.IsDir() && isModel(arg):
			return Source{Name: arg, Store: "path", Path: arg, Kind: Folder}, nil
		case st.IsDir():
			return Source{}, fmt.Errorf("--model %s: a folder without config.json (or model.gguf)", arg)
		case isGGUF(arg):
			return Source{Name: arg, Store: "path", Path: arg, Kind: GGUF}, nil
		}
		return Source{}, fmt.Errorf("--model %s: a file that is not GGUF (no GGUF magic)", arg)
	}
	var tried []string
	if repo, rev, ok := parseHFRepo(arg); ok {
		s, err := resolveHF(repo, rev)
		if err == nil {
			s.Name = arg
			return s, nil
		}
		tried = append(tried, "Hugging Face cache: "+err.Error())
	}
	if ref, ok := parseOllama(arg); ok {
		s, err := resolveOllama(ref)
		if err == nil {
			s.Name = arg
			return s, nil
		}
		tried = append(tried, "Ollama store: "+err.Error())
	}
	if len(tried) == 0 {
		return Source{}, fmt.Errorf("--model %q: no such file or folder, and not a Hugging Face repo id (org/name[@rev]) or an Ollama model name (name[:tag])", arg)
	}
	return Source{}, fmt.Errorf("--model %q: no such file or folder; %s", arg, strings.Join(tried, "; "))
}

// Locate is the model path a --model argument names: the built-in model's folder
// when it is empty (Find), else what Resolve finds (a folder or a GGUF file).
func Locate(arg string) (string, error) {
	if arg == "" {
		return Find("")
	}
	s, err := Resolve(arg)
	return s.Path, err
}

func isGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = f.Read(magic[:])
	return err == nil && string(magic[:]) == "GGUF"
}

// nameRe is what a repo, namespace, model name or tag may hold; it keeps a name
// from reaching outside the stores through "..", slashes or absolute paths.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

func parseHFRepo(arg string) (repo, rev string, ok bool) {
	repo, rev, _ = strings.Cut(arg, "@")
	org, name, found := strings.Cut(repo, "/")
	if !found || !nameRe.MatchString(org) || !nameRe.MatchString(name) {
		return "", "", false
	}
	if rev == "" {
		rev = "main"
	}
	if !nameRe.MatchString(rev) {
		return "", "", false
	}
	return repo, rev, true
}

var commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

func resolveHF(repo, rev string) (Source, error) {
	dir := filepath.Join(HFHubDir(), "models--"+strings.ReplaceAll(repo, "/", "--"))
	commit := rev
	if !commitRe.MatchString(rev) {
		ref := filepath.Join(dir, "refs", rev)
		b, err := os.ReadFile(ref)
		if err != nil {
			return Source{}, fmt.Errorf("no %s", ref)
		}
		commit = strings.TrimSpace(string(b))
		if !commitRe.MatchString(commit) {
			return Source{}, fmt.Errorf("%s: %q is not a commit hash", ref, commit)
		}
	}
	snap := filepath.Join(dir, "snapshots", commit)
	if isModel(snap) {
		return Source{Store: "huggingface", Path: snap, Kind: Folder}, nil
	}
	ggufs, _ := filepath.Glob(filepath.Join(snap, "*.gguf"))
	switch len(ggufs) {
	case 0:
		return Source{}, fmt.Errorf("%s has neither config.json nor a .gguf file", snap)
	case 1:
		return Source{Store: "huggingface", Path: ggufs[0], Kind: GGUF}, nil
	}
	for i := range ggufs {
		ggufs[i] = filepath.Base(ggufs[i])
	}
	return Source{}, fmt.Errorf("%s holds several .gguf files (%s): pass the file's path", snap, strings.Join(ggufs, ", "))
}

// ollamaRef is a model name split as Ollama stores its manifests.
type ollamaRef struct{ host, namespace, name, tag string }

func parseOllama(arg string) (ollamaRef, bool) {
	r := ollamaRef{host: "registry.ollama.ai", namespace: "library", tag: "latest"}
	path, tag, hasTag := strings.Cut(arg, ":")
	if hasTag {
		r.tag = tag
	}
	parts := strings.Split(path, "/")
	switch len(parts) {
	case 1:
		r.name = parts[0]
	case 2:
		r.namespace, r.name = parts[0], parts[1]
	case 3:
		r.host, r.namespace, r.name = parts[0], parts[1], parts[2]
	default:
		return r, false
	}
	for _, s := range []string{r.host, r.namespace, r.name, r.tag} {
		if !nameRe.MatchString(s) {
			return r, false
		}
	}
	return r, true
}

var digestRe = regexp.MustCompile(`^sha256:([0-9a-f]{64})$`)

func resolveOllama(r ollamaRef) (Source, error) {
	store := OllamaDir()
	manifest := filepath.Join(store, "manifests", r.host, r.namespace, r.name, r.tag)
	raw, err := os.ReadFile(manifest)
	if err != nil {
		return Source{}, fmt.Errorf("no manifest %s", manifest)
	}
	var m struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return Source{}, fmt.Errorf("manifest %s: %v", manifest, err)
	}
	for _, l := range m.Layers {
		if l.MediaType != "application/vnd.ollama.image.model" {
			continue
		}
		d := digestRe.FindStringSubmatch(l.Digest)
		if d == nil {
			return Source{}, fmt.Errorf("manifest %s: model layer digest %q, want sha256:<64 hex digits>", manifest, l.Digest)
		}
		blob := filepath.Join(store, "blobs", "sha256-"+d[1])
		if !isGGUF(blob) {
			return Source{}, fmt.Errorf("manifest %s: model blob %s is missing or not GGUF", manifest, blob)
		}
		return Source{Store: "ollama", Path: blob, Kind: GGUF}, nil
	}
	return Source{}, fmt.Errorf("manifest %s: no layer of type application/vnd.ollama.image.model", manifest)
}

// List returns every model in the Ollama store and the Hugging Face hub cache that
// Resolve would find by name, sorted by store and name. Entries that do not resolve
// (a model without weights, a half-finished download) are left out.
func List() []Source {
	var out []Source
	mdir := filepath.Join(OllamaDir(), "manifests")
	filepath.WalkDir(mdir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(mdir, path)
		p := strings.Split(filepath.ToSlash(rel), "/")
		if len(p) != 4 {
			return nil
		}
		r := ollamaRef{host: p[0], namespace: p[1], name: p[2], tag: p[3]}
		s, err := resolveOllama(r)
		if err != nil {
			return nil
		}
		s.Name = r.name + ":" + r.tag
		switch {
		case r.host != "registry.ollama.ai":
			s.Name = r.host + "/" + r.namespace + "/" + s.Name
		case r.namespace != "library":
			s.Name = r.namespace + "/" + s.Name
		}
		out = append(out, s)
		return nil
	})
	repos, _ := filepath.Glob(filepath.Join(HFHubDir(), "models--*--*"))
	for _, dir := range repos {
		repo := strings.Replace(strings.TrimPrefix(filepath.Base(dir), "models--"), "--", "/", 1)
		refs, _ := os.ReadDir(filepath.Join(dir, "refs"))
		for _, ref := range refs {
			if ref.IsDir() {
				continue
			}
			s, err := resolveHF(repo, ref.Name())
			if err != nil {
				continue
			}
			s.Name = repo
			if ref.Name() != "main" {
				s.Name += "@" + ref.Name()
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Store != out[j].Store {
			return out[i].Store > out[j].Store // ollama before huggingface
		}
		return out[i].Name < out[j].Name
	})
	return out
}
