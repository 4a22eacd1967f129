"""Drive the chat UI in a real browser: start ``streamlit run ui/app.py``, ask one question, save a
screenshot, print what the page shows.

    .venv/bin/python scripts/ui_browser_check.py --screenshot docs/screenshot-chat.png
    .venv/bin/python scripts/ui_browser_check.py --data-dir /tmp/x/.ragtune --json

Without ``--data-dir`` a temporary data directory is made and ``data/sample`` ingested into it.
Needs PyPI ``playwright`` and Debian's ``/usr/bin/chromium`` (``scripts/system-deps.sh``); never
``playwright install``. Exit 0 when an answer with at least one source was rendered.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEFAULT_QUESTION = "What is the refund policy for the Acme Widget?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ingest_sample(data_dir: Path) -> None:
    """``python -m ingest data/sample`` into ``data_dir`` (a subprocess, like a user would)."""
    env = {**os.environ, "RAGTUNE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "ingest", str(ROOT / "data" / "sample"), "--json"], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL)


def start_streamlit(data_dir: Path, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``streamlit run ui/app.py`` on 127.0.0.1:port; returns once its health check answers."""
    full_env = {**os.environ, "RAGTUNE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"),
           "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    out = open(log, "wb")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"streamlit did not answer on port {port} within 60 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ask_in_browser(url: str, question: str, screenshot: Path | None, timeout_s: float = 240,
                   size: tuple[int, int] = (1280, 1600)) -> dict[str, str]:
    """Open the app, ask ``question`` in the chat, wait for the answer and its sources.

    Streamlit scrolls its main area inside the page, so a full-page screenshot shows only the
    viewport: ``size`` should be tall enough for the question, the answer and source [1] opened.

    Returns:
        ``{"answer": the last assistant message's text, "page": the whole page's text}``.
    """
    from playwright.sync_api import sync_playwright

    ms = int(timeout_s * 1000)
    with tempfile.TemporaryDirectory(prefix="ragtune-chromium-") as profile, sync_playwright() as p:
        # A persistent context on a fresh folder = --user-data-dir (playwright refuses the raw flag).
        browser = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                                       headless=True, viewport={"width": size[0], "height": size[1]})
        try:
            page = browser.new_page()
            page.goto(url, timeout=ms)
            page.wait_for_selector('[data-testid="stChatInput"]', timeout=ms)
            _idle(page, ms)
            box = page.locator('[data-testid="stChatInput"] textarea')
            box.fill(question)
            box.press("Enter")
            # The answer is done when the assistant message holds its sources and the app is idle.
            page.wait_for_function(_ANSWERED, timeout=ms)
            _idle(page, ms)
            messages = page.locator('[data-testid="stChatMessage"]')
            last = messages.nth(messages.count() - 1)
            if not last.locator('[data-testid="stExpander"]').count():
                raise RuntimeError("no sources under the answer; the page says:\n" + last.inner_text())
            last.locator('[data-testid="stExpander"] summary').first.click()  # open source [1]
            page.wait_for_timeout(500)
            if screenshot:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return {"answer": last.inner_text(), "page": page.locator("body").inner_text()}
        finally:
            browser.close()


# The last chat message (the assistant's) holds its sources, or an error instead.
_ANSWERED = """() => {
  const m = document.querySelectorAll('[data-testid="stChatMessage"]');
  if (m.length < 2) return false;
  const last = m[m.length - 1];
  return !!last.querySelector('[data-testid="stExpander"], [data-testid="stAlert"], [data-testid="stException"]');
}"""


def _idle(page, ms: int) -> None:
    """Wait until Streamlit's "running" indicator is gone (it shows while the script runs)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=ms)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/ui_browser_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, help="an ingested data directory (default: a temporary one "
                                                 "with data/sample ingested)")
    p.add_argument("--question", default=DEFAULT_QUESTION)
    p.add_argument("--screenshot", type=Path, help="save a full-page PNG here")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--size", default="1280x1600", help="browser window WIDTHxHEIGHT (default 1280x1600)")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--json", action="store_true", help="print {\"answer\", \"page\"} as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} not found (bash scripts/system-deps.sh installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ragtune-ui-") as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = Path(tmp) / ".ragtune"
            print("ingesting data/sample ...", file=sys.stderr)
            ingest_sample(data_dir)
        port = args.port or free_port()
        log = Path(tmp) / "streamlit.log"
        proc = start_streamlit(data_dir, port, log, {"RAGTUNE_LLM__MAX_NEW_TOKENS": str(args.max_new_tokens)})
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            seen = ask_in_browser(f"http://127.0.0.1:{port}/", args.question, args.screenshot, size=(w, h))
        finally:
            stop(proc)
    if args.json:
        print(json.dumps(seen))
    else:
        print(seen["answer"])
    return 0 if seen["answer"].strip() else 1


if __name__ == "__main__":
    sys.exit(main())
