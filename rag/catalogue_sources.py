"""Where catalogue models come from and how their bytes are checked (used by :mod:`rag.catalogue`).

- **PyPI parts**: :func:`part_files` finds the installed part files (never importing the packages:
  their code is not ours to run) and :func:`assemble` streams them, in order, through SHA-256 into a
  temporary file beside the destination, renamed into place only when size and hash are the pinned
  ones.
- **A model hub**: :func:`pull_hub` fetches ``hf:ORG/REPO/FILE.gguf`` with
  ``huggingface_hub.hf_hub_download`` (so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` work as
  everywhere else, with its progress bar, and a dropped connection resumes where it stopped with a
  Range request), records its SHA-256 and checks it against the hub's when the hub reports one (the
  ETag of an LFS file is its SHA-256). Only ``.gguf`` files: GGUF is data, a pickled checkpoint
  would be code. Layout: ``hf/ORG--REPO/FILE``; a download sits in ``hf/.staging/`` until its hash
  is checked, so the cache never holds an unverified file.
- **Markers**: ``FILE.ragtune.json`` beside each file records its SHA-256, size and mtime, so a
  later check (:func:`cheap_check`) need not re-read a gigabyte.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, DataError, ModelNotFoundError, redact

MARKER_SUFFIX = ".ragtune.json"
CHUNK = 8 << 20  # bytes per read: big enough for full disk speed, small enough to never hold a model


def marker_path(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


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


# ---- hashing and markers -------------------------------------------------------------------------

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

def part_files(entry: Any) -> list[Path]:
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


def assemble(sources: Iterable[Path], dest: Path, *, size: int, sha256: str, what: str, fix: str) -> float:
    """Concatenate ``sources`` into ``dest`` atomically; returns the seconds it took.

    ``fix`` (the command that reinstalls the parts) ends a mismatch message. Writes a temporary
    file beside ``dest`` (same filesystem, so the final rename is atomic),
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
                                            f"(at {src}): {fix}")
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != size or actual != sha256:
            raise DataError(f"{what}: the assembled file is {written:,} bytes with SHA-256 {actual}, expected "
                            f"{size:,} bytes with SHA-256 {sha256}; nothing was written: {fix}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return time.perf_counter() - start


# ---- the hub source ---------------------------------------------------------------------------

PREFIX = "hf:"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class HubRef:
    repo: str       # "org/name"
    filename: str   # path inside the repo, ends with .gguf

    @property
    def spec(self) -> str:
        return f"{PREFIX}{self.repo}/{self.filename}"


def parse_ref(ref: str) -> HubRef:
    """``hf:ORG/NAME/FILE.gguf`` (FILE may sit in sub-folders) -> :class:`HubRef`.

    Raises:
        ModelNotFoundError: not of that form (says what is accepted).
    """
    body = ref.strip().removeprefix(PREFIX)
    parts = body.split("/")
    if (len(parts) < 3 or not body.lower().endswith(".gguf")
            or not all(_NAME_PART.fullmatch(p) for p in parts)):
        raise ModelNotFoundError(
            f"'{ref}' is not a hub model reference: expected hf:ORG/REPO/FILE.gguf (one GGUF file of a model "
            "repository, e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf)")
    return HubRef("/".join(parts[:2]), "/".join(parts[2:]))


def _folder(ref: HubRef, root: Path) -> Path:
    return Path(root) / "hf" / ref.repo.replace("/", "--")


def hub_path(ref: str | HubRef, root: Path) -> Path:
    """Where ``hf:REPO/FILE.gguf`` lives in the model cache ``root`` (whether or not it is there)."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    return _folder(ref, root) / ref.filename


def pull_hub(spec: str, root: Path, *, verify: bool = False) -> PullResult:
    """Download ``hf:REPO/FILE.gguf`` into the model cache, or accept the copy already there.

    Raises:
        ModelNotFoundError: offline, unreachable hub, unknown repo or file, gated without a token.
        DataError: the downloaded bytes do not match the hash the hub reports.
    """
    ref = parse_ref(spec)
    dest = hub_path(ref, root)
    marker = cheap_check(dest)
    if marker and not verify:
        return PullResult(ref.spec, dest, marker["size"], marker["sha256"], "present")
    if marker and verify:
        start = time.perf_counter()
        actual = sha256_file(dest, f"verifying {ref.filename}")
        if actual == marker["sha256"]:
            return PullResult(ref.spec, dest, marker["size"], actual, "verified", time.perf_counter() - start)
        dest.unlink()  # changed on disk since it was recorded: fetch it again
    import huggingface_hub as hub  # installed with transformers; imported here as it is slow
    from huggingface_hub import constants as hub_constants
    from huggingface_hub import errors as hub_errors

    # Read at call time rather than at huggingface_hub's import, so a later export still counts.
    endpoint = (os.environ.get("HF_ENDPOINT") or hub_constants.ENDPOINT).rstrip("/")
    where = f"{ref.spec} from {redact(endpoint)}"
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"} or hub_constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(f"cannot pull {where}: HF_HUB_OFFLINE is set and the file is not in the model "
                                 f"cache {root}; unset HF_HUB_OFFLINE (or point HF_ENDPOINT at a reachable mirror)")
    staging = Path(root) / "hf" / ".staging" / f"{ref.repo.replace('/', '--')}--{ref.filename.replace('/', '--')}"
    start = time.perf_counter()
    try:
        meta = hub.get_hf_file_metadata(hub.hf_hub_url(ref.repo, ref.filename, endpoint=endpoint))
        got = Path(hub.hf_hub_download(ref.repo, ref.filename, local_dir=staging, endpoint=endpoint))
    except hub_errors.GatedRepoError as e:
        raise ModelNotFoundError(f"cannot pull {where}: the repository is gated; accept its licence on the "
                                 "hub and set HF_TOKEN") from e
    except hub_errors.RepositoryNotFoundError as e:
        raise ModelNotFoundError(f"cannot pull {where}: no such repository '{ref.repo}' (or it is private: "
                                 "set HF_TOKEN)") from e
    except hub_errors.EntryNotFoundError as e:
        raise ModelNotFoundError(f"cannot pull {where}: the repository has no file '{ref.filename}'") from e
    except (hub_errors.HfHubHTTPError, hub_errors.OfflineModeIsEnabled, OSError, *_transport_errors()) as e:
        raise ModelNotFoundError(f"cannot pull {where}: {redact(str(e)).splitlines()[0]} (check the network, "
                                 "HF_ENDPOINT and HF_TOKEN)") from e
    actual = sha256_file(got, f"hashing {ref.filename}")
    expected = (meta.etag or "").strip('"').lower()
    expected = expected if _SHA256.fullmatch(expected) else None  # a non-LFS etag is a git SHA-1
    if expected and actual != expected:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{ref.spec}: the downloaded file has SHA-256 {actual}, the hub reports {expected}; "
                        "nothing was kept: pull again (a proxy or mirror may be serving a corrupted copy)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, dest)  # same filesystem: atomic, and the cache never sees an unverified file
    shutil.rmtree(staging, ignore_errors=True)
    write_marker(dest, actual, name=ref.spec, source="hub", endpoint=redact(endpoint),
                 commit=meta.commit_hash, hub_sha256=expected)
    return PullResult(ref.spec, dest, dest.stat().st_size, actual, "downloaded", time.perf_counter() - start,
                      {"hub_sha256": expected, "commit": meta.commit_hash})


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection/timeout errors (huggingface_hub 2.x uses httpx2, 1.x httpx)."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def hub_rows(root: Path) -> list[dict[str, Any]]:
    """``models list`` rows for the files pulled from a hub (what they are, read from the GGUF header)."""
    base = Path(root) / "hf"
    if not base.is_dir():
        return []
    out = []
    for marker_file in sorted(base.glob(f"*/**/*{MARKER_SUFFIX}")):
        path = marker_file.with_name(marker_file.name[: -len(MARKER_SUFFIX)])
        recorded = read_marker(path) or {}
        spec = recorded.get("name")
        if ".staging" in marker_file.parts or not path.is_file() or not str(spec).startswith(PREFIX):
            continue
        installed = cheap_check(path) is not None
        info = gguf_info(path)
        out.append({"name": spec, "family": info.get("family", "?"), "parameters": info.get("parameters", "?"),
                    "quantisation": info.get("quantisation", "?"), "size": path.stat().st_size,
                    "licence": info.get("licence", "?"), "context_window": info.get("context_window"),
                    "source": f"model hub ({recorded.get('endpoint', '?')})",
                    "status": "installed" if installed else "not verified", "installed": installed,
                    "path": str(path), "install": "" if installed else f"python -m rag models pull {spec} --verify",
                    "upstream": spec[len(PREFIX):], "sha256": recorded.get("sha256")})
    return out


def gguf_info(path: Path) -> dict[str, Any]:
    """Family, parameters, quantisation, licence and context window from a GGUF header ({} if unreadable).

    The ``gguf`` reader only maps the file and parses its header: no code in the file runs.
    """
    try:
        import gguf

        fields = gguf.GGUFReader(str(path)).fields

        def value(key: str) -> Any:
            f = fields.get(key)
            return f.contents() if f is not None else None

        arch = value("general.architecture") or "?"
        ftype = value("general.file_type")
        quant = gguf.LlamaFileType(ftype).name.removeprefix("MOSTLY_") if ftype is not None else "?"
        return {"family": f"{value('general.basename') or arch} ({arch})", "parameters": value("general.size_label"),
                "quantisation": quant, "licence": value("general.license"),
                "context_window": value(f"{arch}.context_length")}
    except Exception:  # noqa: BLE001 - a listing must not fail on one odd file; the row shows '?'
        return {}
