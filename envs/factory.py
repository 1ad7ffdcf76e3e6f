"""Build an env from its Hydra config group (``configs/env/*.yaml``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium

from envs import ENV_IDS
from envs.core import ConfigError, ToolUseEnv
from envs.users import ScriptedUser, UserSimulator


def make_user(user_cfg: Mapping[str, Any]) -> UserSimulator:
    """The scripted user from config; LLM users need a chat backend (``agents.chat``)."""
    kind = user_cfg.get("kind")
    if kind == "scripted":
        return ScriptedUser(confirmation=user_cfg["confirmation"])
    raise ConfigError(f"user kind {kind!r} is not built here; known: ['scripted']")


def make_env(env_cfg: Mapping[str, Any], user: UserSimulator) -> ToolUseEnv:
    """``env_cfg`` holds ``name`` (a key of ``envs.ENV_IDS``) and the env's options."""
    name = env_cfg.get("name")
    if name not in ENV_IDS:
        raise ConfigError(f"unknown env {name!r}; known envs: {sorted(ENV_IDS)}")
    options = {k: v for k, v in env_cfg.items() if k != "name"}
    return gymnasium.make(ENV_IDS[name], user=user, **options).unwrapped
