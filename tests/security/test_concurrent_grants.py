"""Eight clients with different keys ask at once while a writer ingests into ``hr``: every source
and hit id in every reply belongs to a collection its key was granted, and every count covers only
those. Real HTTP against the real server (tests/security/conftest.py; fakes: team_helpers.py)."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.security.team_helpers import ADVERSARIAL, leaks_in

pytest.importorskip("fastapi")

GRANTS = [["hr"], ["legal"], ["handbook"], ["handbook", "hr"], ["handbook", "legal"], ["hr"], ["legal"],
          ["hr", "legal"]]
ROUNDS = 3


def _requests(i: int) -> list[tuple[str, str, dict]]:
    q = ADVERSARIAL[i % len(ADVERSARIAL)]
    chat = {"model": "ragtune", "messages": [{"role": "user", "content": q}]}
    return [("POST", "/ask", {"question": q}), ("POST", "/ask", {"question": q, "stream": True}),
            ("POST", "/retrieve", {"question": q, "k": 20}), ("POST", "/v1/chat/completions", chat),
            ("POST", "/v1/chat/completions", {**chat, "stream": True}), ("GET", "/stats", {}),
            ("GET", "/collections", {})]


def test_eight_readers_and_a_writer_at_once(team, tally):
    from rag.keys import KeyStore

    store = KeyStore(team.rag.settings.data_dir)
    readers = {f"client{i}": (store.create(f"client{i}", "reader", g)[1], g) for i, g in enumerate(GRANTS)}
    store.close()
    replies: list[tuple[str, list[str], int, str]] = []   # (client, grant, status, body)
    written: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(readers) + 1)

    def reader(name: str, key: str, grant: list[str]) -> None:
        try:
            with httpx.Client(base_url=team.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
                start.wait()
                for rnd in range(ROUNDS):
                    for method, path, body in _requests(int(name[-1]) + rnd):
                        r = c.request(method, path, json=body or None)
                        with lock:
                            replies.append((name, grant, r.status_code, r.text))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    def writer() -> None:
        try:
            with httpx.Client(base_url=team.url, headers=team.headers("hr-writer"), timeout=120) as c:
                start.wait()
                for i in range(12):
                    r = c.post("/ingest", json={"texts": [f"Shift rota {i}: the night shift starts at {18 + i % 5}."],
                                                "metadatas": [{"source": f"hr/rota-{i}.txt"}]})
                    assert r.status_code == 200, r.text
                    written.extend(r.json()["chunk_ids"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(n, k, g)) for n, (k, g) in readers.items()]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    ids = {**team.ids, **{i: "hr" for i in written}}  # checked after the writer's ids are known
    leaks = [(name, grant, found) for name, grant, status, text in replies
             if (found := leaks_in(text, grant, ids))]
    leaks += [(name, grant, "counts outside the grant") for name, grant, status, text in replies
              if '"collections"' in text and any(f'"{c}"' in text for c in {"hr", "legal", "handbook"} - set(grant))]
    tally["requests"] += len(replies) + len(written)
    tally["leaks"] += len(leaks)
    assert len(replies) == len(readers) * ROUNDS * len(_requests(0)) and len(written) == 12
    assert {status for *_, status, _ in replies} == {200}, [(n, s, t[:200]) for n, _, s, t in replies if s != 200]
    assert not leaks, leaks[:5]
    # the readers of hr did get hr passages (the writer's too, by the end): the searches ran
    hr_hits = [text for name, grant, _, text in replies if grant == ["hr"] and '"hits"' in text]
    assert hr_hits and all('"collection": "hr"' in t or '"collection":"hr"' in t for t in hr_hits)
