import pytest

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
