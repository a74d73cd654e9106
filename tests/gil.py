"""A probe for whether a call releases the GIL: a Python thread counts while the call runs."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


def ticks_while(work: Callable[[], Any]) -> tuple[int, float]:
    """Runs ``work()`` while another Python thread ticks once a millisecond; returns
    ``(ticks, seconds)``. A call that holds the GIL throughout lets the thread tick at most once."""
    ticks = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    th = threading.Thread(target=spin)
    th.start()
    t = time.perf_counter()
    try:
        work()
    finally:
        elapsed = time.perf_counter() - t
        done.set()
        th.join()
    return ticks, elapsed
