"""How many CPU threads local inference should use right now.

llama.cpp's threads spin-wait for each other. On a 2-core box, beside one competing process, 2
threads decoded at 0.32-0.33x their idle speed while 1 thread kept 0.96-1.0x (Qwen-0.5B 41.1 ->
13.6 tok/s with 2 threads, 27.9 -> 27.8 with 1; bench/results/threads_*.json). A fixed count is
therefore wrong one way or the other: all cores is fastest on an idle machine and collapses on a
busy one; one core spare is safe and, on an idle 2-core box, prefills at 0.55x and decodes at 0.83x
the speed of both cores (bench/results/threads_qwen0.5b_auto.json).

So with ``llm.threads`` unset the count is chosen per request from what the *other* processes
use: the whole machine's busy CPU time minus this process's own, over a short window just before
generation. ``llm.threads = N`` fixes the count instead.
"""

from __future__ import annotations

import math
import os
import time

__all__ = ["cores", "other_busy_cores", "threads_for", "threads_now"]

WINDOW_S = 0.15  # long enough for /proc/stat's 10 ms ticks to give ~0.07 core resolution
SLACK = 0.25  # a core counts as free when others use at most this much of it (shells, daemons)


def cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_for(n_cores: int, others_busy: float | None) -> int:
    """The rule: the cores other processes leave free, whole cores only, at least one.

    ``others_busy`` is how many cores' worth of CPU other processes used lately; ``None`` (not
    measurable here) keeps one core spare, the safe fixed choice."""
    if others_busy is None:
        return max(1, n_cores - 1)
    free = n_cores - max(0.0, others_busy)
    return max(1, min(n_cores, math.floor(free + SLACK)))


def other_busy_cores(window_s: float = WINDOW_S) -> float | None:
    """Cores' worth of CPU used by other processes over the next ``window_s`` seconds (None
    where psutil cannot read system CPU times)."""
    try:
        import psutil

        me = psutil.Process()

        def busy() -> tuple[float, float]:
            t = psutil.cpu_times()
            idle = t.idle + getattr(t, "iowait", 0.0)
            own = me.cpu_times()
            return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0), own.user + own.system

        t0, (sys0, own0) = time.perf_counter(), busy()
        time.sleep(window_s)
        t1, (sys1, own1) = time.perf_counter(), busy()
    except Exception:  # noqa: BLE001 - no psutil, or a platform without these counters
        return None
    return max(0.0, ((sys1 - sys0) - (own1 - own0)) / max(t1 - t0, 1e-6))


def threads_now() -> int:
    """Threads for a generation starting now (:func:`threads_for` over a fresh measurement)."""
    return threads_for(cores(), other_busy_cores())
