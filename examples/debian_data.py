"""Real graphs from this machine's Debian package index, for the recommendation and KG examples.

Rebuild the inputs (a few seconds, needs the Debian mirrors that ``apt`` uses):

    apt-get update
    apt-cache dumpavail > /work/scratch/recsys/dumpavail.txt
    python examples/debian_data.py /work/scratch/recsys/dumpavail.txt --out /work/scratch/recsys/debian

which writes to ``--out``:

* ``kg.npz``: a knowledge graph. Entities are package names (real or virtual) and sections;
  relations ``depends`` (Depends and Pre-Depends, every alternative of an ``a | b``),
  ``recommends``, ``suggests``, ``conflicts``, ``provides`` and ``in_section``; kept to the 5-core
  (every entity in at least 5 triples, as FB15k-237 keeps frequent entities); ``triples`` int64
  ``[N, 3]``, ``entities`` and ``relations`` names, ``descriptions`` (the package's short
  description, or the name for virtual packages and sections), and a fixed random
  ``train``/``valid``/``test`` split of 90/5/5 (valid and test triples only use entities seen in
  train).
* ``interactions.npz``: implicit feedback. "Users" are source packages, "items" the binary
  packages that the source's binaries depend on or recommend (its own binaries left out), kept to
  the 5-core (every user and item with at least 5 interactions); each user's items are split
  80/20 into train and test at random.

The split seed is fixed (``--seed``, default 0), so the files are reproducible from the same index.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

import numpy as np

RELATIONS = ("depends", "recommends", "suggests", "conflicts", "provides", "in_section")
_FIELDS = {"Depends": "depends", "Pre-Depends": "depends", "Recommends": "recommends", "Suggests": "suggests",
           "Conflicts": "conflicts", "Provides": "provides"}


def read_packages(path: str | Path) -> list[dict[str, str]]:
    """The stanzas of an ``apt-cache dumpavail`` file as dicts (continuation lines joined)."""
    packages, cur, key = [], {}, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line == "\n":
                if cur:
                    packages.append(cur)
                cur, key = {}, None
            elif line[0] in " \t":
                if key is not None:
                    cur[key] += "\n" + line.strip()
            else:
                key, _, value = line.partition(":")
                cur[key] = value.strip()
    if cur:
        packages.append(cur)
    return packages


def relation_names(value: str) -> list[str]:
    """Package names of a relation field: versions, architecture qualifiers and profiles dropped;
    every alternative of ``a | b`` kept."""
    names = []
    for alt in re.split(r"[,|]", value):
        name = alt.strip().split(" ")[0].split(":")[0].split("(")[0]
        if name:
            names.append(name)
    return names


def k_core(triples: np.ndarray, k: int) -> np.ndarray:
    """The triples whose head and tail both occur in at least ``k`` of the kept triples."""
    while True:
        degree = np.bincount(triples[:, [0, 2]].ravel())
        keep = (degree[triples[:, 0]] >= k) & (degree[triples[:, 2]] >= k)
        if keep.all():
            return triples
        triples = triples[keep]


def knowledge_graph(packages: list[dict[str, str]], seed: int = 0, core: int = 5) -> dict[str, np.ndarray]:
    ids: dict[str, int] = {}
    descriptions: list[str] = []

    def entity(name: str, description: str | None = None) -> int:
        if name not in ids:
            ids[name] = len(ids)
            descriptions.append(description or name)
        elif description and descriptions[ids[name]] == name:
            descriptions[ids[name]] = description
        return ids[name]

    triples = set()
    for p in packages:
        h = entity(p["Package"], f"{p['Package']}: {p['Description'].splitlines()[0]}")
        triples.add((h, RELATIONS.index("in_section"), entity("section:" + p["Section"])))
        for field, rel in _FIELDS.items():
            for name in relation_names(p.get(field, "")):
                t = entity(name)
                if t != h:
                    triples.add((h, RELATIONS.index(rel), t))
    triples = k_core(np.array(sorted(triples), dtype=np.int64), core)
    used = np.unique(triples[:, [0, 2]])  # renumber the kept entities densely
    triples[:, [0, 2]] = np.searchsorted(used, triples[:, [0, 2]])
    names = np.array(list(ids))[used]
    descriptions = [descriptions[e] for e in used]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(triples))
    n_eval = len(triples) // 20
    train_idx, valid_idx, test_idx = order[2 * n_eval:], order[:n_eval], order[n_eval:2 * n_eval]
    seen = np.zeros(len(names), bool)
    seen[triples[train_idx][:, [0, 2]].ravel()] = True
    keep = lambda idx: idx[seen[triples[idx, 0]] & seen[triples[idx, 2]]]  # noqa: E731
    return dict(
        triples=triples, train=np.sort(train_idx), valid=np.sort(keep(valid_idx)), test=np.sort(keep(test_idx)),
        entities=names, relations=np.array(RELATIONS), descriptions=np.array(descriptions),
    )


def interactions(packages: list[dict[str, str]], seed: int = 0, core: int = 5) -> dict[str, np.ndarray]:
    real = {p["Package"] for p in packages}
    own = collections.defaultdict(set)
    for p in packages:
        own[p.get("Source", p["Package"]).split(" ")[0]].add(p["Package"])
    deps = collections.defaultdict(set)
    for p in packages:
        src = p.get("Source", p["Package"]).split(" ")[0]
        for field in ("Depends", "Pre-Depends", "Recommends"):
            deps[src].update(n for n in relation_names(p.get(field, "")) if n in real and n not in own[src])
    pairs = {(u, i) for u, items in deps.items() for i in items}
    while True:  # the 5-core: drop users and items with fewer than `core` interactions until none is left
        uc = collections.Counter(u for u, _ in pairs)
        ic = collections.Counter(i for _, i in pairs)
        kept = {(u, i) for u, i in pairs if uc[u] >= core and ic[i] >= core}
        if kept == pairs:
            break
        pairs = kept
    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    uid = {u: k for k, u in enumerate(users)}
    iid = {i: k for k, i in enumerate(items)}
    arr = np.array(sorted((uid[u], iid[i]) for u, i in pairs), dtype=np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(arr), bool)
    starts = np.searchsorted(arr[:, 0], np.arange(len(users) + 1))
    for u in range(len(users)):  # 20% of each user's items (at least one) held out
        a, b = starts[u], starts[u + 1]
        k = max(1, int(round(0.2 * (b - a))))
        test[a + rng.choice(b - a, size=k, replace=False)] = True
    return dict(train=arr[~test], test=arr[test], users=np.array(users), items=np.array(items))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumpavail", help="output of `apt-cache dumpavail`")
    ap.add_argument("--out", required=True, help="directory for kg.npz and interactions.npz")
    ap.add_argument("--seed", type=int, default=0, help="seed of the splits")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    packages = read_packages(args.dumpavail)
    kg = knowledge_graph(packages, args.seed)
    np.savez_compressed(out / "kg.npz", **kg)
    counts = np.bincount(kg["triples"][:, 1], minlength=len(RELATIONS))
    print(f"{len(packages)} packages -> KG: {len(kg['entities'])} entities, {len(kg['triples'])} triples "
          f"({', '.join(f'{r} {c}' for r, c in zip(RELATIONS, counts))}); "
          f"train {len(kg['train'])}, valid {len(kg['valid'])}, test {len(kg['test'])}")
    inter = interactions(packages, args.seed)
    np.savez_compressed(out / "interactions.npz", **inter)
    per_user = np.bincount(np.concatenate([inter["train"], inter["test"]])[:, 0])
    print(f"interactions: {len(inter['users'])} source packages x {len(inter['items'])} packages, "
          f"{len(inter['train'])} train + {len(inter['test'])} test pairs; items per user: median "
          f"{int(np.median(per_user))}, max {per_user.max()}")


if __name__ == "__main__":
    main()
