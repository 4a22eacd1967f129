"""The model-hub source of the catalogue: ``hf:REPO/FILE.gguf`` through ``huggingface_hub``.

``python -m rag models pull hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf``
downloads one GGUF file with ``hf_hub_download`` (so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and
``HF_TOKEN`` work as everywhere else, with its progress bar and resume of an interrupted
download), records its SHA-256, and checks it against the hub's when the hub reports one (the
ETag of an LFS file is its SHA-256). Only ``.gguf`` files are fetched: GGUF is data, where a
pickled checkpoint would be code.

Layout under the model cache: ``hf/ORG--NAME/FILE`` plus ``FILE.ragtune.json`` (the recorded hash);
downloads in progress sit in ``hf/.staging/`` until verified, so the cache never holds an
unverified file.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.catalogue import MARKER_SUFFIX, PullResult, cheap_check, read_marker, sha256_file, write_marker
from rag.errors import DataError, ModelNotFoundError, redact

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
    body = ref.strip()[len(PREFIX):] if ref.strip().startswith(PREFIX) else ref.strip()
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
    from huggingface_hub import errors as hub_errors

    # Read at call time rather than at huggingface_hub's import, so a later export still counts.
    endpoint = (os.environ.get("HF_ENDPOINT") or hub.constants.ENDPOINT).rstrip("/")
    where = f"{ref.spec} from {redact(endpoint)}"
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"} or hub.constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(f"cannot pull {where}: HF_HUB_OFFLINE is set and the file is not in the model "
                                 f"cache {root}; unset HF_HUB_OFFLINE (or point HF_ENDPOINT at a reachable mirror)")
    staging = Path(root) / "hf" / ".staging" / f"{ref.repo.replace('/', '--')}--{ref.filename.replace('/', '--')}"
    start = time.perf_counter()
    try:
        meta = hub.get_hf_file_metadata(hub.hf_hub_url(ref.repo, ref.filename, endpoint=endpoint))
        # Staging keeps huggingface_hub's .incomplete file between runs: an interrupted pull resumes.
        got = Path(hub.hf_hub_download(ref.repo, ref.filename, local_dir=staging, endpoint=endpoint))
    except hub_errors.GatedRepoError as e:
        raise ModelNotFoundError(f"cannot pull {where}: the repository is gated; accept its licence on the "
                                 "hub and set HF_TOKEN") from e
    except hub_errors.RepositoryNotFoundError as e:
        raise ModelNotFoundError(f"cannot pull {where}: no such repository '{ref.repo}' (or it is private: "
                                 "set HF_TOKEN)") from e
    except hub_errors.EntryNotFoundError as e:
        raise ModelNotFoundError(f"cannot pull {where}: the repository has no file '{ref.filename}'") from e
    except (hub_errors.HfHubHTTPError, hub_errors.OfflineModeIsEnabled, OSError) as e:
        raise ModelNotFoundError(f"cannot pull {where}: {redact(str(e)).splitlines()[0]}") from e
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
