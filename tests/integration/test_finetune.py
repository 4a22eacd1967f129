"""finetune end to end on CPU: a tiny random LLaMA in 4-bit, the real CLI, MLflow, resume, merge.

The packaged SmolLM2 run is marked slow (about a minute), and so is the catalogue Qwen2.5-Coder-0.5B
run (about 2 minutes; skipped when its PyPI parts are not installed).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACTS = [("the capital of France", "Paris"), ("the largest planet", "Jupiter"),
         ("the author of Hamlet", "Shakespeare"), ("the boiling point of water", "100 degrees Celsius")]


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    """A random 2-layer LLaMA (hidden 64) with the packaged SmolLM2 tokenizer, saved as safetensors."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tests.reliability._helpers import tiny_llama_dir

    return tiny_llama_dir()


@pytest.fixture
def train_file(tmp_path) -> Path:
    rows = []
    for i in range(40):
        q, a = FACTS[i % len(FACTS)]
        if i % 2:
            rows.append({"instruction": f"What is {q}?", "input": "", "output": f"It is {a}."})
        else:
            rows.append({"messages": [{"role": "user", "content": f"Tell me {q}."},
                                      {"role": "assistant", "content": f"{a}."}]})
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _main(argv):
    from finetune.qlora import main

    return main([str(a) for a in argv])


FAST = ["batch_size=2", "max_seq_len=128", "logging_steps=1"]


