"""Subcommands of ``python -m rag``: one module each, with ``add_arguments`` and ``run``."""
