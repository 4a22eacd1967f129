"""An adapter trained in one folder loads, by itself, from any other folder (issue 21).

Training runs in folder A with the default relative data dir (``.ragtune``, so the packaged SmolLM2
is dequantised to ``A/.ragtune/models/``); the questions are asked from folder B, whose data dir is
``B/.ragtune``, with ``--llm adapter:DIR`` and ``--llm hf:+adapter:DIR``: no base on the command
line, only what the adapter recorded. Real SmolLM2, real QLoRA (2 steps), real chain; nothing mocked.
About 70 s on 2 idle cores (training ~35 s including the one-off GGUF conversion, two more model
loads and a second conversion in B), up to ~2.5 min on a busy box.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.test_finetune import _main, train_file  # noqa: F401 - train_file is a fixture

pytestmark = pytest.mark.slow
pytest.importorskip("peft")

QUESTION = "What is the capital of France?"


def _ask(spec: str, capsys) -> dict:
    from rag.__main__ import main

    capsys.readouterr()
    assert main(["ask", QUESTION, "--llm", spec, "--json", "--k", "1", "--mode", "dense"]) == 0, \
        capsys.readouterr().err[-2000:]
    return json.loads(capsys.readouterr().out)


def test_adapter_loads_from_another_folder(train_file, tmp_path, make_rag, monkeypatch, capsys):  # noqa: F811
    folder_a, folder_b = tmp_path / "A", tmp_path / "B"
    folder_a.mkdir()
    folder_b.mkdir()
    monkeypatch.delenv("RAGTUNE_DATA_DIR")  # the default, '.ragtune' relative to the current folder
    monkeypatch.setenv("RAGTUNE_LLM__MAX_NEW_TOKENS", "8")

    # --- train in A: relative data dir and output, as a user typing in a project folder would
    monkeypatch.chdir(folder_a)
    start = time.perf_counter()
    assert _main(["--base", "smollm2", "--data", train_file, "--output", "adapters/run", "--max-steps", 2,
                  "--rank", 4, "report_to=none", "eval_split=0", "batch_size=2", "max_seq_len=64"]) == 0
    trained_s = time.perf_counter() - start
    adapter = folder_a / "adapters" / "run"
    meta = json.loads((adapter / "ragtune_adapter.json").read_text())
    assert meta["base"] == "smollm2-135m"  # the catalogue name, not a path
    dense_a = folder_a / ".ragtune" / "models" / "SmolLM2-135M-Instruct"
    assert meta["base_model_path"] == str(dense_a)  # the cache hint, absolute
    peft_base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(peft_base).is_absolute(), peft_base  # was ".ragtune/models/SmolLM2-135M-Instruct"

    # --- ask from B, with its own data dir and index
    monkeypatch.chdir(folder_b)
    make_rag().add_texts(["Paris is the capital of France.", "Jupiter is the largest planet."],
                         metadatas=[{"source": "france.txt"}, {"source": "planets.txt"}])
    start = time.perf_counter()
    body = _ask(f"adapter:{adapter}", capsys)
    first_s = time.perf_counter() - start
    assert body["answer"].strip() and body["sources"][0]["source"] == "france.txt"
    # A's dense weights were still there (the recorded hint): B converted nothing
    assert not (folder_b / ".ragtune" / "models").exists()

    # the adapter is really applied: same input, different logits with it switched off
    from rag.llms import open_llm
    from rag.settings import load_settings

    llm = open_llm(f"adapter:{adapter}", load_settings())
    assert type(llm.model).__name__.startswith("Peft") and llm.base == "smollm2-135m"
    import torch

    ids = llm.tokenizer("Tell me the capital of France.", return_tensors="pt").input_ids
    with torch.inference_mode():
        tuned = llm.model(input_ids=ids).logits
        with llm.model.disable_adapter():
            plain = llm.model(input_ids=ids).logits
    assert not torch.equal(tuned, plain)
    del llm
    # plain PEFT too, by the adapter's path alone (adapter_config.json names the base absolutely)
    from peft import AutoPeftModelForCausalLM

    plain_peft = AutoPeftModelForCausalLM.from_pretrained(str(adapter))
    assert plain_peft.peft_config["default"].base_model_name_or_path == str(dense_a)
    del plain_peft

    # --- A's data dir gone (or the adapter copied to another machine): the base resolves by its name
    shutil.rmtree(folder_a / ".ragtune")
    start = time.perf_counter()
    body = _ask(f"hf:+adapter:{adapter}", capsys)
    second_s = time.perf_counter() - start
    assert body["answer"].strip()
    assert (folder_b / ".ragtune" / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
    print(f"\ntrain {trained_s:.1f} s, ask via the hint {first_s:.1f} s, converting in B {second_s:.1f} s")
