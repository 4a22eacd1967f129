"""fsspec URLs as ingest paths: ``s3://bucket/prefix``, ``gs://...``, ``az://...``, ``memory://...``.

A URL is synced into a mirror folder under the data dir (``sources/<name>-<hash>/files``), and the
mirror is ingested like any folder. That keeps one pipeline for local and remote documents:

- source names are the object keys relative to the URL, exactly what ingesting the same tree
  from a local folder gives, so chunk ids match between the two;
- content hashes come from the bytes (the manifest hashes the mirrored file);
- incremental: an object whose size and ETag (or modification time) are unchanged is not
  downloaded again, so its mirrored file keeps its mtime and the manifest skips it; a changed
  object is downloaded again and replaced in the index; a deleted object is deleted from the
  mirror, and so removed from the index.

Credentials and endpoints come from the backend's own configuration (for S3: the AWS variables,
``AWS_ENDPOINT_URL_S3`` for S3-compatible servers, ``~/.aws``); nothing is logged or stored.
Ray parse tasks on nodes without the mirror fetch the object by its URL (``origin_url``).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from pathlib import Path

from rag.errors import DataError, MissingDependencyError, redact

STATE = ".ragtune-sync.json"  # hidden: the walker skips dotfiles


def is_url(path: str | Path) -> bool:
    """An fsspec URL other than a plain local path (``file://`` stays local)."""
    return isinstance(path, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) is not None \
        and not path.startswith("file://")


def mirror_root(url: str, data_dir: Path) -> Path:
    clean = url.rstrip("/")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", redact(clean).split("://", 1)[-1])[-60:]
    return Path(data_dir).expanduser().resolve() / "sources" / f"{slug}-{hashlib.sha256(clean.encode()).hexdigest()[:10]}"


def _fs(url: str):
    try:
        import fsspec
    except ModuleNotFoundError as e:
        raise MissingDependencyError("URL ingest paths need fsspec: pip install 'ragtune[ray]' (s3fs)") from e
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        scheme = url.split("://", 1)[0]
        raise MissingDependencyError(f"no fsspec backend for {scheme}:// ({e}); for s3:// pip install s3fs") from e


def sync(url: str, data_dir: Path) -> Path:
    """Mirror the objects under ``url`` into a folder under ``data_dir``; returns that folder (or
    the file, when ``url`` names one object).

    Raises:
        FileNotFoundError: nothing exists at ``url``.
        DataError: an object key that would land outside the mirror (``..`` in the key).
    """
    fs, root = _fs(url)
    root = root.rstrip("/")
    base = mirror_root(url, data_dir)
    files = base / "files"
    files.mkdir(parents=True, exist_ok=True)
    state_path = base / STATE
    state: dict[str, list] = json.loads(state_path.read_text()) if state_path.exists() else {}
    single = False
    try:
        listing = fs.find(root, detail=True, withdirs=False)
        if not listing and fs.isfile(root):
            listing, single = {root: fs.info(root)}, True
    except FileNotFoundError:
        listing = {}
    if not listing and not fs.exists(root):
        raise FileNotFoundError(f"no such file or folder: {redact(url)}")
    seen: set[str] = set()
    for path, info in sorted(listing.items()):
        if info.get("type", "file") != "file":
            continue
        if path.rstrip("/") == root:  # the URL names one object (some backends list it under itself)
            single, rel = True, posixpath.basename(path)
        else:
            rel = posixpath.relpath(path, root)
        local = (files / rel).resolve()
        if not local.is_relative_to(files.resolve()):
            raise DataError(f"{redact(url)}: object key {path!r} points outside the folder (contains '..'); "
                            "rename the object")
        seen.add(rel)
        stamp = [info.get("size"), str(info.get("ETag") or info.get("etag") or info.get("LastModified")
                                       or info.get("mtime") or info.get("created") or "")]
        if state.get(rel) == stamp and local.is_file():
            continue  # unchanged: keep the file (and its mtime) so the manifest skips it
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name("." + local.name + ".part")
        fs.get_file(path, str(part))
        os.replace(part, local)
        state[rel] = stamp
    for rel in sorted(set(state) - seen):  # deleted objects leave the mirror, then the index
        (files / rel).unlink(missing_ok=True)
        del state[rel]
    for local in list(files.rglob("*")):  # anything else (a crashed download, a manual edit)
        rel = local.relative_to(files).as_posix()
        if local.is_file() and rel not in seen:
            local.unlink()
    state_path.write_text(json.dumps(state, sort_keys=True))
    return files / next(iter(seen)) if single else files


def resolve(paths, data_dir: Path) -> tuple[list, dict[str, str]]:
    """Replace URLs in ``paths`` by their synced mirrors.

    Returns:
        (paths to walk, ``{mirror folder: URL}`` for ``origin_url``).
    """
    out, origins = [], {}
    for p in paths:
        if is_url(p):
            local = sync(p, data_dir)
            origins[str(local)] = p.rstrip("/")
            out.append(local)
        else:
            out.append(p)
    return out, origins


def origin_url(path: str, origins: dict[str, str]) -> str | None:
    """The URL a mirrored file came from (None for a plain local file)."""
    for root, url in origins.items():
        if path == root:
            return url
        if path.startswith(root + os.sep):
            return url + "/" + Path(path).relative_to(root).as_posix()
    return None


def fetch(url: str, dst_dir: str) -> str:
    """Download one object into ``dst_dir`` under its own name (loaders go by the suffix)."""
    fs, path = _fs(url)
    local = os.path.join(dst_dir, posixpath.basename(path.rstrip("/")) or "object")
    fs.get_file(path, local)
    return local
