"""An adapter trained in one folder loads, by itself, from any other folder (issue 21).

Training runs in folder A with the default relative data dir (``.ragtune``, so the packaged SmolLM2
is dequantised to ``A/.ragtune/models/``); the questions are asked from folder B, whose data dir is
``B/.ragtune``, with ``--llm adapter:DIR`` and ``--llm hf:+adapter:DIR``: no base on the command
line, only what the adapter recorded. Real SmolLM2, real QLoRA (2 steps), real chain; nothing mocked.
The fast tests below check how specs and recorded bases are read, and what a bad base says.
Took 52-55 s on 2 shared cores at load average 2.7-2.8: training 23-25 s (the one-off GGUF conversion
included), the first ask ~2 s (A's dense weights reused), the second 18-19 s (a fresh conversion into
B's data dir).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.test_finetune import _main, train_file  # noqa: F401 - train_file is a fixture

pytest.importorskip("peft")

QUESTION = "What is the capital of France?"


def _ask(spec: str, capsys) -> dict:
    from rag.__main__ import main

    capsys.readouterr()
    assert main(["ask", QUESTION, "--llm", spec, "--json", "--k", "1", "--mode", "dense"]) == 0, \
        capsys.readouterr().err[-2000:]
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
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


def test_adapter_spec_forms_all_mean_the_recorded_base():
    from rag.llms import _split
    from rag.llms.hf import parse_spec

    for spec in ("adapter:/runs/a", "+adapter:/runs/a", "hf:+adapter:/runs/a", " adapter:/runs/a "):
        prefix, rest = _split(spec)
        assert (prefix, parse_spec(rest)) == ("hf", ("", "/runs/a")), spec
    assert _split("adapter:models:/ragtune-adapter@champion") == ("hf", "+adapter:models:/ragtune-adapter@champion")


def test_bases_are_recorded_so_any_folder_can_find_them(tmp_path):
    from rag.model_paths import base_identity, looks_like_path

    assert [base_identity(b) for b in ("", "smollm2", "hf:smollm2-135m", "qwen2.5-coder-0.5b")] == [
        "smollm2-135m", "smollm2-135m", "smollm2-135m", "qwen2.5-coder-0.5b"]
    assert base_identity("hf:Qwen/Qwen2.5-0.5B") == base_identity("Qwen/Qwen2.5-0.5B") == "hf:Qwen/Qwen2.5-0.5B"
    (tmp_path / "mine").mkdir()
    assert base_identity("mine") == str(tmp_path / "mine")  # relative to the folder training runs in
    # what a hub id can never be, so it is never sent to the hub as a repo id
    assert all(map(looks_like_path, [".ragtune/models/SmolLM2-135M-Instruct", "a/b/c", "/x", "~/m", "./m"]))
    assert not any(map(looks_like_path, ["Qwen/Qwen2.5-0.5B", "gpt2"]))


def _fake_adapter(folder: Path, meta: dict | None) -> Path:
    """An adapter folder as resolve_adapter checks it (the base is looked up before any weight is read)."""
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "models/base"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    if meta is not None:
        (folder / "ragtune_adapter.json").write_text(json.dumps(meta))
    return folder


def test_a_relative_recorded_base_says_why_and_what_to_do(tmp_path):
    from rag.errors import ModelNotFoundError
    from rag.llms import open_llm
    from rag.llms.hf import adapter_base
    from rag.settings import Settings

    old = _fake_adapter(tmp_path / "old", {"base": ".ragtune/models/SmolLM2-135M-Instruct"})
    with pytest.raises(ModelNotFoundError) as err:
        open_llm(f"adapter:{old}", Settings(data_dir=tmp_path / "data"))
    msg = str(err.value)
    assert "no such model folder: .ragtune/models/SmolLM2-135M-Instruct" in msg and str(tmp_path) in msg
    assert "absolute path" in msg and "hf:BASE+adapter:DIR" in msg and str(old) in msg
    # an adapter from elsewhere (no ragtune_adapter.json): PEFT's own record of its base
    assert adapter_base(_fake_adapter(tmp_path / "peft", None)) == "models/base"
    assert adapter_base(_fake_adapter(tmp_path / "empty-meta", {"base": ""})) == ""  # '' = the packaged SmolLM2
