"""Exported embedder runtimes in the model cache: built once, atomically, verified on every open.

An export lives in ``<cache>/<model>-<content hash>-<backend>-<weights>/`` and is only ever
created by renaming a finished temporary folder into place. The folder's manifest
(``ragtune-export.json``: the key and the sha256 of every file) is written last, so a folder
without a manifest, or whose files no longer match it, is a half-written or damaged export:
it is moved aside and rebuilt, never loaded. A file lock serialises concurrent builders of the
same key; temporary folders left by a killed builder are removed by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

MANIFEST = "ragtune-export.json"
FORMAT = 1
# Folders an export or a tool may add inside a model folder: not part of the model's identity.
_SKIP_DIRS = {"openvino", "onnx", ".git", ".cache"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path, skip_dirs: set[str] = frozenset()) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        out += [Path(dirpath) / f for f in sorted(filenames)]
    return out


def model_digest(model_dir: str | Path) -> str:
    """sha256 over a model folder's file names and contents (what the export is made from)."""
    root = Path(model_dir)
    stamp = tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in _files(root, _SKIP_DIRS))
    return _digest(str(root.resolve()), stamp)


@lru_cache(maxsize=32)
def _digest(root: str, stamp: tuple) -> str:
    # Memoised per process on names, sizes and mtimes: hashing ~90 MB once per run is enough.
    h = hashlib.sha256()
    for rel, _, _ in stamp:
        h.update(rel.encode() + b"\0" + _sha256(Path(root) / rel).encode() + b"\n")
    return h.hexdigest()


def export_key(model_dir: str | Path, backend: str, weights: str) -> dict:
    """What an export is keyed by: the source model's content hash, the backend and the weights."""
    return {"format": FORMAT, "model_sha256": model_digest(model_dir), "backend": backend, "weights": weights}


def export_path(cache_dir: str | Path, name: str, key: dict) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rstrip("/").split("/")[-1])[-60:] or "model"
    return Path(cache_dir).expanduser() / f"{slug}-{key['model_sha256'][:16]}-{key['backend']}-{key['weights']}"


def verify(folder: Path, key: dict) -> bool:
    """True only for a complete export of ``key``: manifest present, key equal, every file intact."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("key") != key or not isinstance(manifest.get("files"), dict):
        return False
    for rel, want in manifest["files"].items():
        path = folder / rel
        try:
            if path.stat().st_size != want["size"] or _sha256(path) != want["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released by the OS if this process dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_tree(root: Path) -> None:
    for path in _files(root):
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    for dirpath, _, _ in os.walk(root):
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_export(cache_dir: str | Path, name: str, key: dict, build: Callable[[Path], dict],
                  log: Callable[[str], None] = lambda m: None) -> Path:
    """The verified export folder for ``key``, building it first when missing or damaged.

    Args:
        build: writes the export into the (empty) folder it is given; returns extra facts for the
            manifest (e.g. how it was calibrated).

    Returns:
        The final folder; its manifest has been checked against every file.
    """
    final = export_path(cache_dir, name, key)
    if verify(final, key):
        return final
    with _locked(final.with_name(final.name + ".lock")):
        if verify(final, key):  # another process finished it while we waited
            return final
        for stale in final.parent.glob(final.name + ".tmp-*"):  # left by a killed builder
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            log(f"embedder export {final} is incomplete or damaged: rebuilding it")
            broken = final.with_name(f"{final.name}.tmp-broken-{os.getpid()}")
            os.rename(final, broken)
            shutil.rmtree(broken, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the model cache may be shared
        try:
            t0 = time.perf_counter()
            log(f"exporting the embedder to {final.name} (once per model; ~1-2 minutes) ...")
            extra = build(tmp)
            files = {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in _files(tmp)}
            manifest = {"key": key, "files": files, "built_s": round(time.perf_counter() - t0, 1), **(extra or {})}
            _fsync_tree(tmp)
            # Written last and fsynced: its presence means every file above is complete.
            with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(tmp)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if not verify(final, key):  # pragma: no cover - the disk changed under us
        raise OSError(f"embedder export {final} failed verification right after it was written")
    return final
