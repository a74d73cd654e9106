"""What users meet in their own environment: missing optional packages, ``hardneg info``, notebooks.

The torch-free and pyarrow-free cases run in a subprocess whose import system reports the package
as not installed (the wheel smoke test in ``.ci/run`` checks the same in a real numpy-only venv).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hardneg
from hardneg import _hardneg

_WITHOUT = """
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Missing())
"""


def _run_without(blocked: set[str], code: str, *args: str) -> subprocess.CompletedProcess[str]:
    src = _WITHOUT.format(blocked=blocked) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", src, *args], capture_output=True, text=True, timeout=300)


def test_without_torch_everything_but_the_losses_works_and_the_losses_say_what_to_install():
    done = _run_without({"torch"}, """
        import numpy as np, hardneg
        x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
        s, i = hardneg.topk(x[:5], x, k=3)
        m = hardneg.mine(x[:20], x, np.arange(20), num_negatives=2, progress=False)
        labels = hardneg.cluster(x, cluster_size=10)
        sampler = hardneg.ClusterBatchSampler(x, batch_size=32, cluster_size=8, seed=0)
        batches = list(sampler)
        assert sorted(j for b in batches for j in b) == list(range(300)) and len(batches) == len(sampler) == 10
        assert "torch" not in sys.modules
        print("ok")
        hardneg.InfoNCE
    """)
    assert done.stdout.strip() == "ok", done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == ("ImportError: hardneg.InfoNCE needs torch, which is not installed: pip install 'hardneg[torch]' "
                    "(or pip install torch)")
    assert "losses" not in done.stderr  # raised before importing anything of hardneg.losses
    direct = _run_without({"torch"}, "import hardneg.losses")
    assert direct.stderr.strip().splitlines()[-1].startswith("ImportError: hardneg.losses needs torch")


def test_cli_without_pyarrow_says_what_to_install(tmp_path):
    rng = np.random.default_rng(0)
    for name, arr in (("c", rng.standard_normal((50, 4), dtype=np.float32)), ("p", np.arange(5))):
        np.save(tmp_path / f"{name}.npy", arr)
    done = _run_without({"pyarrow"}, """
        import sys
        from hardneg.cli import main
        sys.exit(main(sys.argv[1:]))
    """, "mine", "--queries", str(tmp_path / "c.npy"), "--corpus", str(tmp_path / "c.npy"), "--positives",
        str(tmp_path / "p.npy"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.strip() == ("hardneg mine: error: mine_to_disk (Parquet output) needs pyarrow, which is not "
                                   "installed: pip install 'hardneg[parquet]' (or pip install pyarrow)")


def test_a_broken_dependency_keeps_its_own_error():
    done = _run_without({"torch._C"}, "import hardneg; hardneg.InfoNCE")
    assert "No module named 'torch._C'" in done.stderr and "needs torch" not in done.stderr


def test_info_reports_this_installation():
    out = subprocess.run([sys.executable, "-m", "hardneg"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"hardneg {hardneg.__version__} ")
    assert f"kernel:   {_hardneg.isa()} " in out.stdout
    facts = json.loads(subprocess.run([sys.executable, "-m", "hardneg", "info", "--json"], capture_output=True,
                                      text=True, timeout=120).stdout)
    assert facts["kernel"] == _hardneg.isa() and facts["kernels_available"][-1] == "scalar"
    assert facts["threads"] == len(__import__("os").sched_getaffinity(0))
    import torch

    assert facts["optional"]["torch"] == torch.__version__.split("+")[0]


def test_progress_bar_is_a_widget_in_a_notebook():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    code = """
        import numpy as np, hardneg
        c = np.random.default_rng(0).standard_normal((3000, 16), dtype=np.float32)
        m = hardneg.mine(c[:500], c, np.arange(500), num_negatives=3, chunk_size=100{})
        print(m.negatives.shape)
    """
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(code.format(arg))) for arg in ("", ", progress=False")]
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3").execute()
    default, off = ([o for o in cell.outputs] for cell in nb.cells)
    widgets = [o for o in default if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1 and "mining" in widgets[0]["data"]["text/plain"]  # the bar, by default
    assert not any("data" in o for o in off)
    assert [o["text"] for o in off if o.get("name") == "stdout"] == ["(500, 3)\n"]
