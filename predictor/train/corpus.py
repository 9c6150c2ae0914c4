#!/usr/bin/python3
"""Assemble the lmfs LM training corpus from extracted Debian (and npm) packages.

Usage (see predictor/train/README.md for the whole procedure):

    /usr/bin/python3 corpus.py --src /tmp/corpus/x --debs /tmp/corpus/debs --out /tmp/corpus/out

It reads the packages unpacked under --src (one folder per package, as made by
`dpkg-deb -x PKG.deb SRC/PKG`; npm packages under SRC/npm/NAME), takes files in
md5(path) order until each source's cap, decodes .gz/.dz/.bz2 members, converts
images to binary PPM (needs python3-pil) and writes

    OUT/train.bin, OUT/val.bin   the documents, concatenated (each ends with "\n\n")
    OUT/val_index.tsv            kind, offset, length of every validation document
    OUT/manifest.tsv             split, kind, package, version, file, transform, bytes, sha256

The validation split comes from packages that are not used for training.
Everything is deterministic: the same packages give the same bytes.
"""
import argparse
import bz2
import fnmatch
import glob
import gzip
import hashlib
import io
import os
import subprocess
import sys

MB = 1 << 20

# (split, kind, package, root (relative to the package folder), include globs,
#  exclude substrings, cap in MB, transform)
# transform: "" (bytes as they are), "crlf" (LF -> CRLF: Debian ships almost no
# CRLF text, the public corpus has some), "ppm" (image decoded to binary PPM),
# "gcide" (first cap bytes of the dictionary).
SOURCES = [
    # ---- prose, English
    ("train", "prose", "dict-gcide", "usr/share/dictd", ["*.dict.dz"], [], 25, ""),
    ("train", "prose", "wordnet-base", "usr/share/wordnet", ["data.*"], [], 10, ""),
    ("train", "prose", "linux-doc-6.1", "usr/share/doc/linux-doc-6.1/Documentation", ["*.rst.gz", "*.txt.gz", "*.rst", "*.txt"], ["/translations/"], 40, ""),
    ("train", "prose", "python3.11-doc", "usr/share/doc/python3.11/html/_sources", ["*.txt"], [], 14, ""),
    ("train", "prose", "perl-doc", "usr/share/perl", ["*.pod"], [], 14, ""),
    ("train", "prose", "manpages", "usr/share/man", ["*.gz"], [], 4, ""),
    ("train", "prose", "manpages-dev", "usr/share/man", ["*.gz"], [], 8, ""),
    ("train", "prose", "git-doc", "usr/share/doc/git-doc", ["*.txt"], [], 6, ""),
    ("train", "prose", "fortunes", "usr/share/games/fortunes", ["*"], [".dat", ".u8"], 4, ""),
    ("train", "prose", "jargon-text", "usr/share/doc/jargon-text", ["jargon.txt.gz"], [], 2, "crlf"),
    ("train", "prose", "npm/spdx-license-list", "package/licenses", ["*.json"], [], 8, ""),
    # ---- prose, other languages (translated man pages and handbooks)
    ("train", "prose-l10n", "manpages-fr", "usr/share/man", ["*.gz"], [], 8, ""),
    ("train", "prose-l10n", "manpages-de", "usr/share/man", ["*.gz"], [], 12, ""),
    ("train", "prose-l10n", "manpages-es", "usr/share/man", ["*.gz"], [], 6, ""),
    ("train", "prose-l10n", "manpages-ja", "usr/share/man", ["*.gz"], [], 12, ""),
    ("train", "prose-l10n", "manpages-ru", "usr/share/man", ["*.gz"], [], 6, ""),
    ("train", "prose-l10n", "manpages-pl", "usr/share/man", ["*.gz"], [], 6, ""),
    ("train", "prose-l10n", "manpages-zh", "usr/share/man", ["*.gz"], [], 12, ""),
    ("train", "prose-l10n", "manpages-uk", "usr/share/man", ["*.gz"], [], 5, "crlf"),
    ("train", "html-l10n", "debian-reference-ja", "usr/share/debian-reference", ["*.html"], [], 4, ""),
    ("train", "html-l10n", "debian-reference-de", "usr/share/debian-reference", ["*.html"], [], 4, ""),
    ("train", "html-l10n", "debian-reference-fr", "usr/share/debian-reference", ["*.html"], [], 4, "crlf"),
    ("train", "html-l10n", "debian-reference-zh-cn", "usr/share/debian-reference", ["*.html"], [], 4, ""),
    ("train", "html-l10n", "debian-reference-es", "usr/share/debian-reference", ["*.html"], [], 4, ""),
    ("train", "html-l10n", "debian-reference-pt", "usr/share/debian-reference", ["*.html"], [], 4, ""),
    ("train", "html-l10n", "debian-handbook", "usr/share/doc/debian-handbook/html", ["*.html"], ["/en-US/", "/it-IT/"], 60, ""),
    # ---- code
    ("train", "code-go", "golang-1.19-src", "usr/share/go-1.19/src", ["*.go"], ["/testdata/"], 40, ""),
    ("train", "code-rust", "rust-src", "usr/src/rustc-1.63.0/library", ["*.rs"], [], 30, ""),
    ("train", "code-c", "linux-source-6.1", "@linux", ["*.c", "*.h"], [], 40, ""),
    ("train", "code-cpp", "libboost1.74-dev", "usr/include/boost", ["*.hpp"], ["/preprocessed/"], 30, ""),
    ("train", "code-java", "openjdk-17-source", "@jdk", ["*.java"], [], 30, ""),
    ("train", "code-js", "node-typescript", "usr/share/nodejs/typescript/lib", ["*.d.ts", "tsc.js"], [], 16, ""),
    ("train", "code-python", "libpython3.11-stdlib", "usr/lib/python3.11", ["*.py"], [], 9, "crlf"),
    # ---- markup, structured, tabular, logs
    ("train", "html", "linux-doc-6.1", "usr/share/doc/linux-doc-6.1/html", ["*.html"], [], 16, ""),
    ("train", "html", "python3.11-doc", "usr/share/doc/python3.11/html", ["*.html"], ["/_sources/"], 16, ""),
    ("train", "html", "sqlite3-doc", "usr/share/doc/sqlite3", ["*.html"], [], 16, "crlf"),
    ("train", "xml", "debian-handbook", "usr/share/doc/debian-handbook/html", ["*.svg"], [], 8, ""),
    ("train", "xml", "iso-codes", "usr/share/xml/iso-codes", ["*.xml"], [], 3, ""),
    ("train", "json", "iso-codes", "usr/share/iso-codes/json", ["*.json"], [], 3, ""),
    ("train", "json", "npm/@mdn+browser-compat-data", "package", ["data.json"], [], 20, ""),
    ("train", "tabular", "unicode-data", "usr/share/unicode", ["*.txt", "*.txt.bz2"], [], 24, ""),
    ("train", "tabular", "tzdata", "usr/share/zoneinfo", ["*.tab", "tzdata.zi"], [], 1, ""),
    ("train", "tabular", "publicsuffix", "usr/share/publicsuffix", ["*.dat"], [], 1, ""),
    ("train", "log", "fail2ban", "usr/lib/python3/dist-packages/fail2ban/tests/files/logs", ["*"], [], 1, ""),
    ("train", "log", "linux-source-6.1", "usr/share/doc/linux-source-6.1", ["changelog.Debian.gz"], [], 4, ""),
    # ---- binary media
    ("train", "audio", "hydrogen-drumkits", "usr/share/hydrogen/data/drumkits", ["*.wav", "*.aiff"], [], 12, ""),
    ("train", "image", "gnome-backgrounds", "usr/share/backgrounds", ["*.webp", "*.png", "*.jpg"], [], 16, "ppm"),
    ("train", "image", "desktop-base", "usr/share/desktop-base", ["*.png"], [], 6, "ppm"),
    # ---- validation: other packages of the same kinds
    ("val", "prose", "dict-foldoc", "usr/share/dictd", ["*.dict.dz"], [], 3, ""),
    ("val", "prose", "nodejs-doc", "usr/share/doc/nodejs/api", ["*.md.gz"], [], 2, ""),
    ("val", "prose-l10n", "manpages-it", "usr/share/man", ["*.gz"], [], 1, ""),
    ("val", "html-l10n", "debian-reference-it", "usr/share/debian-reference", ["*.html"], [], 1, ""),
    ("val", "html", "postgresql-doc-15", "usr/share/doc/postgresql-doc-15/html", ["*.html"], [], 2, ""),
    ("val", "code-python", "libpython3.11-testsuite", "usr/lib/python3.11/test", ["*.py"], [], 2, ""),
    ("val", "xml", "osinfo-db", "usr/share/osinfo", ["*.xml"], [], 2, ""),
    ("val", "audio", "gnome-audio", "usr/share/sounds", ["*.wav"], [], 1, ""),
]

