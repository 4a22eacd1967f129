"""Load: concurrent /ask requests against the HTTP API while another process ingests into the same
embedded store.

    python bench/load_bench.py                                   # 8 threads x 50 requests, real MiniLM
    python bench/load_bench.py --threads 4 --requests 20 --fake-embedder --json

What runs:
1. ``--docs`` text files, each with a unique keeper name, are ingested into a fresh data dir.
2. ``python -m rag serve``'s app (uvicorn, 127.0.0.1, a free port) is started in a subprocess
   over that data dir. ``/ask`` always generates an answer, and this measures the server and
   retrieval, not a model: the LLM is a fake registered through ``rag.llms.register`` that
   answers at once, citing passage [1].
3. ``--extra-docs`` more files are written and a second process ingests them into the same store
   (the ingest pipeline, as ``python -m ingest``) while ``--threads`` threads send ``--requests``
   requests each, asking for the keepers of the first batch.
4. Checks: every response is HTTP 200 and well-formed; the asked-for file is among the sources
   (the index stays consistent while written to); every source returned matches, id for id and
   text for text, a chunk of the final store; the writer exits 0.

Prints p50/p95/max latency and throughput; exit 1 when any check failed. ``--fake-embedder``
uses the HashEmbedder of tests/reliability/_helpers.py (seconds instead of a model load; what the
default test run uses).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAMES = ["Abernathy", "Brightwater", "Calloway", "Dunmore", "Everhart", "Fairweather", "Galloway", "Hawthorne",
         "Ironside", "Jessamine", "Kittredge", "Lockhart", "Merriweather", "Northcott", "Oakenshield", "Pemberton",
         "Quenby", "Ravenscroft", "Stirling", "Thistlewood", "Underhill", "Vantongeren", "Whitlock", "Yardley"]
FAKE_PREFIX = "benchecho"


def keeper(i: int) -> str:
    return f"{NAMES[i % len(NAMES)]}{i}"


def write_docs(folder: Path, start: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        paras = [f"Lighthouse {i} stands on a granite spit. Its keeper is {keeper(i)}, who lights the lamp at dusk.",
                 (f"The lamp of lighthouse {i} turns every {5 + i % 7} seconds and can be seen for {10 + i % 13} "
                  "nautical miles on a clear night."),
                 *((f"Logbook entry {j} of lighthouse {i}: wind from the {['north', 'south', 'east', 'west'][j % 4]}, "
                    f"sea state {j % 6}, {j + i} ships passed.") for j in range(12))]
        (folder / f"lighthouse_{i:03d}.txt").write_text("\n\n".join(paras))


def _settings(data_dir: Path, fake: bool):
    from rag.settings import Settings

    kw = {"data_dir": data_dir, "llm": {"spec": f"{FAKE_PREFIX}:"}, "retrieval": {"mode": "hybrid", "k": 3}}
    if fake:
        from tests.reliability._helpers import HashEmbedder

        kw["embedder"] = HashEmbedder.id
    return Settings(**kw)


def _rag(data_dir: Path, fake: bool):
    from rag.api import RAG

    rag = RAG(settings=_settings(data_dir, fake))
    if fake:
        from tests.reliability._helpers import HashEmbedder

        rag._embedder = HashEmbedder()
    return rag


class FastLLM:
    """Answers at once, citing passage [1]: the model is not what is measured here."""

    name = f"{FAKE_PREFIX}:"
    context_window = 8192

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def generate(self, messages, **opts) -> str:
        return "The keeper is named in passage [1]."

    def stream(self, messages, **opts):
        yield self.generate(messages)

    def complete(self, prompt: str, **opts) -> str:
        return self.generate([])


def serve(data_dir: Path, port: int, fake: bool) -> int:
    import uvicorn

    from rag.llms import register
    from rag.server import create_app

    register(FAKE_PREFIX, lambda rest, settings: FastLLM())
    rag = _rag(data_dir, fake)
    uvicorn.run(create_app(rag, ingest_root=data_dir), host="127.0.0.1", port=port, log_level="warning")
    return 0


def ingest(data_dir: Path, paths: list[str], fake: bool) -> int:
    with _rag(data_dir, fake) as rag:
        res = rag.ingest(paths)
    print(json.dumps(res.summary()))
    return 0 if not res.failed else 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict | None]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def _well_formed(body: dict | None) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("answer"), str) or not body["answer"]:
        return False
    srcs = body.get("sources")
    if not isinstance(srcs, list) or not srcs:
        return False
    return all(isinstance(s.get("id"), str) and isinstance(s.get("text"), str) and s["text"]
               and isinstance(s.get("source"), str) and isinstance(s.get("score"), (int, float))
               and [x["n"] for x in srcs] == list(range(1, len(srcs) + 1)) for s in srcs)


def run(threads: int = 8, requests: int = 50, docs: int = 40, extra_docs: int = 40, fake: bool = False,
        workdir: Path | None = None, log=print) -> dict:
    """The whole benchmark; returns the figures and the list of problems found (empty = pass)."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix="ragtune-load-"))
    data, folder = tmp / "data", tmp / "docs"
    write_docs(folder, 0, docs)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAGTUNE_DATA_DIR": str(data)}
    env = {k: v for k, v in env.items() if not k.startswith("RAGTUNE_") or k == "RAGTUNE_DATA_DIR"}
    flag = ["--fake-embedder"] if fake else []
    me = [sys.executable, str(Path(__file__).resolve())]
    t = time.perf_counter()
    subprocess.run([*me, "ingest", "--data-dir", str(data), str(folder), *flag], env=env, check=True,
                   capture_output=True, timeout=600)
    log(f"initial ingest of {docs} files: {time.perf_counter() - t:.1f} s")

    port = _free_port()
    server = subprocess.Popen([*me, "serve", "--data-dir", str(data), "--port", str(port), *flag], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    problems: list[str] = []
    results: list[tuple[float, float, float, int, dict | None, int]] = []   # start, end, latency, status, body, i
    writer = None
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start: " + server.stderr.read().decode()[-1500:]) from None
                time.sleep(0.2)
        _post(base + "/ask", {"question": "warm-up: who keeps lighthouse 0?"})  # loads embedder + BM25 once

        write_docs(folder, docs, extra_docs)
        writer = subprocess.Popen([*me, "ingest", "--data-dir", str(data), str(folder), *flag], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lock = threading.Lock()
        w_state: dict[str, float] = {"done": float("inf")}
        t_start = time.perf_counter()

        def watch() -> None:
            writer.wait()
            w_state["done"] = time.perf_counter()

        threading.Thread(target=watch, daemon=True).start()

        def watch_store() -> None:  # when the other process's first chunk lands
            import sqlite3

            con = sqlite3.connect(f"file:{data / 'index' / 'chunks.sqlite'}?mode=ro", uri=True, timeout=5)
            first = con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            while writer.poll() is None:
                try:
                    if con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] != first:
                        w_state["first_write"] = time.perf_counter()
                        break
                except sqlite3.Error:
                    pass
                time.sleep(0.01)
            con.close()

        threading.Thread(target=watch_store, daemon=True).start()

        def worker(tid: int) -> None:
            r = 0
            # at least `requests` each, and on until the writer is done (bounded: 10 minutes)
            while r < requests or (writer.poll() is None and time.perf_counter() - t_start < 600):
                r += 1
                i = (tid * requests + r) % docs
                t0 = time.perf_counter()
                try:
                    status, body = _post(base + "/ask", {"question": f"Who is the keeper of lighthouse {i}, "
                                                                     f"{keeper(i)}?"})
                except Exception as e:  # noqa: BLE001 - a transport error is a finding, not a crash
                    status, body = 0, {"error": repr(e)}
                t1 = time.perf_counter()
                with lock:
                    results.append((t0, t1, t1 - t0, status, body, i))

        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join(600)
        t_end = time.perf_counter()
        try:
            w_out, w_err = writer.communicate(timeout=600)
            deadline_w = time.monotonic() + 5
            while w_state["done"] == float("inf") and time.monotonic() < deadline_w:
                time.sleep(0.01)
        except subprocess.TimeoutExpired:
            writer.kill()
            w_out, w_err = writer.communicate()
            problems.append("the concurrent ingest did not finish within 600 s")
        w_done = min(w_state["done"], time.perf_counter())
        w_state.setdefault("first_write", w_done)
        if writer.returncode != 0:
            problems.append(f"concurrent ingest exited {writer.returncode}: {w_err.decode()[-500:]}")
        else:
            added = json.loads(w_out.decode().strip().splitlines()[-1])["added"]
            if added != extra_docs:
                problems.append(f"concurrent ingest added {added} files, expected {extra_docs}")
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()

    # every answer well-formed, with the asked-for file among its sources
    from rag.stores.embedded import EmbeddedStore

    store = EmbeddedStore(str(data / "index"))
    errors = [(s, b) for _, _, _, s, b, _ in results if s != 200 or not _well_formed(b)]
    if errors:
        problems.append(f"{len(errors)} bad responses, e.g. {errors[0][0]} {str(errors[0][1])[:300]}")
    missed = [i for *_, s, b, i in results if s == 200 and _well_formed(b)
              and f"lighthouse_{i:03d}.txt" not in [x["source"] for x in b["sources"]]]
    if missed:
        problems.append(f"{len(missed)} answers without the asked-for file among their sources")
    # every source is a real chunk of the final store (batch-1 files never changed: same ids, same text)
    seen = {x["id"]: x["text"] for *_, s, b, _ in results if s == 200 and _well_formed(b) for x in b["sources"]}
    stored = {c.id: c.text for c in store.get(list(seen))}
    # a source's text is its chunk's text or the sentences of it the chain selected (rag/selection.py)
    from rag.selection import is_selection_of

    torn = [cid for cid, text in seen.items() if cid not in stored or not is_selection_of(text, stored[cid])]
    if torn:
        problems.append(f"{len(torn)} sources that do not match a stored chunk")
    final_files = len(store.sources())
    store.close()
    if workdir is None:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    if final_files != docs + extra_docs:
        problems.append(f"store holds {final_files} files, expected {docs + extra_docs}")

    lat = sorted(r[2] for r in results)
    first_write = w_state.get("first_write", w_done)
    # sent after the other process's first write landed and before it finished
    overlap = sum(1 for t0, *_ in results if first_write <= t0 < w_done)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, round(p * (len(lat) - 1)))] * 1000 if lat else float("nan")

    figures = {"threads": threads, "requests": len(results), "ok": len(results) - len(errors),
               "during_ingest": overlap, "ingest_writing_s": round(w_done - first_write, 1), "p50_ms": round(pct(0.5), 1), "p95_ms": round(pct(0.95), 1),
               "max_ms": round(pct(1.0), 1), "throughput_rps": round(len(results) / max(1e-9, t_end - t_start), 1),
               "ingest_s": round(w_done - t_start, 1), "files": final_files, "distinct_sources_checked": len(seen),
               "embedder": "hash (fake)" if fake else "all-MiniLM-L6-v2", "problems": problems}
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", nargs="?", default="bench", choices=["bench", "serve", "ingest"],
                   help=argparse.SUPPRESS)
    p.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--requests", type=int, default=50, help="requests per thread")
    p.add_argument("--docs", type=int, default=40, help="files ingested before the load starts")
    p.add_argument("--extra-docs", type=int, default=40, help="files ingested by another process during the load")
    p.add_argument("--fake-embedder", action="store_true", help="hash embedder instead of MiniLM")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_intermixed_args(argv)
    if args.role == "serve":
        return serve(args.data_dir, args.port, args.fake_embedder)
    if args.role == "ingest":
        return ingest(args.data_dir, args.paths, args.fake_embedder)
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    fig = run(args.threads, args.requests, args.docs, args.extra_docs, args.fake_embedder, log=log)
    if args.json:
        print(json.dumps(fig))
    else:
        print(f"{fig['requests']} requests from {fig['threads']} threads, {fig['during_ingest']} of them while "
              f"another process was writing {args.extra_docs} files into the store ({fig['ingest_writing_s']} s of "
              f"writes, {fig['ingest_s']} s in all), embedder {fig['embedder']}")
        print(f"ok {fig['ok']}/{fig['requests']}; latency p50 {fig['p50_ms']} ms, p95 {fig['p95_ms']} ms, "
              f"max {fig['max_ms']} ms; throughput {fig['throughput_rps']} req/s")
        for problem in fig["problems"]:
            print("PROBLEM:", problem)
    return 1 if fig["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
