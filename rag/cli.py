"""Shared command-line plumbing: common flags, settings from flags, error reporting."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from rag.errors import ConfigError, RagtuneError, redact


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error prints its one ``error:`` line first (then the usage) and
    exits 2, like every other ragtune error."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"error: {message}", file=sys.stderr)
        self.print_usage(sys.stderr)
        sys.exit(2)


def add_common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    g = parser.add_argument_group("common options")
    g.add_argument("--config", metavar="FILE", help="settings file (default: ./ragtune.toml if present)")
    g.add_argument("--store", metavar="URI", help="vector store URI (default: embedded store in the data dir)")
    g.add_argument("--data-dir", metavar="DIR", help="data directory (default: ./.ragtune)")
    g.add_argument("--embedder", metavar="MODEL", help="sentence-transformers model id or path")
    if json_flag:
        g.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def settings_from(args: argparse.Namespace, **flags: Any):
    from rag.settings import load_settings

    flags = {"store": getattr(args, "store", None), "data_dir": getattr(args, "data_dir", None),
             "embedder": getattr(args, "embedder", None), **flags}
    return load_settings(getattr(args, "config", None), overrides=flags)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def guarded(fn: Callable[[], int], resume: str = "run the same command again to complete") -> int:
    """Run a command: user errors become one ``error:`` line (traceback with RAGTUNE_DEBUG=1)."""
    try:
        return fn()
    except RagtuneError as e:
        if os.environ.get("RAGTUNE_DEBUG") == "1":
            raise
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1  # a wrong flag or setting is a usage error
    except FileNotFoundError as e:
        if os.environ.get("RAGTUNE_DEBUG") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {resume}", file=sys.stderr)
        return 130
