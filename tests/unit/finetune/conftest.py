import os

import pytest


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The packaged SmolLM2 tokenizer (ChatML template), read from its GGUF (no hub access)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from rag.model_paths import packaged_smollm2_gguf

    gguf = packaged_smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
