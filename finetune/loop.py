"""``python -m finetune.loop``: the closed loop's earlier name, kept working; it is ``python -m loop``.

The pipeline itself lives in the top-level package :mod:`loop` (it uses ``eval``, which
``finetune`` does not import).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from loop.__main__ import main as loop_main

    return loop_main(argv)


if __name__ == "__main__":
    sys.exit(main())
