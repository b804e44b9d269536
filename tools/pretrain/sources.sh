#!/usr/bin/env bash
# Makes, on a machine with Go, what a pre-training run on the reference machine (Python,
# PyTorch, no Go) carries to make its data there:
#   tools/pretrain/sources.sh OUT_DIR        (.data: git ignores it)
# OUT_DIR/kvfoot.xz     static linux/amd64 kvfoot, stripped (-s -w), xz: `kvfoot tasks dump`
# OUT_DIR/gosrc.tar.xz  every non-testdata, non-vendor .go file of $GOROOT/src: haystacks,
#                       code text, and (tools/pretrain/gocomments.py) Go's comments as prose
# OUT_DIR/prose.tar.xz  natural text that ships with the OS and Go: $GOROOT/doc and
#                       README/CONTRIBUTING/SECURITY, /usr/share/common-licenses, and the
#                       README, NEWS and .md/.txt/.rst files of /usr/share/doc (decompressed,
#                       first 32 KiB of each, identical files once)
# Archives are byte-reproducible from the same inputs (sorted, owner 0, mtime 0); the
# script prints each file's size and SHA-256 for the record.
set -euo pipefail
out=${1:?usage: sources.sh OUT_DIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
goroot=$(go env GOROOT)
mkdir -p "$out"
tarx() { # DIR OUT: a reproducible tar.xz of the files listed (NUL-separated) on stdin
  tar -C "$1" --null -T - --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - | xz -6 -T0 >"$2.tmp"
  mv "$2.tmp" "$2"
}

(cd "$here" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w' -o "$out/kvfoot.tmp" ./cmd/kvfoot)
xz -6 -T0 -c "$out/kvfoot.tmp" >"$out/kvfoot.xz.tmp" && rm "$out/kvfoot.tmp" && mv "$out/kvfoot.xz.tmp" "$out/kvfoot.xz"

(cd "$goroot/src" && find . -name '*.go' -not -path '*/testdata/*' -not -path '*/vendor/*' -print0 | sort -z) |
  tarx "$goroot/src" "$out/gosrc.tar.xz"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/go-doc" "$stage/licenses" "$stage/os-doc"
cp "$goroot"/doc/*.html "$goroot"/doc/*.md "$stage/go-doc/"
for f in README.md CONTRIBUTING.md SECURITY.md; do [ -f "$goroot/$f" ] && cp "$goroot/$f" "$stage/go-doc/"; done
cp -L /usr/share/common-licenses/* "$stage/licenses/"
declare -A seen=()
while IFS= read -r -d '' f; do
  dest="$stage/os-doc/${f#./}"
  dest=${dest%.gz}
  # head closes the pipe early on long files: no pipefail in here
  text=$(set +o pipefail; zcat -f "/usr/share/doc/$f" 2>/dev/null | head -c 32768 | tr -d '\000')
  [ -n "$text" ] || continue
  sum=$(printf '%s' "$text" | sha256sum | cut -c1-64)
  [ -z "${seen[$sum]:-}" ] || continue
  seen[$sum]=1
  mkdir -p "$(dirname "$dest")"
  printf '%s\n' "$text" >"$dest"
done < <(cd /usr/share/doc && find . -type f \( -iname 'readme*' -o -iname 'news*' -o -name '*.md' -o -name '*.txt' \
  -o -name '*.rst' -o -name '*.md.gz' -o -name '*.txt.gz' \) -not -iname '*changelog*' -print0 | sort -z)
(cd "$stage" && find . -type f -print0 | sort -z) | tarx "$stage" "$out/prose.tar.xz"

for f in kvfoot.xz gosrc.tar.xz prose.tar.xz; do
  printf '%-14s %9d bytes  sha256 %s\n' "$f" "$(stat -c %s "$out/$f")" "$(sha256sum "$out/$f" | cut -c1-64)"
done
