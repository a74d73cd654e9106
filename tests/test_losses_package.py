"""The losses package: lazy torch import and explicit exports (tests/test_doctests.py runs its examples)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


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
