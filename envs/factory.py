"""Build an env from its Hydra config group (``configs/env/*.yaml``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import gymnasium

from envs import ENV_IDS
from envs.core import ConfigError, ToolUseEnv
from envs.tau_env import TauEnvConfig
from envs.users import ScriptedUser, UserSimulator


def make_user(user_cfg: Mapping[str, Any]) -> UserSimulator:
    """The scripted user from config; LLM users need a chat backend (``agents.chat``)."""
    kind = user_cfg.get("kind")
    if kind == "scripted":
        return ScriptedUser(confirmation=user_cfg["confirmation"])
    raise ConfigError(f"user kind {kind!r} is not built here; known: ['scripted']")


def make_env(env_cfg: Mapping[str, Any], user: UserSimulator) -> ToolUseEnv:
    """``env_cfg`` holds ``name`` (a key of ``envs.ENV_IDS``) and the env's config fields."""
    name = env_cfg.get("name")
    if name not in ENV_IDS:
        raise ConfigError(f"unknown env {name!r}; known envs: {sorted(ENV_IDS)}")
    known = {f.name for f in fields(TauEnvConfig)}
    options = {k: v for k, v in env_cfg.items() if k != "name"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"env {name}: unknown options {unknown}; known: {sorted(known)}")
    env = gymnasium.make(ENV_IDS[name], config=TauEnvConfig(**options), user=user)
    return env.unwrapped
