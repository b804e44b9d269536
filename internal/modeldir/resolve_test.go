package modeldir

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	commit = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	other  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func manifest(digest string) string {
	return `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:` +
		strings.Repeat("f", 64) + `"},{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:` + digest + `"}]}`
}

// stores builds a fake Ollama store and Hugging Face cache and points the
// environment at them.
func stores(t *testing.T) (ollama, hub string) {
	root := t.TempDir()
	ollama, hub = filepath.Join(root, "ollama"), filepath.Join(root, "hf", "hub")
	t.Setenv("OLLAMA_MODELS", ollama)
	t.Setenv("HF_HOME", filepath.Join(root, "hf"))
	t.Setenv("HF_HUB_CACHE", "")
	write(t, filepath.Join(ollama, "manifests/registry.ollama.ai/library/qwen3/0.6b"), manifest(digest))
	write(t, filepath.Join(ollama, "manifests/registry.ollama.ai/me/tiny/latest"), manifest(digest))
	write(t, filepath.Join(ollama, "manifests/registry.ollama.ai/library/broken/latest"), manifest(strings.Repeat("1", 64)))
	write(t, filepath.Join(ollama, "blobs/sha256-"+digest), "GGUF\x03\x00\x00\x00")
	repo := filepath.Join(hub, "models--org--name")
	write(t, filepath.Join(repo, "refs/main"), commit+"\n")
	write(t, filepath.Join(repo, "refs/v1"), other)
	write(t, filepath.Join(repo, "snapshots", commit, "config.json"), "{}")
	write(t, filepath.Join(repo, "snapshots", other, "config.json"), "{}")
	one := filepath.Join(hub, "models--org--one-GGUF")
	write(t, filepath.Join(one, "refs/main"), commit)
	write(t, filepath.Join(one, "snapshots", commit, "m-Q4_K_M.gguf"), "GGUF")
	two := filepath.Join(hub, "models--org--two-GGUF")
	write(t, filepath.Join(two, "refs/main"), commit)
	write(t, filepath.Join(two, "snapshots", commit, "a.gguf"), "GGUF")
	write(t, filepath.Join(two, "snapshots", commit, "b.gguf"), "GGUF")
	return ollama, hub
}

func TestResolve(t *testing.T) {
	ollama, hub := stores(t)
	blob := filepath.Join(ollama, "blobs", "sha256-"+digest)
	snap := filepath.Join(hub, "models--org--name", "snapshots")
	local := t.TempDir()
	write(t, filepath.Join(local, "m", "config.json"), "{}")
	write(t, filepath.Join(local, "x.gguf"), "GGUF....")
	write(t, filepath.Join(local, "x.bin"), "PK")
	t.Chdir(local)
	for _, c := range []struct {
		arg, store, path string
		kind             Kind
	}{
		{"m", "path", "m", Folder},
		{"x.gguf", "path", "x.gguf", GGUF},
		{"qwen3:0.6b", "ollama", blob, GGUF},
		{"me/tiny", "ollama", blob, GGUF},
		{"registry.ollama.ai/me/tiny:latest", "ollama", blob, GGUF},
		{"org/name", "huggingface", filepath.Join(snap, commit), Folder},
		{"org/name@v1", "huggingface", filepath.Join(snap, other), Folder},
		{"org/name@" + other, "huggingface", filepath.Join(snap, other), Folder},
		{"org/one-GGUF", "huggingface", filepath.Join(hub, "models--org--one-GGUF", "snapshots", commit, "m-Q4_K_M.gguf"), GGUF},
	} {
		s, err := Resolve(c.arg)
		if err != nil {
			t.Errorf("%s: %v", c.arg, err)
			continue
		}
		if s.Store != c.store || s.Path != c.path || s.Kind != c.kind || s.Name != c.arg {
			t.Errorf("%s: got %+v, want store %s path %s kind %v", c.arg, s, c.store, c.path, c.kind)
		}
	}
	for _, c := range []struct{ arg, want string }{
		{"qwen3", "no manifest " + filepath.Join(ollama, "manifests/registry.ollama.ai/library/qwen3/latest")},
		{"broken", "missing or not GGUF"},
		{"org/two-GGUF", "several .gguf files (a.gguf, b.gguf)"},
		{"org/none", "no " + filepath.Join(hub, "models--org--none", "refs", "main")},
		{"org/name@v2", "refs/v2"},
		{"x.bin", "not GGUF"},
		{".", "a folder without config.json"},
		{"../../etc:passwd", "not a Hugging Face repo id"},
		{"", "empty"},
	} {
		_, err := Resolve(c.arg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error containing %q", c.arg, err, c.want)
		}
	}
}

func TestList(t *testing.T) {
	stores(t)
	var got []string
	for _, s := range List() {
		got = append(got, s.Store+" "+s.Name+" "+s.Kind.String())
	}
	want := []string{
		"ollama me/tiny:latest gguf", "ollama qwen3:0.6b gguf",
		"huggingface org/name folder", "huggingface org/name@v1 folder", "huggingface org/one-GGUF gguf",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List\n got %q\nwant %q", got, want)
	}
}
