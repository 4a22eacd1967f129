"""The per-request thread rule (rag.llms.threads) and its measurement of other processes' CPU.

The measurement test runs real busy-looping processes: nothing is mocked."""

from __future__ import annotations

import pytest

from bench.threads_bench import spinning
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


def test_competing_processes_are_seen_and_leave_one_thread():
    with spinning(cores(), settle_s=0.2):  # every core taken by a busy loop
        busy = other_busy_cores(0.5)
        n = threads_now()
    assert busy is not None and busy >= cores() - 0.6  # every core taken by a spinner
    assert n == 1
