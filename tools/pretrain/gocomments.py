"""Extract the comments of Go sources as plain text: natural English that ships with Go.

    python3 gocomments.py SRC_DIR OUT_DIR

For every directory under SRC_DIR holding .go files (testdata skipped), OUT_DIR gets one
text file (the directory's path with / as _) of its comment paragraphs, in file order:
runs of // lines and /* */ blocks that start a line, with the comment markers removed.
Build directives (//go:, // +build, //line, //export) and licence headers are dropped, and
so are paragraphs shorter than 40 characters (mostly commented-out code or labels). The
output depends only on the files' contents, so the same Go release gives the same text on
every machine (the reference machine makes it from the carried sources; it has no Go).
"""
import os
import re
import sys

DIRECTIVE = re.compile(r"^//(go:|line |export |sys |\s*\+build)")
MIN_PARAGRAPH = 40


def comments(text):
    """Yields the comment paragraphs of one Go file."""
    run = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("//"):
            if not DIRECTIVE.match(s):
                body = s[2:]
                run.append(body[1:] if body.startswith(" ") else body)
            i += 1
            continue
        if run:
            yield run
            run = []
        if s.startswith("/*"):
            block = []
            rest = s[2:]
            while True:
                end = rest.find("*/")
                if end >= 0:
                    block.append(rest[:end])
                    break
                block.append(rest)
                i += 1
                if i == len(lines):
                    break
                rest = lines[i]
            yield block
        i += 1
    if run:
        yield run


def paragraphs(lines):
    """Splits a comment on blank lines; drops licence headers and short paragraphs."""
    out, cur = [], []
    for l in lines + [""]:
        if l.strip():
            cur.append(l.rstrip())
            continue
        p = "\n".join(cur).strip("\n")
        cur = []
        if len(p) < MIN_PARAGRAPH or ("Copyright" in p and "license" in p.lower()):
            continue
        out.append(p)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gocomments.py SRC_DIR OUT_DIR")
    src, out = sys.argv[1], sys.argv[2]
    if not os.path.isdir(src):
        sys.exit(f"{src}: not a directory")
    os.makedirs(out, exist_ok=True)
    files = total = 0
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "testdata" and not d.startswith("."))
        text = []
        for n in sorted(names):
            if not n.endswith(".go"):
                continue
            with open(os.path.join(root, n), encoding="utf-8", errors="replace") as f:
                for c in comments(f.read()):
                    text.extend(paragraphs(c))
        if not text:
            continue
        rel = os.path.relpath(root, src)
        name = "root" if rel == "." else rel.replace(os.sep, "_")
        body = "\n\n".join(text) + "\n"
        tmp = os.path.join(out, name + ".txt.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, os.path.join(out, name + ".txt"))
        files += 1
        total += len(body.encode())
    if files == 0:
        sys.exit(f"{src}: no Go comments found")
    print(f"{out}: {files} files, {total / 1e6:.1f} MB of comment text", flush=True)


if __name__ == "__main__":
    main()
