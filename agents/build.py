"""Build the acting side from config: the policy and the env pool of a rollout."""

from __future__ import annotations

from typing import Any

import torch

from agents.chat import make_chat_backend
from agents.chat_format import ChatFormat, ChatFormatConfig
from agents.chat_generation import ChatBackendGenerator
from agents.env_pool import EnvPool, EnvSpec, LocalEnvPool, RayEnvPool
from agents.generation import Generator, SamplingConfig
from agents.model import ModelConfig, load_model, load_tokenizer
from agents.ray_runtime import RayConfig, init_ray
from agents.rollout import Policy, RolloutConfig
from envs.config import ConfigError, build_config, did_you_mean

# who produces the policy's messages: a local transformers model, a vLLM engine, a chat API
BACKENDS = ("hf", "vllm", "chat")


def check_backend(model_cfg: dict[str, Any], rollout_cfg: dict[str, Any]) -> None:
    backend = rollout_cfg["backend"]
    if backend not in BACKENDS:
        raise ConfigError(
            f"rollout.backend={backend}: no such backend{did_you_mean(backend, BACKENDS)}"
        )
    if backend == "chat" and not rollout_cfg.get("chat_backend"):
        raise ConfigError("rollout.backend=chat needs rollout.chat_backend={kind: ...}")
    if backend == "vllm" and not model_cfg.get("init_from"):
        raise ConfigError("rollout.backend=vllm loads a checkpoint: set model.init_from")


def build_policy(
    model_cfg: dict[str, Any], rollout_cfg: dict[str, Any]
) -> tuple[Policy, torch.nn.Module | None]:
    """The policy and its local model (None when a chat backend acts: ``backend=chat``)."""
    check_backend(model_cfg, rollout_cfg)
    model_config = build_config(ModelConfig, model_cfg, "model")
    chat_cfg = build_config(ChatFormatConfig, rollout_cfg["chat_format"], "chat_format")
    if rollout_cfg["backend"] == "chat":
        chat = ChatFormat(load_tokenizer(model_config), chat_cfg)
        backend = make_chat_backend(rollout_cfg["chat_backend"])
        temperature = (
            rollout_cfg["sampling"]["temperature"] if backend.supports_temperature else None
        )
        return Policy(chat, ChatBackendGenerator(chat, backend, temperature)), None
    model, tokenizer = load_model(model_config)
    chat = ChatFormat(tokenizer, chat_cfg)
    generator = make_generator(
        rollout_cfg["backend"],
        model,
        chat.end_id,
        chat.pad_id,
        model_config.init_from,
        rollout_cfg["kv_cache"],
    )
    return Policy(chat, generator), model


def rollout_config(rollout_cfg: dict[str, Any]) -> RolloutConfig:
    return RolloutConfig(
        n=rollout_cfg["n"],
        sampling=build_config(SamplingConfig, rollout_cfg["sampling"], "rollout.sampling"),
        max_context_tokens=rollout_cfg["max_context_tokens"],
    )


def build_pool(spec: EnvSpec, size: int, rollout_cfg: dict[str, Any]) -> EnvPool:
    ray_cfg = dict(rollout_cfg["ray"])
    if not ray_cfg.pop("enabled"):
        return LocalEnvPool(spec, size)
    config = build_config(RayConfig, ray_cfg, "rollout.ray")
    init_ray(config)
    return RayEnvPool(spec, size, config.num_cpus_per_env)


def make_generator(
    backend: str,
    model: torch.nn.Module,
    end_id: int,
    pad_id: int,
    model_path: str | None = None,
    kv_cache: bool = True,
) -> Generator:
    """``hf`` (this process's model; ``kv_cache``: keep each episode's keys/values across
    turns) or ``vllm`` (a GPU engine on ``model_path``, with its own prefix caching)."""
    if backend == "hf":
        from agents.hf_generation import HFGenerator

        return HFGenerator(model, end_id, pad_id, kv_cache)
    if backend == "vllm":
        from agents.vllm_generation import VLLMConfig, VLLMGenerator

        if model_path is None:
            raise ConfigError("the vllm backend loads a checkpoint: set model.init_from")
        return VLLMGenerator(model_path, end_id, VLLMConfig())
    raise ConfigError(f"unknown generation backend {backend!r}; known: ['hf', 'vllm']")
