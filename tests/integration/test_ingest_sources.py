"""fsspec URLs as ingest paths (ingest/sources.py) against a real S3 API: moto's server on 127.0.0.1.

The same documents ingested from ``s3://bucket/prefix`` and from a local folder give the same
chunk ids; re-runs skip unchanged objects, replace changed ones and remove deleted ones.
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("s3fs", reason="S3 ingest needs s3fs: pip install 'ragtune[ray]'")
    server_mod = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the dev extra)")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch, tmp_path):
    import uuid

    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": s3_server,
                        "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a cached client would keep an earlier endpoint
    name = f"docs-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=name)
    for path in sorted(SAMPLE.iterdir()):
        client.upload_file(str(path), name, f"team/{path.name}")
    yield client, name


def test_s3_prefix_ingests_like_a_local_folder_and_stays_incremental(bucket, make_rag, tmp_path):
    client, name = bucket
    url = f"s3://{name}/team"
    local_dir = tmp_path / "team"
    shutil.copytree(SAMPLE, local_dir)

    s3_rag, local_rag = make_rag(store=str(tmp_path / "s3-index")), make_rag(store=str(tmp_path / "local-index"))
    got, ref = s3_rag.ingest([url]), local_rag.ingest([local_dir])
    n = len(list(SAMPLE.iterdir()))
    assert (got.added, got.chunks, got.failed) == (ref.added, ref.chunks, []) and got.added == n
    assert _ids(s3_rag) == _ids(local_rag) and len(_ids(s3_rag)) == got.chunks   # same sources, same chunk ids

    again = s3_rag.ingest([url])
    assert (again.added, again.updated, again.unchanged, again.removed, again.chunks) == (0, 0, n, 0, 0)

    body = (SAMPLE / "acme_widget_faq.md").read_text() + "\n\n## New\n\nThe Acme Widget glows blue when charged.\n"
    client.put_object(Bucket=name, Key="team/acme_widget_faq.md", Body=body.encode())
    client.delete_object(Bucket=name, Key="team/acme_support_notes.txt")
    changed = s3_rag.ingest([url])
    assert (changed.added, changed.updated, changed.unchanged, changed.removed) == (0, 1, n - 2, 1)
    srcs = s3_rag.store.sources()
    assert "acme_support_notes.txt" not in srcs and "acme_widget_faq.md" in srcs
    hit = s3_rag.retrieve("What colour does the widget glow when charged?", k=3, mode="dense")[0]
    assert hit.source == "acme_widget_faq.md" and "glows blue" in hit.text


def test_s3_single_object_and_missing_prefix(bucket, make_rag, tmp_path):
    _, name = bucket
    rag = make_rag(store=str(tmp_path / "index"))
    one = rag.ingest([f"s3://{name}/team/gettysburg.pdf"])
    assert one.added == 1 and list(rag.store.sources()) == ["gettysburg.pdf"]
    with pytest.raises(FileNotFoundError, match="no such file or folder: s3://"):
        rag.ingest([f"s3://{name}/nothing-here"])


def test_ray_engine_reads_s3(bucket, ray_cluster, make_rag, tmp_path):
    _, name = bucket
    url = f"s3://{name}/team"
    ref = make_rag(store=str(tmp_path / "local-index"))
    ref.ingest([url])
    rag = make_rag(store=str(tmp_path / "ray-index"))
    got = rag.ingest([url], engine="ray", ray_address=ray_cluster.address)
    assert got.added == len(list(SAMPLE.iterdir())) and not got.failed
    assert _ids(rag) == _ids(ref)


def _ids(rag) -> set[str]:
    return {c.id for chunks, _ in rag.store.iter_chunks() for c in chunks}
