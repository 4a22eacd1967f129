"""Authentication and collection isolation: what auth costs per request, and whether any reply
leaks across collections under an attacker's questions.

    python bench/auth_bench.py                   # 400 rounds, 600 isolation requests
    python bench/auth_bench.py --rounds 100 --flood 200 --json

What runs (one process, real HTTP to uvicorn on 127.0.0.1, keep-alive clients like the openai one):
1. One index with ``hr``, ``legal`` and ``handbook`` collections (tests/security/team_helpers.py;
   HashEmbedder and an echo LLM, so the figures are the server's, not a model's).
2. Two servers over it, started side by side: auth off (no keys, loopback) and auth on (keys,
   per-key rate limit raised out of the way, audit log on). ``--rounds`` rounds, each sending the
   same ``/retrieve`` and ``/v1/models`` request to both, in alternating order, so drift on a
   shared machine hits both alike. Reported: p50/p95 per route and server, the p50 added by auth
   (ms) and the on/off ratio.
3. Key verification alone (``KeyStore.verify``), interleaved: the right key, the right id with a
   wrong secret, an unknown id, garbage. Reported: median microseconds and max/min ratio.
4. Isolation flood: ``--flood`` requests from an ``hr`` reader over /ask (plain and streamed),
   /retrieve, /v1/chat/completions (plain and streamed), /stats and /collections, with questions
   that quote legal documents and bodies that name other collections. A leak is any legal marker
   word, legal file name, id or collection outside ``hr`` in a reply, or a 200 to a body naming
   ``legal``. Reported: requests tried, leaks found (the target is 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _servers(tmp: Path):
    from rag.keys import KeyStore
    from rag.llms import register
    from rag.server import create_app
    from tests.http_helpers import EchoLLM
    from tests.reliability._helpers import hash_rag
    from tests.security.team_helpers import build_index

    register("echo", EchoLLM)
    off = hash_rag(data_dir=tmp / "off", llm="echo:")
    on = hash_rag(data_dir=tmp / "on", llm="echo:", auth={"requests_per_minute": 10**6, "burst": 10**6})
    ids = build_index(off)
    build_index(on)
    store = KeyStore(on.settings.data_dir)
    keys = {"reader": store.create("hr-reader", "reader", ["hr"])[1],
            "all": store.create("everyone", "reader", ["hr", "legal", "handbook"])[1]}
    store.close()
    return create_app(off), create_app(on), keys, ids, (off, on)


def latency(url_off: str, url_on: str, key: str, rounds: int) -> dict:
    import httpx

    body = {"question": "parental leave salary bands", "k": 5}
    routes = {"/retrieve": ("POST", body), "/v1/models": ("GET", None)}
    out: dict = {}
    with httpx.Client(base_url=url_off) as off, httpx.Client(base_url=url_on,
                                                              headers={"Authorization": f"Bearer {key}"}) as on:
        for path, (method, payload) in routes.items():
            times: dict[str, list[float]] = {"off": [], "on": []}
            for i in range(rounds + 20):
                order = [("off", off), ("on", on)] if i % 2 else [("on", on), ("off", off)]
                for name, client in order:
                    t = time.perf_counter()
                    r = client.request(method, path, json=payload)
                    elapsed = time.perf_counter() - t
                    assert r.status_code == 200, r.text
                    if i >= 20:  # warm-up left out
                        times[name].append(elapsed * 1000)
            p50 = {k: statistics.median(v) for k, v in times.items()}
            out[path] = {"p50_off_ms": round(p50["off"], 3), "p50_on_ms": round(p50["on"], 3),
                         "p95_off_ms": round(_pct(times["off"], 0.95), 3), "p95_on_ms": round(_pct(times["on"], 0.95), 3),
                         "added_p50_ms": round(p50["on"] - p50["off"], 3), "ratio": round(p50["on"] / p50["off"], 3)}
    return out


def verify_timing(tmp: Path, n: int = 2000) -> dict:
    from rag.keys import KeyStore

    store = KeyStore(tmp / "timing")
    for i in range(100):
        store.create(f"user{i}", "reader", ["hr"])
    _, right = store.create("alice", "reader", ["hr"])
    cases = {"right key": right, "right id, wrong secret": right[:15] + ("A" if right[15] != "A" else "B") + right[16:],
             "unknown id": "rtk_0123456789_" + right[15:], "garbage": "x" * 58}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(n):
        for name, key in cases.items():
            t = time.perf_counter()
            store.verify(key)
            times[name].append((time.perf_counter() - t) * 1e6)
    store.close()
    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    return {"median_us": med, "max_over_min": round(max(med.values()) / min(med.values()), 3)}


def flood(url: str, key: str, ids: dict, n: int) -> dict:
    import httpx

    from tests.security.team_helpers import ADVERSARIAL, leaks_in

    injected = [{}, {"collections": ["legal"]}, {"collections": ["hr", "legal"]}, {"collections": ["*"]},
                {"filter": {"collections": ["legal"]}}, {"filter": {"source": "legal/merger.txt"}}]
    sent = leaks = 0
    examples: list[str] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        i = 0
        while sent < n:
            q = ADVERSARIAL[i % len(ADVERSARIAL)]
            extra = injected[(i // len(ADVERSARIAL)) % len(injected)]
            chat = {"model": "ragtune", "messages": [{"role": "user", "content": q}]}
            chat_extra = {"collections": extra["collections"]} if "collections" in extra else {}
            calls = [("POST", "/ask", {"question": q, **extra}), ("POST", "/ask", {"question": q, "stream": True, **extra}),
                     ("POST", "/retrieve", {"question": q, "k": 20, **extra}),
                     ("POST", "/v1/chat/completions", {**chat, **chat_extra}),
                     ("POST", "/v1/chat/completions", {**chat, "stream": True, **chat_extra}),
                     ("GET", "/stats", None), ("GET", "/collections", None)]
            for method, path, body in calls:
                r = c.request(method, path, json=body)
                sent += 1
                found = leaks_in(r.text, ["hr"], ids)
                named = {k: body[k] for k in ("collections", "filter") if body and k in body}
                names_legal = '"legal"' in json.dumps(named) or '"*"' in json.dumps(named)
                if r.status_code == 200 and names_legal:
                    found.append(f"200 to a body naming legal ({path})")
                if path in ("/stats", "/collections") and any(x in r.text for x in ('"legal"', '"handbook"')):
                    found.append(f"{path} counts another collection")
                leaks += len(found)
                examples += found[:1]
            i += 1
    return {"requests": sent, "leaks": leaks, "examples": examples[:5]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=400, help="latency rounds per route (each hits both servers)")
    p.add_argument("--flood", type=int, default=600, help="isolation requests from the hr reader")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    from tests.http_helpers import serving

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        app_off, app_on, keys, ids, rags = _servers(tmp)
        try:
            with serving(app_off) as url_off, serving(app_on) as url_on:
                lat = latency(url_off, url_on, keys["reader"], args.rounds)
                leak = flood(url_on, keys["reader"], ids, args.flood)
            timing = verify_timing(tmp)
        finally:
            for r in rags:
                r.close()
    fig = {"latency": lat, "verify": timing, "isolation": leak}
    if args.json:
        print(json.dumps(fig))
    else:
        print("| route | p50 auth off (ms) | p50 auth on (ms) | added p50 (ms) | on/off | p95 off / on (ms) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for path, x in lat.items():
            print(f"| {path} | {x['p50_off_ms']} | {x['p50_on_ms']} | {x['added_p50_ms']} | {x['ratio']} | "
                  f"{x['p95_off_ms']} / {x['p95_on_ms']} |")
        print("\nkey verification, median us: " + ", ".join(f"{k} {v}" for k, v in timing["median_us"].items())
              + f" (max/min {timing['max_over_min']})")
        print(f"isolation: {leak['requests']} requests tried, {leak['leaks']} leaks found"
              + (f" e.g. {leak['examples']}" if leak["examples"] else ""))
    return 1 if leak["leaks"] else 0


if __name__ == "__main__":
    sys.exit(main())
