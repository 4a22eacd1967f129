"""The packaged SmolLM2-135M-Instruct for real: through transformers (hf), through llama.cpp (gguf),
with a LoRA adapter (hf:...+adapter:DIR), answering over a few passages with the real chain.

Each model is loaded once per module. Threads are pinned to 1: the CPU is shared (llama.cpp with
2 threads on a busy 2-core machine is ~8x slower than with 1).
"""

from __future__ import annotations

import json
import os

import pytest

from rag import chain
from rag.llms import open_llm
from rag.model_paths import dense_base_model, packaged_smollm2_gguf
from rag.settings import Settings
from rag.types import Hit

pytestmark = pytest.mark.slow

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HITS = [Hit("a", "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.", "eiffel.txt", 1, 0.9),
        Hit("b", "Bananas are yellow fruits rich in potassium.", "fruit.txt", 2, 0.4)]
QUESTION = "When was the Eiffel Tower completed?"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    data = tmp_path_factory.mktemp("llm-data")
    return Settings(data_dir=data, llm={"threads": 1, "max_new_tokens": 32})


@pytest.fixture(scope="module")
def gguf_llm(settings):
    pytest.importorskip("llama_cpp")
    return open_llm(f"gguf:{packaged_smollm2_gguf()}", settings)


@pytest.fixture(scope="module")
def hf_llm(settings):
    return open_llm("hf:smollm2", settings)


def _ask(llm, settings):
    return chain.answer(QUESTION, retrieve=lambda q: list(HITS), llm=llm, settings=settings)


@pytest.mark.parametrize("which", ["gguf_llm", "hf_llm"])
def test_real_model_answers_from_the_passages(which, request, settings):
    llm = request.getfixturevalue(which)
    assert llm.context_window >= 2048 and llm.count_tokens("The Eiffel Tower") > 0
    a = _ask(llm, settings)
    assert "1889" in a.text
    assert [s.source for s in a.sources] == ["eiffel.txt", "fruit.txt"]
    assert a.tokens["prompt"] > 50 and 0 < a.tokens["completion"] <= 40
    # SmolLM2-135M rarely cites: either real citations or the flagged implicit top source
    assert a.citations or ("no_citations" in a.flags and a.sources[0].implicit) or "declined" in a.flags


@pytest.mark.parametrize("which", ["gguf_llm", "hf_llm"])
def test_real_model_streams_tokens(which, request, settings):
    llm = request.getfixturevalue(which)
    s = chain.stream(QUESTION, retrieve=lambda q: list(HITS), llm=llm, settings=settings)
    pieces = list(s)
    assert len(pieces) > 3
    assert "".join(pieces).strip() == s.answer.text and "1889" in s.answer.text
    assert 0 < s.answer.timings["first_token_s"] < s.answer.timings["total_s"]


def test_greedy_is_deterministic_and_complete_works(gguf_llm):
    msgs = [{"role": "user", "content": "Name the capital of France in one word."}]
    assert gguf_llm.generate(msgs, max_new_tokens=8) == gguf_llm.generate(msgs, max_new_tokens=8)
    assert gguf_llm.complete("Say hello.", max_new_tokens=4)


def test_stopping_a_stream_early_releases_the_model(hf_llm):
    gen = hf_llm.stream([{"role": "user", "content": "Count from one to fifty."}], max_new_tokens=64)
    first = next(gen)
    gen.close()  # the generate thread must stop and the lock be free again
    assert first and hf_llm.generate([{"role": "user", "content": "Hi"}], max_new_tokens=3)


def test_follow_up_rewrite_with_a_real_model(gguf_llm, settings):
    history = [{"role": "user", "content": "Tell me about the Eiffel Tower."},
               {"role": "assistant", "content": "It is a tower in Paris [1]."}]
    seen = []
    a = chain.answer("When was it completed?", retrieve=lambda q: seen.append(q) or list(HITS), llm=gguf_llm,
                     settings=settings, history=history)
    assert seen == [a.standalone_question] and a.standalone_question.strip()
    assert "rewrite_s" in a.timings


@pytest.fixture(scope="module")
def random_adapter(settings, tmp_path_factory):
    """A tiny random LoRA on the dense SmolLM2 (non-zero B, so it really changes the output)."""
    peft = pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(dense_base_model("", settings.data_dir))
    cfg = peft.LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                          task_type="CAUSAL_LM")
    model = peft.get_peft_model(base, cfg)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out, safe_serialization=True)
    (out / "ragtune_adapter.json").write_text(json.dumps({"base": ""}))  # '' = the packaged SmolLM2
    return out


def test_adapter_loads_and_changes_the_model(random_adapter, settings, hf_llm):
    import torch

    llm = open_llm(f"hf:+adapter:{random_adapter}", settings)  # base from ragtune_adapter.json
    assert type(llm.model).__name__.startswith("Peft") and llm.adapter_path == random_adapter
    ids = hf_llm.tokenizer("The Eiffel Tower is", return_tensors="pt").input_ids
    with torch.inference_mode():
        base_logits = hf_llm.model(ids).logits
        adapted = llm.model(ids).logits
    assert not torch.allclose(base_logits, adapted, atol=1e-3)
    assert isinstance(llm.generate([{"role": "user", "content": "Hi"}], max_new_tokens=4), str)
    # the explicit base spelling resolves to the same dense weights
    assert open_llm(f"hf:smollm2+adapter:{random_adapter}", settings).base == "smollm2"


def test_llama_cpp_threads_adapt_to_competing_processes(settings):
    """With llm.threads unset the packaged GGUF takes per request the cores other processes leave
    free (rag.llms.threads): here every core is taken by a busy loop, so one thread, set in the
    real llama.cpp context. A fixed llm.threads is never changed."""
    import llama_cpp

    from bench.threads_bench import spinning
    from rag.llms.threads import cores

    auto = open_llm(f"gguf:{packaged_smollm2_gguf()}", settings.model_copy(update={
        "llm": settings.llm.model_copy(update={"threads": None})}))
    fixed = open_llm(f"gguf:{packaged_smollm2_gguf()}", settings.model_copy(update={
        "llm": settings.llm.model_copy(update={"threads": 2})}))
    assert auto.auto_threads and not fixed.auto_threads
    auto.threads = 99  # whatever it held, the next request measures again
    with spinning(cores()):
        assert "1889" in _ask(auto, settings).text
        fixed.generate([{"role": "user", "content": "Say hi."}], max_new_tokens=2)
    assert auto.threads == 1
    assert llama_cpp.llama_n_threads(auto.llm.ctx) == 1 and llama_cpp.llama_n_threads_batch(auto.llm.ctx) == 1
    assert fixed.threads == 2 and llama_cpp.llama_n_threads(fixed.llm.ctx) == 2
