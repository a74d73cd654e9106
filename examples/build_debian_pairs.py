"""Builds (query, positive) text pairs from Debian package descriptions, split by source package.

query    = a package's short description ("Real-time strategy game of ancient warfare")
positive = its long description (the paragraphs below it)

Everything comes from the package lists apt keeps on this machine; nothing else is downloaded.
Long descriptions live in apt's ``Translation-en`` files, which Debian's Docker images skip
(``Acquire::Languages "none"``), so fetch them once::

    apt-get update -o Acquire::Languages=en
    python examples/build_debian_pairs.py --out /work/scratch/training/debian

Output: ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (one ``{"query", "positive", "source",
"package"}`` object per line) and ``stats.json``. Binary packages built from one source package
share most of their description (Debian's convention: one common paragraph, then a sentence about
the binary package), so pairs are split by ``Source:`` (``sha1(source) % 10``: bucket 0 = test,
1 = dev, 2-9 = train) and near-duplicates never cross the split. Exact duplicate pairs, pairs
whose query or positive repeats an earlier pair's, and positives shorter than 40 characters are
dropped. The output depends only on apt's lists (package order is sorted), not on the run.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
from typing import Iterator

LISTS = "/var/lib/apt/lists"
APT_HELPER = "/usr/lib/apt/apt-helper"


def records(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as {field: value}; continuation lines are kept with their newlines."""
    for para in text.split("\n\n"):
        rec: dict[str, str] = {}
        key = None
        for line in para.split("\n"):
            if not line:
                continue
            if line[0] in " \t" and key is not None:
                rec[key] += "\n" + line
            else:
                key, _, value = line.partition(":")
                rec[key] = value.strip()
        if rec:
            yield rec


def split_description(value: str) -> tuple[str, str]:
    """(short, long) of a Description field: the long part's ' .' lines separate paragraphs."""
    first, _, rest = value.partition("\n")
    paras, cur = [], []
    for line in rest.split("\n"):
        line = line[1:] if line.startswith(" ") else line
        if line.strip() == ".":
            paras.append(" ".join(cur))
            cur = []
        else:
            cur.append(line.strip())
    paras.append(" ".join(cur))
    long = "\n".join(re.sub(r"\s+", " ", p).strip() for p in paras if p.strip())
    return first.strip(), long


def read_list(path: str) -> str:
    """A (compressed) apt list file as text, decompressed by apt itself."""
    out = subprocess.run([APT_HELPER, "cat-file", path], check=True, capture_output=True)
    return out.stdout.decode("utf-8", errors="replace")


def long_descriptions() -> dict[str, str]:
    """Description-md5 -> long description, from every Translation-en list."""
    files = sorted(glob.glob(os.path.join(LISTS, "*Translation-en*")))
    if not files:
        sys.exit("no Translation-en lists in /var/lib/apt/lists: run `apt-get update -o Acquire::Languages=en` first")
    out: dict[str, str] = {}
    for f in files:
        for rec in records(read_list(f)):
            md5, desc = rec.get("Description-md5"), rec.get("Description-en")
            if md5 and desc:
                out.setdefault(md5, split_description(desc)[1])
    return out


def packages() -> Iterator[dict[str, str]]:
    """Package records of `apt-cache dumpavail` (the candidate version of every package)."""
    text = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    yield from records(text)


def bucket(source: str) -> int:
    return int(hashlib.sha1(source.encode()).hexdigest(), 16) % 10


def build(min_chars: int = 40) -> tuple[list[dict[str, str]], dict[str, int]]:
    longs = long_descriptions()
    rows = []
    stats = {"packages": 0, "no_long_description": 0, "short_positive": 0, "duplicate": 0}
    for rec in sorted(packages(), key=lambda r: r.get("Package", "")):
        name = rec.get("Package")
        if not name or "Description" not in rec:
            continue
        stats["packages"] += 1
        short, long = split_description(rec["Description"])
        if not long:  # Debian's own lists keep the long text in Translation-en
            long = longs.get(rec.get("Description-md5", ""), "")
        if not long:
            stats["no_long_description"] += 1
            continue
        if len(long) < min_chars or not short:
            stats["short_positive"] += 1
            continue
        source = rec.get("Source", name).split(" ")[0]
        rows.append({"query": short, "positive": long, "source": source, "package": name})
    seen_q: set[str] = set()
    seen_p: set[str] = set()
    kept = []
    for r in rows:
        if r["query"] in seen_q or r["positive"] in seen_p:
            stats["duplicate"] += 1
            continue
        seen_q.add(r["query"])
        seen_p.add(r["positive"])
        kept.append(r)
    stats["pairs"] = len(kept)
    return kept, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (train/dev/test.jsonl)")
    args = ap.parse_args(argv)
    rows, stats = build()
    os.makedirs(args.out, exist_ok=True)
    names = {0: "test", 1: "dev"}
    files = {s: open(os.path.join(args.out, f"{s}.jsonl"), "w", encoding="utf-8") for s in ("train", "dev", "test")}
    counts = {s: 0 for s in files}
    sources = {s: set() for s in files}
    try:
        for r in rows:
            split = names.get(bucket(r["source"]), "train")
            files[split].write(json.dumps(r, ensure_ascii=False) + "\n")
            counts[split] += 1
            sources[split].add(r["source"])
    finally:
        for f in files.values():
            f.close()
    stats.update({f"{s}_pairs": counts[s] for s in counts})
    stats.update({f"{s}_sources": len(sources[s]) for s in sources})
    with open(os.path.join(args.out, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
