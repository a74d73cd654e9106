"""Real (query, passage) text pairs that need no download: Python standard-library docstrings.

Each public function, class or method of a fixed list of standard-library modules gives one pair:
the first sentence of its docstring is the query, the rest of the docstring the passage (its positive).
Used by ``hardneg demo`` and by the tests. The texts depend on the Python version, never on the
run: the module list, the member order (sorted names) and the de-duplication are fixed.

Examples
--------
>>> from hardneg.textpairs import stdlib_docstring_pairs
>>> pairs = stdlib_docstring_pairs(limit=5)
>>> len(pairs), all(isinstance(q, str) and len(p) >= 40 for q, p in pairs)
(5, True)
>>> pairs == stdlib_docstring_pairs(limit=5)
True
"""

from __future__ import annotations

import importlib
import inspect
import re

__all__ = ["STDLIB_MODULES", "stdlib_docstring_pairs", "stdlib_docstring_paragraphs"]

#: Modules read, in this order (pure-Python modules with substantial docstrings).
STDLIB_MODULES: tuple[str, ...] = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "configparser", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fnmatch",
    "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "heapq", "hmac",
    "http.client", "http.cookiejar", "imaplib", "inspect", "ipaddress", "json", "locale", "logging",
    "mailbox", "mimetypes", "netrc", "ntpath", "optparse", "os", "pathlib", "pickle", "pkgutil",
    "platform", "poplib", "posixpath", "pprint", "queue", "random", "re", "sched", "secrets",
    "selectors", "shlex", "shutil", "smtplib", "socket", "socketserver", "statistics", "string",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback",
    "typing", "unittest.case", "urllib.parse", "urllib.request", "uuid", "warnings", "wave",
    "weakref", "xml.dom.minidom", "zipfile",
)

_SPACE = re.compile(r"\s+")
_FIRST_SENTENCE = re.compile(r"(.+?[.!?])(?:\s+|$)(.*)")


def _clean(text: str, limit: int) -> str:
    return _SPACE.sub(" ", text).strip()[:limit]


def _members(limit_chars: int):
    """Yields (qualified name, summary, body) for every documented public member, deterministically."""
    for modname in STDLIB_MODULES:
        try:
            mod = importlib.import_module(modname)
        except Exception:  # noqa: BLE001 - a module missing on this platform is skipped
            continue
        for name in sorted(vars(mod)):
            if name.startswith("_"):
                continue
            obj = vars(mod)[name]
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            items = [(f"{modname}.{name}", obj)]
            if inspect.isclass(obj):
                for mname in sorted(vars(obj)):
                    m = vars(obj)[mname]
                    if not mname.startswith("_") and inspect.isfunction(m):
                        items.append((f"{modname}.{name}.{mname}", m))
            for qual, o in items:
                doc = inspect.getdoc(o) if o.__doc__ else None
                if not doc:
                    continue
                # The query is the first sentence of the first paragraph (a summary line may wrap
                # mid-sentence); the passage is everything after it.
                para, _, after = doc.strip().partition("\n\n")
                para = " ".join(para.split())
                m = _FIRST_SENTENCE.match(para)
                head, tail = (m.group(1), m.group(2)) if m else (para, "")
                yield qual, _clean(head, limit_chars), (tail + "\n\n" + after).strip()


def stdlib_docstring_pairs(limit: int | None = None, *, max_chars: int = 400) -> list[tuple[str, str]]:
    """(first sentence, rest of the docstring) pairs; both texts unique, passages at least 40 characters.

    Parameters
    ----------
    limit : int, optional
        Keep the first ``limit`` pairs (default: all, a few thousand).
    max_chars : int, default 400
        Passages are cut to this many characters (whitespace collapsed).

    Examples
    --------
    >>> q, p = stdlib_docstring_pairs(limit=1)[0]
    >>> len(q) > 5 and len(p) <= 400
    True
    """
    out: list[tuple[str, str]] = []
    seen_q: set[str] = set()
    seen_p: set[str] = set()
    for _, summary, body in _members(max_chars):
        passage = _clean(body, max_chars)
        if len(summary) < 12 or len(passage) < 40 or summary in seen_q or passage in seen_p:
            continue
        seen_q.add(summary)
        seen_p.add(passage)
        out.append((summary, passage))
        if limit is not None and len(out) >= limit:
            break
    return out


def stdlib_docstring_paragraphs(limit: int | None = None, *, max_chars: int = 300) -> list[tuple[str, list[str]]]:
    """(first sentence, [paragraphs]) for docstrings whose body has at least two paragraphs.

    A query with several positives: each paragraph (at least 40 characters) of the same docstring.

    Examples
    --------
    >>> rows = stdlib_docstring_paragraphs(limit=3)
    >>> len(rows), all(len(ps) >= 2 for _, ps in rows)
    (3, True)
    """
    out: list[tuple[str, list[str]]] = []
    seen_q: set[str] = set()
    seen_p: set[str] = set()
    for _, summary, body in _members(max_chars):
        paras = [_clean(p, max_chars) for p in re.split(r"\n\s*\n", body)]
        paras = [p for p in dict.fromkeys(paras) if len(p) >= 40 and p not in seen_p]
        if len(summary) < 12 or summary in seen_q or len(paras) < 2:
            continue
        paras = paras[:4]
        seen_q.add(summary)
        seen_p.update(paras)
        out.append((summary, paras))
        if limit is not None and len(out) >= limit:
            break
    return out
