"""Build the acting side from config: the policy and the env pool of a rollout."""

from __future__ import annotations

from typing import Any

import torch

from agents.chat_format import ChatFormat, ChatFormatConfig
from agents.env_pool import EnvPool, EnvSpec, LocalEnvPool, RayEnvPool
from agents.generation import SamplingConfig, make_generator
from agents.model import ModelConfig, load_model
from agents.ray_runtime import RayConfig, init_ray
from agents.rollout import Policy, RolloutConfig
from envs.core import build_config


def build_policy(
    model_cfg: dict[str, Any], rollout_cfg: dict[str, Any]
) -> tuple[Policy, torch.nn.Module]:
    model, tokenizer = load_model(build_config(ModelConfig, model_cfg, "model"))
    chat = ChatFormat(
        tokenizer, build_config(ChatFormatConfig, rollout_cfg["chat_format"], "chat_format")
    )
    generator = make_generator(
        rollout_cfg["backend"],
        model,
        chat.end_id,
        tokenizer.pad_token_id,
        model_cfg.get("init_from"),
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
