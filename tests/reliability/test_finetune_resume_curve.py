"""A QLoRA run killed with SIGKILL mid-way and resumed has the same loss curve as an
uninterrupted run (tests/integration/test_finetune.py checks the step numbers after a resume;
this compares the losses). Tiny random LLaMA (4-bit on CPU), a few steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = 8
COMMON = ["save_every=2", "eval_split=0", "report_to=none", "batch_size=2", "max_seq_len=96", "logging_steps=1",
          "lr=5e-3", "--rank", "4"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    from tests.reliability._helpers import tiny_llama_dir

    return tiny_llama_dir()


@pytest.fixture
def train_file(tmp_path) -> Path:
    facts = [("the capital of France", "Paris"), ("the largest planet", "Jupiter"),
             ("the author of Hamlet", "Shakespeare"), ("the boiling point of water", "100 degrees Celsius"),
             ("the speed of light", "299792 km per second"), ("the tallest mountain", "Everest")]
    rows = [{"instruction": f"What is {q}? (variant {i})", "output": f"It is {a}."}
            for i, (q, a) in enumerate(facts * 6)]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


def test_killed_and_resumed_run_has_the_uninterrupted_loss_curve(tiny_model, train_file, tmp_path):
    from finetune.qlora import last_complete_checkpoint, main

    base = ["--base", str(tiny_model), "--data", str(train_file), "--max-steps", str(STEPS)]
    ref = tmp_path / "ref"
    assert main([*base, "--output", str(ref), *COMMON]) == 0
    want = _losses(ref)
    assert sorted(want) == list(range(1, STEPS + 1))

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAGTUNE_DATA_DIR": str(tmp_path / ".ragtune")}
    proc = subprocess.Popen([sys.executable, "-m", "finetune.qlora", *base, "--output", str(out), *COMMON],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while last_complete_checkpoint(out / "checkpoints") is None:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if (out / "ragtune_adapter.json").exists():
        pytest.skip("the run finished before it could be killed (machine too fast for this test's timing)")
    k = int(last_complete_checkpoint(out / "checkpoints").name.split("-")[1])
    assert 2 <= k < STEPS

    assert main([*base, "--output", str(out), "--resume", *COMMON]) == 0
    got = _losses(out)
    assert sorted(got) == list(range(1, STEPS + 1))
    resumed = {s: got[s] for s in range(k + 1, STEPS + 1)}
    for step, loss in resumed.items():
        assert loss == pytest.approx(want[step], rel=1e-3, abs=1e-4), (step, loss, want[step], k)
    assert want[STEPS] < want[1]  # it learned something, so equal curves are not trivially flat
