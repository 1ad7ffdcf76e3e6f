"""Build an env from its Hydra config group (``configs/env/*.yaml``)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

import gymnasium

from envs import ENV_IDS
from envs.config import ConfigError, build_config
from envs.core import ToolUseEnv
from envs.users import ChatBackend, LLMUser, ScriptedUser, UserSimulator


def make_user(user_cfg: Mapping[str, Any], backend: ChatBackend | None = None) -> UserSimulator:
    """A user simulator from its config (``configs/user/*.yaml``).

    ``kind: llm`` needs ``backend``, the chat model built from ``user_cfg["backend"]`` by
    the caller (``agents.chat.make_chat_backend``: envs do not know the backends).
    """
    kind = user_cfg.get("kind")
    options = {k: v for k, v in user_cfg.items() if k not in ("kind", "backend")}
    if kind == "scripted":
        return build_config(ScriptedUser, options, "user scripted")
    if kind == "llm":
        if backend is None:
            raise ConfigError("the llm user needs a chat backend (user.backend in the config)")
        return build_config(LLMUser, {**options, "backend": backend}, "user llm")
    raise ConfigError(f"unknown user kind {kind!r}; known: ['scripted', 'llm']")


# other packages add envs under this entry-point group: ``name = "their.module:EnvClass"``
ENTRY_POINT_GROUP = "toolgym.envs"


def env_ids() -> dict[str, str]:
    """Gymnasium ids by env name: the built-in envs (``envs.ENV_IDS``) and those installed
    packages declare under :data:`ENTRY_POINT_GROUP` (registered here on first use)."""
    ids = dict(ENV_IDS)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        env_id = f"toolgym/{point.name}-v0"
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=point.value)
        ids.setdefault(point.name, env_id)
    return ids


def make_env(env_cfg: Mapping[str, Any], user: UserSimulator | None = None) -> ToolUseEnv:
    """``env_cfg`` holds ``name`` (a key of :func:`env_ids`) and the env's options.

    ``user`` is the simulated user of conversational envs (None: the env's default); envs
    without one (AppWorld) accept and ignore it."""
    name = env_cfg.get("name")
    ids = env_ids()
    if name not in ids:
        raise ConfigError(f"unknown env {name!r}; known envs: {sorted(ids)}")
    options = {k: v for k, v in env_cfg.items() if k != "name"}
    return gymnasium.make(ids[name], user=user, **options).unwrapped
