"""Model parts for the QLoRA recipe: resolve the base, load it (4-bit when possible), add LoRA."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ModelNotFoundError

__all__ = ["LoadedBase", "add_lora", "library_versions", "load_base", "load_tokenizer", "resolve_base"]


def resolve_base(spec: str, data_dir: str | Path, models_dir: str | Path | None = None) -> str:
    """The base to load: a catalogue name (``''``, ``smollm2``, ``smollm2-135m``, ``qwen2.5-coder-0.5b``)
    -> its dense safetensors folder under ``DATA_DIR/models/``; ``hf:ID`` -> ``ID``; a folder -> its
    absolute path (PEFT writes what the base was loaded from into ``adapter_config.json``, and a
    relative path there only works from the folder training ran in).

    Raises:
        ModelNotFoundError: a local-looking path that does not exist, or a catalogue model that is not
            installed (the message says which extra to install).
    """
    from rag.model_paths import dense_base_model

    spec = (spec or "").strip()
    spec = spec.removeprefix("hf:")
    dense = dense_base_model(spec, data_dir, models_dir)
    if dense != spec:  # a catalogue model: a catalogue name wins over a folder of the same name
        return dense
    path = Path(spec).expanduser()
    if path.exists():
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1:
        raise ModelNotFoundError(f"base model folder not found: {spec} (give a local folder, hf:ID, or a "
                                 "catalogue name: smollm2, qwen2.5-coder-0.5b; python -m rag models list)")
    return spec  # a hub id: transformers resolves it from the local cache (HF_HUB_OFFLINE=1 stays offline)


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    from finetune.data import ensure_chat_template

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ModelNotFoundError(f"cannot load a tokenizer for base '{path}': {e}") from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    ensure_chat_template(tok)
    return tok


@dataclass
class LoadedBase:
    model: Any
    in_4bit: bool
    note: str | None  # why 4-bit was not used, when it was asked for


_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def _fsdp() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() in {"1", "true"}


def load_base(path: str, *, load_in_4bit: bool, compute_dtype: str, trust_remote_code: bool = False) -> LoadedBase:
    """Load the base for training: 4-bit NF4 + double quant when asked and possible, else dense.

    Never silent about the fallback: ``note`` says why, and the caller prints and records it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, _DTYPES[compute_dtype])
    device_map = None
    if torch.cuda.is_available():
        device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))}  # one full copy per DDP process
    common = {"trust_remote_code": trust_remote_code}
    note = None
    if load_in_4bit:
        try:
            from transformers import BitsAndBytesConfig

            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=dtype,
                                       # FSDP shards parameters by dtype: 4-bit weights must be stored as the
                                       # compute dtype there (uint8 storage elsewhere: the faster CPU path).
                                       bnb_4bit_quant_storage=dtype if _fsdp() else torch.uint8)
            model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=dtype,
                                                         device_map=device_map, **common)
            return LoadedBase(model, True, None)
        except OSError as e:
            raise ModelNotFoundError(f"cannot load base model '{path}': {e}") from e
        except Exception as e:  # noqa: BLE001 - any bitsandbytes/device failure means "no 4-bit here"
            note = f"4-bit load failed on this device ({type(e).__name__}: {str(e).splitlines()[0][:200]}); " \
                   f"trained LoRA on the unquantised {compute_dtype} base instead"
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map, **common)
    except OSError as e:
        raise ModelNotFoundError(f"cannot load base model '{path}': {e}") from e
    return LoadedBase(model, False, note)


def add_lora(base: LoadedBase, cfg: Any) -> Any:
    """Wrap the base in LoRA adapters on ``cfg.target_modules`` (k-bit preparation for 4-bit bases)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = base.model
    if base.in_4bit:
        _keep_cpu_4bit_trainable(model)
    model.config.use_cache = False  # a KV cache in training also disables the packed-sequence mask
    gc_kwargs = {"use_reentrant": False}
    if base.in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
        model.enable_input_require_grads()
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        from rag.errors import ConfigError

        raise ConfigError(f"target_modules {missing} are not in this model; its linear layers include "
                          f"{sorted(n for n in present if n.endswith('proj'))[:12]}")
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _keep_cpu_4bit_trainable(model: Any) -> None:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference at the first eval-mode forward.

    bitsandbytes >= 0.48 converts a Linear4bit to an AVX512-BF16 layout the first time it runs in
    eval mode on CPU, and from then on uses a kernel with no autograd: after the first evaluation,
    gradients would no longer flow back through the frozen layers (torch only warns). Evaluation
    during training is routine, so the repacking is turned off for models being trained.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def cpu_threads(requested: int = 0) -> int:
    """Threads for CPU training: ``requested``, or the cores other processes leave idle (>= 1).

    Torch's default of one thread per core collapses when other processes share the cores: each op
    waits for a descheduled thread (measured here: 30 s vs 3 s per step with 2 threads vs 1 on 2
    busy cores).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested:
        return requested
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def library_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("ragtune", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "mlflow", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
