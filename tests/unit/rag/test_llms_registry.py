"""The LLM registry: spec parsing, unknown prefixes, missing SDKs, registration rules."""

from __future__ import annotations

import builtins
import sys

import pytest

from rag import llms
from rag.errors import ConfigError, LLMError, MissingDependencyError, ModelNotFoundError
from rag.llms import _split, open_llm, register, unregister
from rag.settings import Settings


def test_split_specs():
    assert _split("hf:HuggingFaceTB/SmolLM2-135M-Instruct") == ("hf", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert _split("hf:smollm2+adapter:/a/b") == ("hf", "smollm2+adapter:/a/b")
    assert _split("+adapter:/a/b") == ("hf", "+adapter:/a/b")
    assert _split("gguf:/m/x.gguf") == ("gguf", "/m/x.gguf")
    assert _split("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert _split("") == ("", "") and _split("SmolLM2") == ("", "")
    assert _split("./models/x.gguf") == ("gguf", "./models/x.gguf")
    assert _split("./models/qwen") == ("hf", "./models/qwen")


def test_unknown_prefix_lists_known_ones():
    with pytest.raises(ConfigError) as e:
        open_llm("anthropic:claude", Settings())
    msg = str(e.value)
    assert "'anthropic'" in msg and "gguf" in msg and "hf" in msg and "openai" in msg


def test_missing_sdk_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_llama(name, *a, **kw):
        if name == "llama_cpp":
            raise ModuleNotFoundError("No module named 'llama_cpp'", name="llama_cpp")
        return real_import(name, *a, **kw)

    monkeypatch.delitem(sys.modules, "rag.llms.gguf", raising=False)
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(MissingDependencyError) as e:
        open_llm("gguf:/x.gguf", Settings())
    assert "ragtune[llamacpp]" in str(e.value) and "llama_cpp" in str(e.value)


def test_default_spec_uses_llama_cpp_when_importable(monkeypatch):
    monkeypatch.setattr(llms, "llama_cpp_available", lambda: True)
    assert llms.default_backend() == "gguf"
    monkeypatch.setattr(llms, "llama_cpp_available", lambda: False)
    assert llms.default_backend() == "hf"


def test_register_rejects_duplicates_and_bad_names():
    with pytest.raises(ConfigError, match="already registered"):
        register("hf", lambda rest, settings: None)
    with pytest.raises(ConfigError, match="lowercase word"):
        register("Bad-Name", lambda rest, settings: None)
    register("echo", lambda rest, settings: type("E", (llms.BaseLLM,), {})(settings))
    try:
        assert open_llm("echo:x", Settings()).name == "echo:x"
    finally:
        unregister("echo")
    assert "echo" not in llms.REGISTRY


def test_gguf_missing_file_is_model_not_found():
    pytest.importorskip("llama_cpp")
    with pytest.raises(ModelNotFoundError, match="GGUF file not found"):
        open_llm("gguf:/nonexistent/model.gguf", Settings())


def test_hf_missing_adapter_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        open_llm(f"hf:smollm2+adapter:{tmp_path / 'nope'}", Settings(data_dir=tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_config.json").write_text("{}")
    (tmp_path / "a" / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        open_llm(f"hf:smollm2+adapter:{tmp_path / 'a'}", Settings(data_dir=tmp_path))
    with pytest.raises(ConfigError, match="empty adapter"):
        open_llm("hf:smollm2+adapter:", Settings(data_dir=tmp_path))


def test_adapter_base_from_metadata(tmp_path):
    from rag.llms.hf import adapter_base

    assert adapter_base(tmp_path) == ""
    (tmp_path / "ragtune_adapter.json").write_text('{"base": "hf:/models/base"}')
    assert adapter_base(tmp_path) == "/models/base"


def test_openai_needs_a_key_or_base_url_and_never_echoes_the_key():
    pytest.importorskip("openai")
    with pytest.raises(LLMError, match="OPENAI_API_KEY is not set"):
        open_llm("openai:gpt-4o-mini", Settings(), env={})
    llm = open_llm("openai:gpt-4o-mini", Settings(), env={"OPENAI_API_KEY": "sk-secret-123"})
    assert llm.context_window == 128_000 and llm.count_tokens("abcdefg") == 2
    assert "sk-secret-123" not in repr(llm) and llm._scrub("key sk-secret-123 bad") == "key *** bad"


def test_gen_options_merge_settings_and_call_options():
    base = llms.BaseLLM(Settings(llm={"temperature": 0.3, "max_new_tokens": 99}))
    assert base.gen_options({}) == {"temperature": 0.3, "top_p": 1.0, "max_new_tokens": 99, "repeat_penalty": 1.0}
    assert base.gen_options({"max_tokens": 5, "top_p": None})["max_new_tokens"] == 5


def test_llama_cpp_loads_with_all_cores_but_one(monkeypatch):
    """The count a model is loaded with before its first request adapts it (rag.llms.threads;
    docs/llms.md, Threads)."""
    gguf = pytest.importorskip("rag.llms.gguf")
    for cores, expected in ((2, 1), (16, 15), (1, 1)):
        monkeypatch.setattr(gguf, "cores", lambda c=cores: c)
        assert gguf.default_threads() == expected


def test_openai_family_follows_the_served_model_name():
    from rag.chain import ANSWER_STYLE, build_messages
    from rag.llms.openai import OpenAILLM
    from rag.settings import Settings
    from rag.types import Hit

    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    qwen = OpenAILLM("qwen2.5-coder-1.5b", Settings(), env=env)
    other = OpenAILLM("gpt-4o-mini", Settings(), env=env)
    assert (qwen.family, other.family) == ("qwen2", "")
    hit = Hit("c1", "The widget weighs 140 grams.", "faq.md", 1, 1.0)
    assert ANSWER_STYLE["qwen2"] in build_messages("How heavy?", [hit], qwen.family)[-1]["content"]
    assert ANSWER_STYLE["qwen2"] not in build_messages("How heavy?", [hit], other.family)[-1]["content"]
