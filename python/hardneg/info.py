"""``hardneg info`` / ``python -m hardneg``: what this installation will use on this machine.

Examples
--------
>>> from hardneg.info import collect
>>> facts = collect()
>>> facts["version"] == __import__("hardneg").__version__, facts["kernel"] in facts["kernels_available"]
(True, True)
>>> facts["threads"] >= 1
True
"""

from __future__ import annotations

import platform
from typing import Any

from . import _hardneg
from ._optional import OPTIONAL, installed

__all__ = ["collect", "report"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect() -> dict[str, Any]:
    """The facts :func:`report` prints, as a dict (``hardneg info --json`` prints it as JSON).

    Keys: ``version``, ``build``, ``python``, ``platform``, ``cpu``, ``kernel`` (the top-k kernel
    this CPU will use), ``kernels_available``, ``threads`` (used when ``threads`` is not given),
    ``optional`` (``{module: version or None}``).

    Examples
    --------
    >>> from hardneg.info import collect
    >>> sorted(collect())[:4]
    ['build', 'cpu', 'kernel', 'kernels_available']
    """
    return {
        "version": _hardneg.__version__,
        "build": _hardneg.build_profile,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": _cpu_model(),
        "kernel": _hardneg.isa(),
        "kernels_available": list(_hardneg.available_isas()),
        "threads": int(_hardneg.default_threads()),
        "optional": installed(),
    }


def report(facts: dict[str, Any] | None = None) -> str:
    """A readable summary of :func:`collect`.

    Examples
    --------
    >>> from hardneg.info import report
    >>> report().splitlines()[0].startswith("hardneg ")
    True
    """
    f = collect() if facts is None else facts
    others = [k for k in f["kernels_available"] if k != f["kernel"]]
    lines = [
        f"hardneg {f['version']} ({f['build']} build) on {f['python']}, {f['platform']}",
        f"CPU:      {f['cpu']}",
        f"kernel:   {f['kernel']} (exact top-k; also available here: {', '.join(others) or 'none'})",
        f"threads:  {f['threads']} by default (pass threads= to a call to use fewer)",
        "optional dependencies:",
    ]
    width = max(len(OPTIONAL[m][0]) for m in OPTIONAL)
    for module, version in f["optional"].items():
        dist, _, used_by = OPTIONAL[module]
        lines.append(f"  {dist:<{width}}  {version or 'not installed':<14} {used_by}")
    return "\n".join(lines)


def run_info_command(args: Any) -> int:
    """Runs ``hardneg info``."""
    if getattr(args, "json", False):
        import json

        print(json.dumps(collect(), indent=1))
    else:
        print(report())
    return 0
