"""Merge a LoRA/QLoRA adapter into its base: a standalone safetensors model, no peft needed to load it.

    python -m finetune.merge --adapter .ragtune/adapters/qa --output .ragtune/models/qa-merged

The base is loaded unquantised (merging into 4-bit weights would lose precision) in --dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rag.errors import ModelNotFoundError, RagtuneError
from rag.llms.adapter_meta import ADAPTER_META


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune.merge", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m finetune.merge --adapter .ragtune/adapters/qa "
                                       "--output .ragtune/models/qa-merged")
    p.add_argument("--adapter", required=True, metavar="DIR", help="Adapter folder written by finetune.qlora.")
    p.add_argument("--output", required=True, metavar="DIR", help="Folder for the merged model.")
    p.add_argument("--base", help="Base model (default: the one recorded in ragtune_adapter.json).")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--trust-remote-code", action="store_true", help="Let the base repo run its own code.")
    return p


def merge(adapter: str | Path, output: str | Path, base: str | None = None, dtype: str = "float32",
          trust_remote_code: bool = False, *, data_dir: str | Path,
          models_dir: str | Path | None = None) -> Path:
    """Merge ``adapter`` into its base and save model + tokenizer to ``output`` (safetensors).

    ``base`` defaults to the one the adapter's metadata names; a catalogue model's dense weights are
    cached under ``data_dir`` (the settings' data directory), its GGUF assembled in ``models_dir``.

    Raises:
        ModelNotFoundError: the adapter folder or its base cannot be found.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.modeling import resolve_base

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise ModelNotFoundError(f"no adapter in {adapter} (expected adapter_config.json from finetune.qlora)")
    meta = json.loads((adapter / ADAPTER_META).read_text()) if (adapter / ADAPTER_META).exists() else {}
    if base is None:
        base = meta.get("base_model_path")  # where training read the base: a hint, valid on the same machine
        if not base or not Path(base).is_absolute() or not Path(base).exists():
            spec = meta.get("base") or meta.get("base_model") or json.loads(
                (adapter / "adapter_config.json").read_text()).get("base_model_name_or_path", "")
            base = resolve_base(spec, data_dir, models_dir)
    else:
        base = resolve_base(base, data_dir, models_dir)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype),
                                                 trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok_src = adapter if (adapter / "tokenizer_config.json").exists() else Path(base)
    AutoTokenizer.from_pretrained(str(tok_src), trust_remote_code=trust_remote_code).save_pretrained(out)
    (out / "ragtune_merged.json").write_text(json.dumps({"adapter": str(adapter.resolve()), "base": base,
                                                        "dtype": dtype, "adapter_metadata": meta}, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rag.settings import load_settings

    try:
        settings = load_settings()
        out = merge(args.adapter, args.output, args.base, args.dtype, args.trust_remote_code,
                    data_dir=settings.data_dir, models_dir=settings.models_dir)
    except RagtuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"merged model: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
