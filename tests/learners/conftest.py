import pytest
import torch

from agents.chat_format import ChatFormat, ChatFormatConfig
from agents.model import ModelConfig, load_model


@pytest.fixture()
def tiny_fresh():
    """A fresh tiny random Llama (tests that train it must not share it)."""
    return load_model(ModelConfig(name="tiny-random", dtype="float32"))


@pytest.fixture(scope="session")
def tiny_chat():
    _, tokenizer = load_model(ModelConfig(name="tiny-random", dtype="float32"))
    return ChatFormat(tokenizer, ChatFormatConfig())


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster and immune to OpenMP waits on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
