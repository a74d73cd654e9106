"""Optional dependencies: what needs them, a clear ``ImportError`` when one is missing, and which are installed.

``import hardneg`` needs only numpy and tqdm. The rest is imported where it is used, through
:func:`require`, so a missing package gives one line saying what to install instead of a
traceback from deep inside an import.

Examples
--------
>>> from hardneg._optional import require
>>> require("json", "this example").__name__
'json'
>>> try:
...     require("hardneg_no_such_module", "this example")
... except ImportError as e:
...     print(e)
this example needs hardneg_no_such_module, which is not installed: pip install hardneg_no_such_module
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

__all__ = ["OPTIONAL", "require", "installed"]

#: import name -> (distribution name, hardneg extra that installs it, what in hardneg uses it)
OPTIONAL: dict[str, tuple[str, str | None, str]] = {
    "torch": ("torch", "torch", "hardneg.losses (contrastive losses)"),
    "pyarrow": ("pyarrow", "parquet", "hardneg mine, mine_to_disk, load_mined, Mined.to_arrow"),
    "pandas": ("pandas", "parquet", "Mined.to_pandas"),
    "datasets": ("datasets", "sentence-transformers", "integrations.sentence_transformers"),
    "sentence_transformers": ("sentence-transformers", "sentence-transformers",
                              "the drop-in's models, hardneg demo with a real model"),
    "faiss": ("faiss-cpu", None, "benchmarks (anchor)"),
    "usearch": ("usearch", None, "benchmarks (anchor)"),
    "polars": ("polars", None, "reading hardneg mine output (any Parquet reader works)"),
    "ipywidgets": ("ipywidgets", None, "progress bars as notebook widgets (else text bars)"),
}


def require(module: str, feature: str) -> ModuleType:
    """Imports ``module`` for ``feature``, or raises ``ImportError`` saying what to install.

    An ``ImportError`` raised from inside an installed ``module`` (a broken install) passes
    through unchanged, so its own message is not hidden.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and not (module == e.name or module.startswith(e.name + ".")):
            raise  # the package is there but something it imports is not
        dist, extra, _ = OPTIONAL.get(module, (module, None, ""))
        how = f"pip install 'hardneg[{extra}]' (or pip install {dist})" if extra else f"pip install {dist}"
        raise ImportError(f"{feature} needs {dist}, which is not installed: {how}", name=module) from None


def installed() -> dict[str, str | None]:
    """Version of each optional dependency's distribution, ``None`` if not installed (nothing is imported)."""
    out: dict[str, str | None] = {}
    for module, (dist, _, _) in OPTIONAL.items():
        try:
            out[module] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[module] = None
    return out
