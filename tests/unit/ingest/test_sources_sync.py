"""ingest/sources.py on fsspec's in-memory filesystem: the mirror follows the objects (fast, offline)."""

from __future__ import annotations

import uuid

import pytest

from ingest.sources import is_url, origin_url, resolve, sync

fsspec = pytest.importorskip("fsspec")


@pytest.fixture
def bucket():
    fs = fsspec.filesystem("memory")
    root = f"/b-{uuid.uuid4().hex[:8]}"
    fs.pipe({f"{root}/docs/a.txt": b"alpha", f"{root}/docs/sub/b.md": b"# beta"})
    yield fs, f"memory://{root}/docs"
    fs.rm(root, recursive=True)


def test_urls_are_told_from_paths():
    assert is_url("s3://b/p") and is_url("memory://x") and not is_url("./docs") and not is_url("file:///tmp")


def test_mirror_follows_adds_changes_and_deletes(bucket, tmp_path):
    fs, url = bucket
    root = sync(url, tmp_path)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == ["a.txt", "sub/b.md"]
    before = (root / "a.txt").stat().st_mtime_ns
    assert sync(url, tmp_path) == root and (root / "a.txt").stat().st_mtime_ns == before   # unchanged: untouched

    fs.pipe(url.removeprefix("memory://") + "/a.txt", b"alpha, longer now")
    fs.rm(url.removeprefix("memory://") + "/sub/b.md")
    sync(url, tmp_path)
    assert (root / "a.txt").read_bytes() == b"alpha, longer now" and not (root / "sub" / "b.md").exists()
    paths, origins = resolve([url, "./local"], tmp_path)
    assert paths == [root, "./local"] and origin_url(str(root / "a.txt"), origins) == url + "/a.txt"


def test_missing_prefix_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder: memory://"):
        sync(f"memory://nothing-{uuid.uuid4().hex[:6]}/here", tmp_path)
