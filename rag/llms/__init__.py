"""LLMs: one protocol, one registry keyed by spec prefix.

=====================================  ==================================================
spec                                   backend
=====================================  ==================================================
``''`` (default)                       the best installed catalogue model
                                       (:data:`rag.catalogue.DEFAULT_ORDER`)
``smollm2``                            the packaged SmolLM2-135M-Instruct: llama.cpp on the
                                       packaged GGUF when ``llama_cpp`` is importable
                                       (about 3x faster), else transformers
``qwen2.5-coder-0.5b`` (a catalogue    its assembled GGUF through llama.cpp (:mod:`rag.catalogue`)
name)
``hf:ID_OR_PATH[+adapter:DIR]``        transformers (:class:`rag.llms.hf.HFLLM`)
``adapter:DIR``                        transformers on the base the adapter records
``gguf:PATH``                          llama.cpp (:class:`rag.llms.gguf.LlamaCppLLM`)
``openai:MODEL``                       any OpenAI-compatible API (:class:`rag.llms.openai.OpenAILLM`)
=====================================  ==================================================

Adding a backend = one module with a class taking ``(rest_of_spec, settings)`` + one line in
``REGISTRY``. Modules are imported only when their prefix is used. Tests register fakes with
:func:`register` / :func:`unregister`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, Self, runtime_checkable

from rag.errors import ConfigError, MissingDependencyError, redact
from rag.model_paths import is_packaged_llm

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}

__all__ = [
    "ADAPTER_MARK",
    "LLM",
    "REGISTRY",
    "BaseLLM",
    "Completion",
    "Message",
    "default_backend",
    "open_llm",
    "register",
    "unregister",
]

ADAPTER_MARK = "+adapter:"


class Completion(str):
    """Generated text that also says why generation ended, in OpenAI's words: ``"stop"`` (the
    model ended it or a stop string matched) or ``"length"`` (``max_new_tokens`` cut it).

    A ``str``, so callers that only want the text change nothing. Backends return it from
    ``generate``, and ``stream`` returns the same reason as its generator's return value (what
    ``yield from`` gives back); a backend that cannot tell returns a plain ``str`` / ``None``.
    """

    finish_reason: str | None

    def __new__(cls, text: str, finish_reason: str | None = None) -> Self:
        self = super().__new__(cls, text)
        self.finish_reason = finish_reason
        return self


@runtime_checkable
class LLM(Protocol):
    """What every LLM backend provides."""

    name: str              # the spec it was opened with, for display (never holds a secret)
    context_window: int    # prompt + answer tokens the model accepts
    # Optional: the model's architecture ("qwen2", "llama"), which picks a per-family answer style
    # in the chain (rag.chain.ANSWER_STYLE); backends that cannot tell leave it out.

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model (exact for local models, estimated for APIs)."""

    def generate(self, messages: list[Message], **opts: Any) -> str:
        """One chat completion (a :class:`Completion` when the backend knows why it ended).
        ``opts``: temperature, top_p, max_new_tokens, stop."""

    def stream(self, messages: list[Message], **opts: Any) -> Iterator[str]:
        """The same completion as text pieces, as they are produced; the generator may return
        the finish reason (see :class:`Completion`)."""

    def complete(self, prompt: str, **opts: Any) -> str:
        """Convenience: ``generate`` with one user message."""


