"""The per-request thread rule (rag.llms.threads) and its measurement of other processes' CPU.

The measurement test runs real busy-looping processes: nothing is mocked."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from rag.llms.threads import cores, other_busy_cores, threads_for, threads_now


@pytest.mark.parametrize(("n_cores", "others", "expected"), [
    (2, 0.0, 2),    # idle 2-core box: both cores (prompt 1.7x faster, bench/results/threads_qwen0.5b_auto.json)
    (2, 0.2, 2),    # a shell or daemon does not cost a core
    (2, 0.6, 1),    # another job on one core: llama.cpp threads would spin-wait on it
    (2, 1.0, 1),
    (2, 3.0, 1),    # overloaded: never below one
    (16, 3.1, 13),  # whole free cores only (12.9 free)
    (16, 3.5, 12),
    (1, 0.0, 1),
    (2, None, 1),   # not measurable: one core spare, the safe fixed choice
    (16, None, 15),
])
def test_threads_are_the_cores_other_processes_leave_free(n_cores, others, expected):
    assert threads_for(n_cores, others) == expected


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def test_competing_processes_are_seen_and_leave_one_thread():
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(cores())]
    for s in spinners:
        s.start()
    time.sleep(0.2)  # let every spinner reach its loop before the window opens
    try:
        busy = other_busy_cores(0.5)
        n = threads_now()
    finally:
        stop.set()
        for s in spinners:
            s.join()
    assert busy is not None and busy >= cores() - 0.6  # every core taken by a spinner
    assert n == 1
