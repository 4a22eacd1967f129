"""Two machines sharing incremental state through the store (ingest/manifests/pgvector.py).

"Machines" are ``python -m ingest`` processes with separate data dirs (nothing local is shared)
over the same folder and the same pgvector table: started together, each file is ingested by one
of them (whichever claims it first) and the store ends with exactly a clean ingest's chunks; one killed with SIGKILL mid-run is completed
by the next run, which may come from the other machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.ingest_processes import finish as _done
from tests.ingest_processes import make_corpus, two_machines_at_once
from tests.ingest_processes import start_ingest as _start
from tests.ingest_processes import store_ids as _ids

pytestmark = pytest.mark.slow

@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path)


def test_two_machines_at_once_end_with_one_clean_ingest(pg_table, corpus, tmp_path, make_rag):
    two_machines_at_once(corpus, pg_table, tmp_path, make_rag)


def test_a_machine_killed_mid_run_is_completed_by_the_next_run(pg_table, corpus, tmp_path, make_rag):
    import psycopg

    from rag.stores.pgvector import parse_uri

    ref = make_rag(store=str(tmp_path / "ref")).ingest([corpus])
    a = _start(corpus, pg_table, tmp_path / "a")
    table = parse_uri(pg_table)["table"] + "_manifest"
    deadline = time.monotonic() + 300
    with psycopg.connect(**parse_uri(pg_table)["conn"], autocommit=True) as conn:
        while True:  # kill once some files are done and others are not
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline, "the first run never stored a file"
            try:
                done = conn.execute(f"SELECT count(*) FROM {table} WHERE status='done'").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                done = 0
            if done >= 2:
                break
            time.sleep(0.1)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=30)
    assert done < ref.added

    rb = _done(_start(corpus, pg_table, tmp_path / "b"))   # the other machine, right away
    assert rb["added"] + rb["updated"] >= ref.added - done and rb["unchanged"] >= done
    assert _ids(pg_table) == {c.id for chunks, _ in make_rag(store=str(tmp_path / "ref")).store.iter_chunks()
                              for c in chunks}
