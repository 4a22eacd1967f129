"""Ingestion: loaders, splitter, manifest and the incremental pipeline (``python -m ingest``)."""