def test_train_tiny_llama_4bit_on_cpu(tiny_model, train_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / ".ragtune" / "adapters" / "tiny"
    assert _main(["--base", tiny_model, "--data", train_file, "--output", out, "--max-steps", 4,
                  "--rank", 4, "eval_every=2", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "adapter:" in printed and "4-bit NF4" in printed
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    meta = json.loads((out / "ragtune_adapter.json").read_text())
    for key in ("config", "data", "versions", "base", "base_model", "load_in_4bit", "metrics", "created",
                "mlflow"):
        assert key in meta, key
    assert meta["base"] == meta["base_model_path"] == str(Path(tiny_model).resolve())  # a folder: absolute
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == meta["base"]
    assert meta["load_in_4bit"] is True and meta["quantization_note"] is None
    assert meta["config"]["rank"] == 4 and meta["config"]["optimizer"] == "adamw_torch"
    assert meta["data"]["hash"].startswith("sha256:") and meta["data"]["eval_examples"] == 4
    assert {"torch", "transformers", "peft", "bitsandbytes"} <= set(meta["versions"])
    m = meta["metrics"]
    assert m["global_step"] == 4
    for k in ("train_loss", "first_eval_loss", "final_eval_loss", "best_eval_loss"):
        assert math.isfinite(m[k]), k
    assert m["tokens_per_s"] > 0 and m["best_checkpoint"]

    # the adapter loads with plain PEFT on the (unquantised) base
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    assert any("lora_A" in n for n, _ in model.named_parameters())

    # MLflow: run with params + per-step metrics in the sqlite store under the data dir, registered adapter
    db = tmp_path / ".ragtune" / "mlflow.db"
    con = sqlite3.connect(db)
    params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid=?", (meta["mlflow"]["run_id"],)))
    assert params["rank"] == "4" and params["data_hash"] == meta["data"]["hash"]
    steps = {s for (s,) in con.execute("SELECT step FROM metrics WHERE key='loss' AND run_uuid=?",
                                        (meta["mlflow"]["run_id"],))}
    assert steps >= {1, 2, 3, 4}
    assert con.execute("SELECT count(*) FROM model_versions WHERE name='ragtune-adapter'").fetchone()[0] == 1
    con.close()
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")  # what hf:...+adapter:models:/NAME@ALIAS uses
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{db}")
    fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/ragtune-adapter/1"))
    assert (fetched / "adapter_model.safetensors").exists() and not (fetched / "checkpoints").exists()

    from finetune.adapters import list_adapters

    rows = list_adapters(tmp_path / ".ragtune")
    assert len(rows) == 1 and rows[0]["registered"] == "ragtune-adapter/1" and rows[0]["base"] == str(tiny_model)

    from finetune.merge import main as merge_main

    assert merge_main(["--adapter", str(out), "--output", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").exists()
    AutoModelForCausalLM.from_pretrained(tmp_path / "merged")

    # a second run into the same output refuses to mix checkpoints
    assert _main(["--base", tiny_model, "--data", train_file, "--output", out, "--max-steps", 2, *FAST]) == 2


def test_resume_continues_after_kill(tiny_model, train_file, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAGTUNE_DATA_DIR": str(tmp_path / ".ragtune")}
    cmd = [sys.executable, "-m", "finetune.qlora", "--base", str(tiny_model), "--data", str(train_file),
           "--output", str(out), "--max-steps", "400", "save_every=2", "eval_split=0", "report_to=none", *FAST]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "ragtune_adapter.json").exists()  # it really died mid-way

    from finetune.qlora import last_complete_checkpoint

    ckpt = last_complete_checkpoint(out / "checkpoints")
    k = int(ckpt.name.split("-")[1])
    assert 2 <= k < 400
    assert _main(["--base", tiny_model, "--data", train_file, "--output", out, "--max-steps", k + 2, "--resume",
                  "save_every=2", "eval_split=0", "report_to=none", *FAST]) == 0
    meta = json.loads((out / "ragtune_adapter.json").read_text())
    assert meta["resumed_from_step"] == k and meta["metrics"]["global_step"] == k + 2
    state = json.loads((out / "checkpoints" / f"checkpoint-{k + 2}" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h][-2:] == [k + 1, k + 2]


def test_from_store_synthesises_then_trains(tiny_model, tmp_path):
    import numpy as np

    from rag.stores import open_store
    from rag.types import Chunk

    texts = ["The refund window is 30 days.", "Acme has 12 offices in Europe.", "The chief executive is Jane Doe.",
             "Support is open from 9 to 17 on weekdays.", "The warehouse was built in 1987."]
    chunks = [Chunk(f"c{i}", t, f"doc{i}.md") for i, t in enumerate(texts)]
    vecs = np.eye(len(texts), 8, dtype=np.float32)
    store = open_store(str(tmp_path / "idx"))
    store.upsert(chunks, vecs)
    store.close()
    out = tmp_path / "fs"
    assert _main(["--base", tiny_model, "--from-store", tmp_path / "idx", "--output", out, "--max-steps", 2,
                  "report_to=none", "synth_distractors=1", "grad_accum=2", *FAST]) == 0
    assert len((out / "data" / "synth.jsonl").read_text().splitlines()) == 5
    assert json.loads((out / "ragtune_adapter.json").read_text())["data"]["train_examples"] == 4


def test_bad_data_fails_with_line_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n')
    assert _main(["--data", bad, "--output", tmp_path / "o"]) == 1
    assert f"{bad}:2: field 'output' is missing" in capsys.readouterr().err
    assert _main(["--data", bad]) == 2  # no --output: usage error


@pytest.mark.slow
def test_packaged_smollm2_qlora_few_steps(train_file, tmp_path):
    out = tmp_path / "smol"
    assert _main(["--base", "smollm2", "--data", train_file, "--output", out, "--max-steps", 3, "eval_every=3",
                  "report_to=none", "batch_size=2", "max_seq_len=96", "eval_split=0.05"]) == 0
    meta = json.loads((out / "ragtune_adapter.json").read_text())
    assert meta["load_in_4bit"] is True and meta["base_model"] == "smollm2" and meta["base"] == "smollm2-135m"
    m = meta["metrics"]
    assert math.isfinite(m["train_loss"]) and m["final_eval_loss"] < m["first_eval_loss"] + 0.5


QWEN = "qwen2.5-coder-0.5b"


def _missing_parts(name: str) -> list[str]:
    from rag.catalogue import CATALOGUE

    return [module for module, _ in CATALOGUE[name].parts if importlib.util.find_spec(module) is None]


@pytest.mark.slow
@pytest.mark.skipif(bool(_missing_parts(QWEN)), reason=f"the {QWEN} parts are not installed: "
                    "pip install 'ragtune[qwen-0.5b]'")
def test_catalogue_qwen_base_qlora_then_adapter_loads(train_file, tmp_path, monkeypatch):
    """``--base qwen2.5-coder-0.5b``: parts assembled, GGUF dequantised to safetensors once, 2 QLoRA steps,
    then ``adapter:DIR`` loads it on that base. Took 72-73 s on 2 cores at load average 1.5-3 (training
    68-71 s: assembly ~2 s, conversion ~45 s, 4-bit load, 2 steps of 3.4 s; reload + answer 2 s), peak RSS
    4.4 GB; the dense folder is 2.5 GB (fp32)."""
    models, dense = tmp_path / "models", tmp_path / ".ragtune" / "models"
    monkeypatch.setenv("RAGTUNE_MODELS_DIR", str(models))
    monkeypatch.setenv("RAGTUNE_LLM__MAX_NEW_TOKENS", "4")
    out = tmp_path / "qwen"
    try:
        start = time.perf_counter()
        assert _main(["--base", QWEN, "--data", train_file, "--output", out, "--max-steps", 2, "--rank", 4,
                      "report_to=none", "eval_split=0", "batch_size=1", "max_seq_len=128"]) == 0
        trained_s = time.perf_counter() - start
        meta = json.loads((out / "ragtune_adapter.json").read_text())
        assert meta["base"] == QWEN and meta["load_in_4bit"] is True and meta["metrics"]["global_step"] == 2
        assert meta["base_model_path"] == str(dense / QWEN) and math.isfinite(meta["metrics"]["train_loss"])
        assert json.loads((dense / QWEN / "ragtune-source.json").read_text())["name"] == QWEN

        from rag.llms import open_llm
        from rag.settings import load_settings

        start = time.perf_counter()
        llm = open_llm(f"adapter:{out}", load_settings())
        assert type(llm.model).__name__.startswith("Peft") and llm.base == QWEN
        assert llm.model.get_base_model().config.model_type == "qwen2"
        assert llm.complete("Say hello.").strip()
        print(f"\n{QWEN}: trained in {trained_s:.0f} s, loaded + answered in {time.perf_counter() - start:.0f} s")
    finally:  # 3 GB: do not leave it to pytest's tmp rotation
        shutil.rmtree(dense, ignore_errors=True)
        shutil.rmtree(models, ignore_errors=True)
