import pytest

from agents.chat_format import ChatFormat, ChatFormatConfig
from agents.hf_generation import HFGenerator
from agents.model import ModelConfig, load_model
from agents.rollout import Policy


@pytest.fixture(scope="session")
def tiny():
    """A 3.2M-parameter random Llama with SmolLM2's real tokenizer, in fp32 so batched and
    sequential greedy decoding agree bit for bit."""
    return load_model(ModelConfig(name="tiny-random", dtype="float32"))


@pytest.fixture(scope="session")
def chat(tiny):
    return ChatFormat(tiny[1], ChatFormatConfig())


@pytest.fixture(scope="session")
def tiny_policy(tiny, chat):
    model, tokenizer = tiny
    return Policy(chat, HFGenerator(model, chat.end_id, tokenizer.pad_token_id))
