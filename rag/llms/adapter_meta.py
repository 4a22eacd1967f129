"""The metadata file beside every adapter folder ``python -m finetune.qlora`` writes.

It records the base model, the resolved config, the data hash, versions and eval losses;
:mod:`rag.llms.hf` reads its base (``hf:+adapter:DIR``), ``finetune.adapters`` / ``finetune.merge``
and the UI read the rest. One name for all of them, in a module light enough for any of them to import.
"""

ADAPTER_META = "ragtune_adapter.json"
