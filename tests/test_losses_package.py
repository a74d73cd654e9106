"""The losses package: lazy torch import, explicit exports, runnable docstring examples."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
import textwrap

import pytest

MODULES = ["infonce", "chunked", "guided", "debiased", "siglip", "mixing", "cached", "distributed"]


def test_import_hardneg_does_not_need_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import hardneg
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        assert hardneg.topk is not None
        try:
            hardneg.InfoNCE
        except ImportError:
            print("lazy-ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lazy-ok"


def test_exports():
    pytest.importorskip("torch")
    import hardneg
    from hardneg import losses

    for name in losses.__all__:
        assert getattr(losses, name) is not None
    for name in ("InfoNCE", "ChunkedInfoNCE", "GuidedInfoNCE", "SigLIPLoss", "CachedEncoder"):
        assert getattr(hardneg, name) is getattr(losses, name)
        assert name in hardneg.__all__
    assert hardneg.losses is losses


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    pytest.importorskip("torch")
    mod = importlib.import_module(f"hardneg.losses.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
