"""Benchmarks: `python -m bench` runs ragtune side by side with LangChain / LlamaIndex / plain HF."""