class BaseLLM:
    """Shared plumbing for backends: generation defaults from settings and ``complete``."""

    name: str = ""
    context_window: int = 2048

    def __init__(self, settings: Any | None = None):
        llm = getattr(settings, "llm", None)
        self.defaults: dict[str, Any] = {
            "temperature": getattr(llm, "temperature", 0.0),
            "top_p": getattr(llm, "top_p", 1.0),
            "max_new_tokens": getattr(llm, "max_new_tokens", 256),
            "repeat_penalty": getattr(llm, "repeat_penalty", 1.0),
        }

    def gen_options(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        """Settings defaults overridden by per-call options (``None`` = not given)."""
        out = dict(self.defaults)
        out.update({k: v for k, v in opts.items() if v is not None})
        if "max_tokens" in out:  # OpenAI's name for the same thing
            out["max_new_tokens"] = out.pop("max_tokens")
        return out

    def complete(self, prompt: str, **opts: Any) -> str:
        return self.generate([{"role": "user", "content": prompt}], **opts)

    def stream(self, messages: list[Message], **opts: Any) -> Iterator[str]:
        text = self.generate(messages, **opts)
        yield text
        return getattr(text, "finish_reason", None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# prefix: ("module:Class", extra that provides its SDK) or a factory (test fakes)
REGISTRY: dict[str, tuple[str, str] | Callable[..., LLM]] = {
    "hf": ("rag.llms.hf:HFLLM", "finetune"),
    "gguf": ("rag.llms.gguf:LlamaCppLLM", "llamacpp"),
    "openai": ("rag.llms.openai:OpenAILLM", "openai"),
}


def register(prefix: str, factory: Callable[..., LLM]) -> None:
    """Register a backend ``factory(rest_of_spec, settings) -> LLM`` under ``prefix``.

    Raises:
        ConfigError: the prefix is taken or not a plain lowercase word.
    """
    if not prefix.isidentifier() or prefix.lower() != prefix:
        raise ConfigError(f"LLM prefix must be a lowercase word, got '{prefix}'")
    if prefix in REGISTRY:
        raise ConfigError(f"LLM prefix '{prefix}' is already registered (unregister it first)")
    REGISTRY[prefix] = factory


def unregister(prefix: str) -> None:
    REGISTRY.pop(prefix, None)


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def default_backend() -> str:
    """Which backend the default spec ('') uses here: 'gguf' when llama.cpp is importable, else 'hf'."""
    return "gguf" if llama_cpp_available() else "hf"


def _split(spec: str) -> tuple[str, str]:
    """``'hf:x+adapter:y'`` -> ``('hf', 'x+adapter:y')``; prefix-less specs are inferred."""
    spec = spec.strip()
    if spec.startswith(("adapter:", ADAPTER_MARK)):  # an adapter alone: the base it records
        return "hf", "+" + spec.removeprefix("+")
    prefix, sep, rest = spec.partition(":")
    if sep and (prefix in REGISTRY or (len(prefix) > 1 and "/" not in prefix and "." not in prefix
                                       and "+" not in prefix)):
        return prefix, rest
    if is_packaged_llm(spec):
        return "", ""
    if spec.lower().endswith(".gguf"):
        return "gguf", spec
    return "hf", spec


def open_llm(spec: str, settings: Any, *, env: Mapping[str, str] | None = None) -> LLM:
    """Open the LLM a spec names (see the module docstring for the table).

    Args:
        spec: ``''`` / ``hf:...`` / ``gguf:...`` / ``openai:...`` / a registered test prefix, or a
            catalogue name (``qwen2.5-coder-0.5b``: its GGUF through llama.cpp, see :mod:`rag.catalogue`).
        settings: the :class:`rag.settings.Settings` tree (generation options, data_dir, threads).
        env: environment for hosted backends (default ``os.environ``).

    Raises:
        ConfigError: unknown prefix (the message lists the known ones) or a malformed spec.
        MissingDependencyError: the backend's SDK is not installed (names the extra).
        ModelNotFoundError: the model or adapter cannot be found offline.
    """
    from rag.catalogue import resolve_llm_spec

    catalogued = resolve_llm_spec(spec or "", settings)  # assembles a catalogue model on first use
    prefix, rest = _split((spec or "") if catalogued is None else catalogued)
    if prefix == "":
        if default_backend() == "gguf":
            from rag.model_paths import packaged_smollm2_gguf

            prefix, rest = "gguf", str(packaged_smollm2_gguf())
        else:
            prefix, rest = "hf", ""
    if prefix not in REGISTRY:
        raise ConfigError(f"unknown LLM prefix '{prefix}' in '{redact(spec)}' "
                          f"(known: {', '.join(sorted(REGISTRY))}; or '' for the packaged SmolLM2)")
    entry = REGISTRY[prefix]
    if callable(entry):
        factory = entry
    else:
        target, extra = entry
        module_name, _, cls_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and not e.name.startswith("rag"):
                raise MissingDependencyError(f"LLM '{prefix}:'", extra, e.name) from e
            raise
        factory = getattr(module, cls_name)
    kwargs = {"env": env} if prefix == "openai" and env is not None else {}
    llm = factory(rest, settings, **kwargs)
    if not getattr(llm, "name", "") or catalogued is not None:  # the catalogue name, not the cache path
        from rag.catalogue import default_entry, models_dir

        llm.name = (spec.strip() or default_entry(models_dir(settings)).name) if catalogued is not None else spec
    return llm
