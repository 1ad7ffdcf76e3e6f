"""Where models live: ``model.device`` (agents/model.py)."""

import pytest
import torch

from agents.model import ModelConfig, load_model, resolve_device
from envs.config import ConfigError


def test_auto_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_is_the_ranks_own_gpu_under_torchrun(monkeypatch):
    # no GPU here: the decision is checked with CUDA reported available
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda", 3)
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_a_gpu_asked_for_where_none_is_visible_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="model.device='gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="use auto, cpu, cuda"):
        resolve_device("meta")


def test_the_model_is_loaded_onto_its_device():
    model, _ = load_model(ModelConfig(name="tiny-random", dtype="float32", device="cpu"))
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