MAX_FILE = 1 * MB  # a larger file contributes one chunk of this size (cut at a newline)


def h(s):
    return hashlib.md5(s.encode()).hexdigest()


def read_member(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz") or path.endswith(".dz"):
        return gzip.decompress(data)
    if path.endswith(".bz2"):
        return bz2.decompress(data)
    return data


def to_ppm(data):
    from PIL import Image  # python3-pil
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, hgt = im.size
    cw, ch = min(w, 1024), min(hgt, 768)
    x0, y0 = (w - cw) // 2, (hgt - ch) // 2
    im = im.crop((x0, y0, x0 + cw, y0 + ch))
    return b"P6\n%d %d\n255\n" % (cw, ch) + im.tobytes()


def inner_tree(src, pkg, which, tmp):
    """Unpacks the source archives shipped inside linux-source and openjdk-17-source."""
    dest = os.path.join(tmp, which)
    if os.path.isdir(dest):
        return dest
    os.makedirs(dest)
    if which == "@linux":
        tarball = glob.glob(os.path.join(src, pkg, "usr/src/linux-source-*.tar.xz"))[0]
        dirs = ["kernel", "mm", "fs", "net", "lib", "include/linux", "drivers/net", "drivers/usb", "sound"]
        top = os.path.basename(tarball)[:-len(".tar.xz")]
        subprocess.run(["tar", "xJf", tarball, "-C", dest] + [top + "/" + d for d in dirs], check=True)
    else:
        z = os.path.join(src, pkg, "usr/lib/jvm/openjdk-17/lib/src.zip")
        subprocess.run(["unzip", "-q", z, "java.base/*", "java.desktop/*", "java.sql/*", "-d", dest], check=True)
    return dest


def version_of(debs, pkg):
    if pkg.startswith("npm/"):
        tgz = glob.glob(os.path.join(os.path.dirname(debs), "x", "npm", "*.tgz"))
        name = pkg[4:].replace("@", "").replace("+", "-")
        for t in tgz:
            b = os.path.basename(t)
            if b.startswith(name + "-"):
                return "npm:" + b[len(name) + 1:-4]
        return "npm:?"
    d = glob.glob(os.path.join(debs, pkg + "_*.deb"))
    if not d:
        return "?"
    return subprocess.run(["dpkg-deb", "-f", d[0], "Version"], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--debs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every cap (for small test corpora)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tmp = os.path.join(a.out, "tmp")
    outs = {s: open(os.path.join(a.out, s + ".bin"), "wb") for s in ("train", "val")}
    pos = {"train": 0, "val": 0}
    manifest = open(os.path.join(a.out, "manifest.tsv"), "w")
    manifest.write("split\tkind\tpackage\tversion\tfile\ttransform\tbytes\tsha256\n")
    vindex = open(os.path.join(a.out, "val_index.tsv"), "w")
    vindex.write("kind\toffset\tlength\n")
    versions = {}
    for split, kind, pkg, root, inc, exc, cap, transform in SOURCES:
        cap = int(cap * MB * a.scale)
        if root.startswith("@"):
            base = inner_tree(a.src, pkg, root, tmp)
        else:
            base = os.path.join(a.src, pkg, root)
        if not os.path.isdir(base):
            sys.exit("corpus: %s not found: unpack the package %s first (see README)" % (base, pkg))
        files = []
        for dirpath, _, names in os.walk(base):
            for n in names:
                p = os.path.join(dirpath, n)
                rel = os.path.relpath(p, base)
                if not any(fnmatch.fnmatch(n, g) for g in inc):
                    continue
                if any(e in "/" + rel for e in exc) or os.path.islink(p):
                    continue
                files.append(rel)
        files.sort(key=lambda r: h(pkg + "/" + r))
        if pkg not in versions:
            versions[pkg] = version_of(a.debs, pkg.split("/")[0] if not pkg.startswith("npm/") else pkg)
        used = 0
        for rel in files:
            if used >= cap:
                break
            try:
                data = read_member(os.path.join(base, rel))
                if transform == "ppm":
                    data = to_ppm(data)
            except Exception as e:  # a broken member is skipped, and said
                print("skip %s/%s: %s" % (pkg, rel, e), file=sys.stderr)
                continue
            few = len(files) <= 8  # a source of a few big files (a dictionary, one JSON) is read whole
            if kind.startswith("code") and len(data) > 256 * 1024 and not few:
                continue  # generated sources (register tables) would dominate
            if len(data) > MAX_FILE and kind not in ("audio", "image") and not few:
                off = int(h(rel), 16) % (len(data) - MAX_FILE)
                nl = data.find(b"\n", off)
                off = nl + 1 if 0 <= nl < off + 4096 else off
                data = data[off:off + MAX_FILE]
            if len(data) > cap - used:
                if kind in ("audio", "image"):
                    continue
                data = data[: cap - used]
                nl = data.rfind(b"\n")
                data = data[: nl + 1] if nl > 0 else data
            if transform == "crlf" and int(h(rel), 16) % 2 == 0:
                data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                tr = "crlf"
            else:
                tr = transform
            if not data:
                continue
            doc = data + b"\n\n"
            outs[split].write(doc)
            if split == "val":
                vindex.write("%s\t%d\t%d\n" % (kind, pos[split], len(doc)))
            pos[split] += len(doc)
            used += len(data)
            manifest.write("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n" % (
                split, kind, pkg, versions[pkg], os.path.join(root, rel), tr, len(data),
                hashlib.sha256(data).hexdigest()))
        print("%-5s %-11s %-30s %8.1f MB (%d files)" % (split, kind, pkg, used / MB, len(files)), file=sys.stderr)
    for f in outs.values():
        f.close()
    manifest.close()
    vindex.close()
    print("train %d bytes, val %d bytes" % (pos["train"], pos["val"]), file=sys.stderr)


if __name__ == "__main__":
    main()
