"""A tiny randomly initialised Llama (a real model, no mocks) for teacher scoring."""

import pytest
import torch
from credit_helpers import VOCAB
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(scope="session")
def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors here are tiny: one thread is faster, and immune to OpenMP waits when other
    jobs share the cores. Restored after each test, so other folders keep their setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
