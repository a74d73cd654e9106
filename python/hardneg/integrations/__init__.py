"""Drop-in replacements for other libraries' mining functions, backed by hardneg.

* :mod:`hardneg.integrations.sentence_transformers`: ``mine_hard_negatives`` with the arguments
  and output of ``sentence_transformers.util.mine_hard_negatives``, and
  ``ClusterBatchSamplerFactory``, cluster-balanced batches for the sentence-transformers trainer.

The submodules import their library lazily, so importing this package costs nothing.
"""

from __future__ import annotations

__all__ = ["sentence_transformers"]


def __getattr__(name: str):  # pragma: no cover - trivial lazy import
    if name == "sentence_transformers":
        import importlib

        return importlib.import_module(f"{__name__}.sentence_transformers")
    raise AttributeError(name)
