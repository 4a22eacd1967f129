"""QLoRA hyperparameters: one dataclass, loaded from a YAML recipe plus ``key=value`` overrides.

Precedence: field defaults < YAML recipe (``--config``) < command-line flags < ``key=value``.
Every problem (unknown key, wrong type, out-of-range value) is collected and reported at once.
The resolved config is saved beside the adapter in ``ragtune_adapter.json``. The same parser
(:func:`coerce_layers`, :func:`parse_overrides`) builds the closed loop's parameters (:mod:`loop.params`).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

__all__ = ["LLAMA_TARGET_MODULES", "QLoRAConfig", "coerce_layers", "config_help", "load_config", "param",
           "parse_overrides", "read_yaml"]

LLAMA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_OPTIMIZERS = {"auto", "paged_adamw_8bit", "adamw_8bit", "adamw_torch", "adamw_torch_fused", "sgd", "adafactor"}
_DTYPES = {"bfloat16", "float16", "float32"}
_REPORT_TO = {"mlflow", "wandb", "none"}


def param(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with its one-line help (lists and dicts are copied per instance).

    ``keys=SomeDataclass`` (for a dict field) makes :func:`coerce_layers` accept any of that
    dataclass's field names as keys, each converted to that field's type.
    """
    meta = {"help": help, **metadata}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class QLoRAConfig:
    """Everything a fine-tuning run needs; see ``python -m finetune.qlora --help-config``."""

    # what to train
    base: str = param("", "Base model: '' or 'smollm2' (packaged SmolLM2-135M-Instruct), hf:ID, or a local folder.")
    data: str | None = param(None, "Training JSONL: rows {instruction, input?, output} or {messages: [...]}.")
    from_store: str | None = param(None, "Synthesise RAFT-style Q&A from this ingested store URI instead of --data.")
    output: str | None = param(None, "Adapter output folder (checkpoints go to OUTPUT/checkpoints).")
    # schedule
    max_steps: int = param(-1, "Optimizer steps to run; -1 = run `epochs` epochs.")
    epochs: float = param(1.0, "Passes over the training data (ignored when max_steps > 0).")
    lr: float = param(2e-4, "Peak learning rate (after warm-up; cosine decay to 0).")
    warmup_ratio: float = param(0.03, "Fraction of steps spent warming the learning rate up linearly.")
    lr_scheduler: str = param("cosine", "Learning-rate schedule after warm-up (any transformers scheduler name).")
    weight_decay: float = param(0.0, "AdamW weight decay.")
    max_grad_norm: float = param(1.0, "Clip the gradient norm to this (0 = no clipping).")
    batch_size: int = param(4, "Sequences per micro-batch (per device).")
    grad_accum: int = param(1, "Micro-batches accumulated per optimizer step.")
    optimizer: str = param("auto", "auto = paged_adamw_8bit on CUDA, adamw_torch on CPU; or a transformers optim name.")
    # LoRA
    rank: int = param(16, "LoRA rank r.")
    alpha: float = param(32.0, "LoRA alpha (the update is scaled by alpha / rank).")
    dropout: float = param(0.05, "Dropout on the LoRA path.")
    target_modules: list[str] = param(LLAMA_TARGET_MODULES,  # noqa: RUF009 - _f gives a default_factory "Modules that get LoRA (default: every attention + MLP "
                                   "projection of LLaMA-family models).")
    # quantisation / precision
    load_in_4bit: bool = param(True, "Load the base in 4-bit NF4 with double quantisation (QLoRA); falls back to "
                            "plain LoRA, and says so, when the device cannot.")
    compute_dtype: str = param("bfloat16", "Compute dtype for 4-bit matmuls and mixed precision: bfloat16|float16|float32.")
    gradient_checkpointing: bool = param(True, "Recompute activations in backward to save memory.")
    threads: int = param(0, "CPU threads for torch; 0 = auto: the cores left idle by other processes (load "
                      "average), at least 1. Oversubscribed cores make every op wait: 10x slower measured.")
    # data
    max_seq_len: int = param(1024, "Tokens per training sequence; longer examples are truncated.")
    packing: bool = param(True, "Pack several examples per sequence (no padding waste; attention stays per example).")
    eval_split: float = param(0.1, "Fraction of examples held out for evaluation (0 = no eval).")
    synth_distractors: int = param(2, "--from-store: distractor passages per synthesised question.")
    synth_max_examples: int = param(2000, "--from-store: at most this many synthesised examples.")
    # evaluation / checkpoints
    eval_every: int = param(50, "Evaluate on the held-out split every N optimizer steps.")
    save_every: int | None = param(None, "Checkpoint every N steps (default: eval_every); must be a multiple of it.")
    keep_checkpoints: int = param(2, "Checkpoints kept under OUTPUT/checkpoints (the best one is always kept).")
    early_stopping_patience: int = param(3, "Stop after this many evaluations without eval-loss improvement (0 = off).")
    logging_steps: int = param(1, "Log loss / learning rate / tokens per second every N steps.")
    seed: int = param(42, "Seeds Python, NumPy and torch RNGs, the data split and shuffling.")
    # tracking
    report_to: str = param("mlflow", "Experiment tracking: mlflow | wandb | none.")
    tracking_uri: str | None = param(None, "MLflow tracking URI (default: sqlite:///DATA_DIR/mlflow.db).")
    experiment: str = param("ragtune-finetune", "MLflow experiment (or W&B project) name.")
    run_name: str | None = param(None, "Run name shown in the tracker (default: output folder name).")
    registered_model: str = param("ragtune-adapter", "Register the adapter under this MLflow model name ('' = don't).")
    # safety
    trust_remote_code: bool = param(False, "Let the base model's repo run its own code (off unless you trust it).")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid fine-tuning config:\n" + "\n".join(f"  {p}" for p in problems))

    def problems(self) -> list[str]:
        p: list[str] = []

        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                p.append(f"{name}: {msg} (got {getattr(self, name)!r})")

        need(self.max_steps == -1 or self.max_steps > 0, "max_steps", "must be > 0, or -1 to use epochs")
        need(self.epochs > 0, "epochs", "must be > 0")
        need(self.lr > 0, "lr", "must be > 0")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        need(self.optimizer in _OPTIMIZERS, "optimizer", f"must be one of {sorted(_OPTIMIZERS)}")
        need(self.rank >= 1, "rank", "must be >= 1")
        need(self.alpha > 0, "alpha", "must be > 0")
        need(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        need(bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
             "target_modules", "must be a non-empty list of module names")
        need(self.compute_dtype in _DTYPES, "compute_dtype", f"must be one of {sorted(_DTYPES)}")
        need(self.max_seq_len >= 16, "max_seq_len", "must be >= 16")
        need(0 <= self.eval_split < 0.5, "eval_split", "must be in [0, 0.5)")
        need(self.synth_distractors >= 0, "synth_distractors", "must be >= 0")
        need(self.synth_max_examples >= 1, "synth_max_examples", "must be >= 1")
        need(self.eval_every >= 1, "eval_every", "must be >= 1")
        need(self.save_every is None or self.save_every >= 1, "save_every", "must be >= 1")
        if self.save_every and self.eval_split > 0 and self.save_every % self.eval_every:
            p.append(f"save_every: must be a multiple of eval_every={self.eval_every} so the best checkpoint "
                     f"can be kept (got {self.save_every})")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
        need(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0")
        need(self.threads >= 0, "threads", "must be >= 0 (0 = auto)")
        need(self.logging_steps >= 1, "logging_steps", "must be >= 1")
        need(self.report_to in _REPORT_TO, "report_to", f"must be one of {sorted(_REPORT_TO)}")
        need(self.data is None or self.from_store is None, "from_store", "give either data or from_store, not both")
        return p

    def check_runnable(self) -> None:
        """The checks a real run needs on top of ``__post_init__`` (inputs and output present)."""
        problems = []
        if not self.data and not self.from_store:
            problems.append("data: give --data FILE.jsonl or --from-store URI")
        if not self.output:
            problems.append("output: give --output DIR")
        if problems:
            raise ConfigError("invalid fine-tuning config:\n" + "\n".join(f"  {p}" for p in problems))

    @property
    def checkpoint_every(self) -> int:
        return self.save_every or self.eval_every

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_help() -> str:
    """One line per field: name, default, help (shown by ``--help-config``)."""
    lines = []
    for f in dataclasses.fields(QLoRAConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  {f.name} (default {default!r}): {f.metadata['help']}")
    return "\n".join(lines)


def _coerce(hint: Any, value: Any) -> Any:
    """Convert a YAML / command-line value to the type ``hint``; raises ValueError with a reason."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args and typing.get_origin(hint) is not list else hint
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null", ""}):
        if optional:
            return None
        raise ValueError("may not be empty")
    if typing.get_origin(base) is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError("expected a list")
        return [str(v) for v in value]
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"false", "no", "0", "off"}:
            return False
        raise ValueError("expected true or false")
    if base is int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ValueError("expected an integer") from None
        raise ValueError("expected an integer")
    if base is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
    if base is str:
        if isinstance(value, (dict, list)):
            raise ValueError("expected a string")
        return str(value)
    return value


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["lr=1e-4", "rank=8"]`` -> ``{"lr": "1e-4", "rank": "8"}``; raises ConfigError on a bad item."""
    out, bad = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            bad.append(f"  {item!r}: expected key=value")
            continue
        out[key.strip().replace("-", "_")] = value.strip()
    if bad:
        raise ConfigError("invalid override(s):\n" + "\n".join(bad))
    return out


def read_yaml(path: Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file holding a mapping at the top level.

    Raises:
        ConfigError: the file is missing, is not YAML, or does not hold a mapping.
    """
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml is in the finetune extra
        from rag.errors import MissingDependencyError

        raise MissingDependencyError("YAML recipes", "finetune", "yaml") from e
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
    return data


def coerce_layers(cls: type, layers: Iterable[tuple[str, Mapping[str, Any]]],
                  prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Merge ``(origin, {key: value})`` layers onto the fields of dataclass ``cls``, later layers winning.

    Each value is converted to its field's type, from YAML or from a command-line string alike. A
    field whose type is a dataclass is a section: its layers merge key by key under ``prefix`` +
    ``name.``, and the section is built from them. A dict field made with ``param(..., keys=C)``
    merges onto its default key by key, each key a field of ``C`` converted to that field's type.

    Returns:
        The values given (field name -> value) and the problems: every unknown key (with the
        closest known one) and every value of the wrong type, each naming where it came from.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    sections: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    problems: list[str] = []
    for origin, layer in layers:
        for key, raw in layer.items():
            name = f"{prefix}{key}"
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
                problems.append(f"{name}: unknown key (from {origin}){hint}")
            elif dataclasses.is_dataclass(hints[key]) or "keys" in fields[key].metadata:
                if isinstance(raw, Mapping):
                    sections.setdefault(key, []).append((origin, raw))
                else:
                    problems.append(f"{name}: expected a mapping (from {origin})")
            else:
                try:
                    values[key] = _coerce(hints[key], raw)
                except ValueError as e:
                    problems.append(f"{name}: {e} (got {raw!r} from {origin})")
    for key, section_layers in sections.items():
        f = fields[key]
        given, more = coerce_layers(f.metadata.get("keys") or hints[key], section_layers, f"{prefix}{key}.")
        problems.extend(more)
        values[key] = {**f.default_factory(), **given} if "keys" in f.metadata else hints[key](**given)
    return values, problems


def load_config(config: str | Path | None = None, flags: Mapping[str, Any] | None = None,
                overrides: Iterable[str] | Mapping[str, Any] = ()) -> QLoRAConfig:
    """Build a QLoRAConfig from defaults < YAML < flags (None = not given) < key=value overrides.

    Raises:
        ConfigError: listing every unknown key, bad type and out-of-range value, with its origin.
    """
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config:
        layers.append((str(config), read_yaml(Path(config))))
    if flags:
        layers.append(("flags", {k: v for k, v in flags.items() if v is not None}))
    if overrides:
        layers.append(("overrides", overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)))
    values, problems = coerce_layers(QLoRAConfig, layers)
    if not problems:
        try:
            return QLoRAConfig(**values)
        except ConfigError as e:
            raise e from None
    # Report type errors together with range errors of the values that did parse.
    try:
        QLoRAConfig(**values)
    except ConfigError as e:
        problems.extend(line.strip() for line in str(e).splitlines()[1:])
    raise ConfigError("invalid fine-tuning config:\n" + "\n".join(f"  {p}" for p in problems))
