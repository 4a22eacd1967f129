"""Fine-tuning: datasets from JSONL or an ingested store, QLoRA training, adapter merge and listing.

Entry points: ``python -m finetune.qlora``, ``python -m finetune.synth``, ``python -m finetune.merge``,
``python -m finetune.adapters``. Heavy libraries (torch, transformers, peft) load only when used.
"""

from finetune.config import QLoRAConfig, load_config

__all__ = ["QLoRAConfig", "load_config"]
