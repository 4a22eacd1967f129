"""``hf:ID_OR_PATH[+adapter:DIR]``: any local causal LM through transformers, optionally with a
PEFT (LoRA / QLoRA) adapter written by ``python -m finetune.qlora``.

A catalogue model (``hf:``, ``hf:smollm2``, ``hf:qwen2.5-coder-0.5b``) loads from the dense
safetensors that :func:`rag.model_paths.dense_base_model` caches under the data directory: the same
weights ``finetune`` trains on, so adapters apply to exactly what they were trained against.
With no base (``adapter:DIR``, ``hf:+adapter:DIR``) the base is the one the adapter records in
``ragtune_adapter.json``: a catalogue name, a hub id or an absolute path, never relative to the
folder training ran in; the recorded local path is used only as a cache hint.
Only safetensors weights are loaded; ``trust_remote_code`` comes from settings (off by default).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from packaging.version import Version
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from rag.errors import ConfigError, LLMError, MissingDependencyError, ModelNotFoundError
from rag.llms import ADAPTER_MARK, BaseLLM, Completion, Message
from rag.llms.adapter_meta import ADAPTER_META
from rag.model_paths import base_identity, dense_base_model, dense_dir_name, existing_local

# transformers 4.56 renamed from_pretrained's torch_dtype to dtype (pyproject allows >= 4.46)
_DTYPE_KW = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def parse_spec(rest: str) -> tuple[str, str | None]:
    """``'MODEL+adapter:DIR'`` -> ``('MODEL', 'DIR')``; ``'MODEL'`` -> ``('MODEL', None)``."""
    base, sep, adapter = rest.partition(ADAPTER_MARK)
    if sep and not adapter.strip():
        raise ConfigError(f"empty adapter path in 'hf:{rest}' (expected hf:MODEL+adapter:DIR)")
    return base.strip(), (adapter.strip() if sep else None)


def resolve_adapter(adapter: str, settings: Any) -> Path:
    """A local adapter folder; ``models:/NAME@ALIAS`` is fetched from the MLflow registry.

    Raises:
        ModelNotFoundError: the folder does not exist or holds no safetensors adapter.
    """
    if adapter.startswith("models:/"):
        try:
            import mlflow
        except ImportError as e:
            raise MissingDependencyError(f"adapter '{adapter}'", "finetune", "mlflow") from e
        data_dir = Path(settings.data_dir).resolve()
        mlflow.set_tracking_uri(settings.tracking_uri or f"sqlite:///{data_dir / 'mlflow.db'}")
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=adapter)
        except Exception as e:  # mlflow raises many types; the message names the model
            raise ModelNotFoundError(f"adapter '{adapter}' not found in the MLflow registry: {e}") from e
        path = Path(local)
        if not (path / "adapter_config.json").exists():
            found = next(path.rglob("adapter_config.json"), None)
            path = found.parent if found else path
    else:
        path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").exists():
        raise ModelNotFoundError(f"no PEFT adapter at '{adapter}' (expected adapter_config.json there; "
                                 "adapters are written by python -m finetune.qlora --output DIR)")
    if not (path / "adapter_model.safetensors").exists():
        raise ModelNotFoundError(f"adapter '{adapter}' has no adapter_model.safetensors "
                                 "(only safetensors weights are loaded)")
    return path


def _adapter_meta(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / ADAPTER_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def adapter_base(path: Path) -> str:
    """The base model an adapter names: ``base`` in ``ragtune_adapter.json`` (older ragtune adapters:
    ``base_model``), else PEFT's ``base_model_name_or_path`` (an adapter trained elsewhere); '' (the
    packaged SmolLM2) when neither names one."""
    data = _adapter_meta(path)
    base = data.get("base") or data.get("base_model") or data.get("base_spec")
    if not base and not data:
        try:
            peft_config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
            base = peft_config.get("base_model_name_or_path")
        except (OSError, ValueError, AttributeError):
            base = None
    return str(base or "").removeprefix("hf:")


def cached_base(path: Path, base: str) -> str | None:
    """The dense folder training used (``base_model_path`` in ``ragtune_adapter.json``), when it is
    still there and holds the catalogue model ``base``: it saves converting the GGUF again into this
    data directory. Only a hint: anything else (moved, another machine) resolves ``base`` by name."""
    hint = _adapter_meta(path).get("base_model_path")
    if not hint or not Path(hint).is_absolute():
        return None
    name = base_identity(base)
    return hint if dense_dir_name(hint) == name and (Path(hint) / "config.json").is_file() else None


def base_location(base: str, settings: Any) -> tuple[str, str | None]:
    """What transformers loads for ``base``: ``(folder or hub id, gguf file name or None)``.

    Raises:
        ModelNotFoundError: a path-like base that does not exist (a relative path in an old adapter's
            metadata only worked from the folder training ran in), or a catalogue model not installed.
    """
    dense = dense_base_model(base, settings.data_dir, getattr(settings, "models_dir", None))
    if dense != base:  # a catalogue name: its dense weights under DATA_DIR/models/
        return dense, None
    if base.lower().endswith(".gguf") and Path(base).is_file():
        return str(Path(base).parent), Path(base).name
    try:
        local = existing_local(base, "model folder")
    except ModelNotFoundError as e:
        if Path(base).expanduser().is_absolute():
            raise
        raise ModelNotFoundError(
            f"{e} (relative to the current folder {Path.cwd()}): a relative base only works from the folder "
            "it is relative to; give its absolute path (hf:/abs/path), or a catalogue name such as "
            "smollm2-135m (python -m rag models list)") from e
    return (str(local), None) if local else (base, None)


class _Cancel(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


class HFLLM(BaseLLM):
    """A causal LM through transformers, with chat template and TextIteratorStreamer streaming."""

    def __init__(self, rest: str, settings: Any):
        super().__init__(settings)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        base, adapter = parse_spec(rest)
        self.adapter_path = resolve_adapter(adapter, settings) if adapter else None
        hint, recorded = None, not base and self.adapter_path is not None
        if recorded:
            base = adapter_base(self.adapter_path)
            hint = cached_base(self.adapter_path, base)
        self.base = base
        self.name = "hf:" + rest
        trust = bool(settings.llm.trust_remote_code)
        if settings.llm.threads:
            torch.set_num_threads(int(settings.llm.threads))
        try:
            path, gguf_file = (hint, None) if hint else base_location(base, settings)
        except ModelNotFoundError as e:
            if recorded:  # say where the base was written, and how to override it
                raise ModelNotFoundError(f"{e}. This base is the one the adapter records ({ADAPTER_META} or "
                                         f"adapter_config.json in {self.adapter_path}); name another: "
                                         "hf:BASE+adapter:DIR") from e
            raise
        kwargs: dict[str, Any] = {"trust_remote_code": trust}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(
                path, use_safetensors=None if gguf_file else True, **{_DTYPE_KW: torch.float32}, **kwargs)
        except OSError as e:
            raise ModelNotFoundError(
                f"cannot load '{base}' with transformers offline: {e}. Give a local folder with "
                "safetensors weights (hf:/path/to/model) or a model already in the HF cache") from e
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.adapter_path is not None:
            try:
                from peft import PeftModel
            except ImportError as e:
                raise MissingDependencyError("LLM adapters (+adapter:)", "finetune", "peft") from e
            self.model = PeftModel.from_pretrained(self.model, str(self.adapter_path))
        self.model.to(device).eval()
        self.device = device
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.family = str(getattr(self.model.config, "model_type", "") or "")  # the chain's answer style
        cfg_window = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.context_window = int(settings.llm.context_window or cfg_window)
        self._lock = threading.Lock()  # one generate at a time on a shared model

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _inputs(self, messages: list[Message]) -> torch.Tensor:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                     return_tensors="pt", return_dict=False)
            if not isinstance(ids, torch.Tensor):  # newer transformers may return a BatchEncoding
                ids = ids["input_ids"]
        else:  # a base model without a template: plain role-prefixed text
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"
            ids = self.tokenizer(text, return_tensors="pt").input_ids
        return ids.to(self.device)

    def _kwargs(self, opts: dict[str, Any]) -> dict[str, Any]:
        o = self.gen_options(opts)
        kw: dict[str, Any] = {"max_new_tokens": int(o["max_new_tokens"]),
                              "pad_token_id": self.tokenizer.pad_token_id}
        if float(o["temperature"]) > 0:
            kw.update(do_sample=True, temperature=float(o["temperature"]), top_p=float(o["top_p"]))
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if float(o["repeat_penalty"]) != 1.0:
            kw["repetition_penalty"] = float(o["repeat_penalty"])
        if o.get("stop"):
            kw["stop_strings"] = list(o["stop"]) if not isinstance(o["stop"], str) else [o["stop"]]
            kw["tokenizer"] = self.tokenizer
        return kw

    def _finish_reason(self, new_ids: torch.Tensor, max_new_tokens: int) -> str:
        """'length' when generation used every allowed token and the last one is not an EOS."""
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        eos = set(eos) if isinstance(eos, list) else {eos}
        if len(new_ids) >= max_new_tokens and int(new_ids[-1]) not in eos:
            return "length"
        return "stop"

    def generate(self, messages: list[Message], **opts: Any) -> str:
        ids = self._inputs(messages)
        kw = self._kwargs(opts)
        with self._lock, torch.inference_mode():
            try:
                out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)
            except RuntimeError as e:
                raise LLMError(f"{self.name}: generation failed: {e}") from e
        new_ids = out[0, ids.shape[1]:]
        return Completion(self.tokenizer.decode(new_ids, skip_special_tokens=True).strip(),
                          self._finish_reason(new_ids, kw["max_new_tokens"]))

    def stream(self, messages: list[Message], **opts: Any) -> Iterator[str]:
        ids = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600)
        errors: list[BaseException] = []
        outputs: list[torch.Tensor] = []
        cancel = threading.Event()  # set when the consumer stops early, so generate() stops too
        kw = self._kwargs(opts)

        def work() -> None:
            try:
                with torch.inference_mode():
                    outputs.append(self.model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancel(cancel)]), **kw))
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
                errors.append(e)
                streamer.end()

        with self._lock:
            thread = threading.Thread(target=work, name="hf-generate", daemon=True)
            thread.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                cancel.set()
                thread.join()
        if errors:
            raise LLMError(f"{self.name}: generation failed: {errors[0]}") from errors[0]
        return self._finish_reason(outputs[0][0, ids.shape[1]:], kw["max_new_tokens"]) if outputs else None
