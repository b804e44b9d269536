#!/usr/bin/env bash
# Unpacks what tools/pretrain/sources.sh made into the corpus folder that data.sh reads
# (on the reference machine: Python, no Go):
#   tools/pretrain/corpus.sh SOURCES_DIR CORPUS_DIR
# CORPUS_DIR/code   the Go sources, without $GOROOT/src/go (held out: kvfoot perplexity's text)
# CORPUS_DIR/prose  the OS's and Go's documents, and Go's comments (gocomments.py) as plain text
set -euo pipefail
src=${1:?usage: corpus.sh SOURCES_DIR CORPUS_DIR} dir=${2:?usage: corpus.sh SOURCES_DIR CORPUS_DIR}
for f in gosrc.tar.xz prose.tar.xz; do
  [ -f "$src/$f" ] || { echo "corpus.sh: $src/$f is missing (make it with tools/pretrain/sources.sh)" >&2; exit 1; }
done
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp/code" "$dir.tmp/prose"
tar -xJf "$src/gosrc.tar.xz" -C "$dir.tmp/code"
rm -rf "$dir.tmp/code/go"
tar -xJf "$src/prose.tar.xz" -C "$dir.tmp/prose"
python3 "$(dirname "$0")/gocomments.py" "$dir.tmp/code" "$dir.tmp/prose/go-comments"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
du -sh "$dir/code" "$dir/prose"
