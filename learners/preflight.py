"""Everything about a command's config that can be known wrong is checked before any work:
before a model loads, an env is built or a run starts. Each check raises a one-line
:class:`ConfigError` naming the key and what it accepts; ``learners/cli.py`` prints it and
exits with status 2. Hydra's own composition errors are reworded the same way here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.errors import HydraException, MissingConfigException, OverrideParseException

from agents.chat import check_chat_backend
from envs.config import ConfigError, build_config, did_you_mean

# top-level keys that must be whole numbers (at least 1; null where it means "all")
POSITIVE_INTS = {"num_tasks": True, "batch_size": False, "eval_batch": False, "parallel": False}
# The hf generator's keys/values at a turn's peak, as a multiple of rows x context x bytes
# a token: the decode batch beside the rows' caches of the turn before (measured 2.1x on
# 60 SmolLM2 rows near 3K tokens here, agents/hf_generation.py)
KV_PEAK_COPIES = 2.2
# share of the machine's memory the keys/values of all processes may take at full context;
# the rest holds weights, optimizer states, activations and the OS
KV_MEMORY_SHARE = 0.75


def hydra_error(e: HydraException, config: dict[str, Any] | None = None) -> str:
    """One line for a Hydra composition error, with the closest valid name.
    ``config``: the command's config composed without overrides, for unknown keys."""
    if isinstance(e, MissingConfigException) and e.options is not None:
        group, _, option = (e.missing_cfg_file or "").rpartition("/")
        return f"{group}={option}: no such {group}{did_you_mean(option, e.options)}"
    if isinstance(e, OverrideParseException):
        return f"cannot parse override {e.override!r}: {e.message.splitlines()[0]}"
    key = getattr(e.__cause__, "full_key", None)
    if key:
        parent, _, leaf = str(key).rpartition(".")
        node = config or {}
        for part in parent.split(".") if parent else []:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        known = sorted(node) if isinstance(node, dict) else []
        where = parent or "the config"
        return f"{key}: {where} has no key {leaf!r}{did_you_mean(leaf, known)}"
    return str(e).splitlines()[0]


def writable_dir(path: str | os.PathLike, key: str) -> Path:
    """Create ``path`` and prove it takes a file, so a long run cannot end unable to save."""
    out = Path(path).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"{key}={path}: cannot write there ({e.strerror or e})") from e
    return out


def check_positive_ints(c: dict[str, Any]) -> None:
    for key, may_be_null in POSITIVE_INTS.items():
        if key not in c or (may_be_null and c[key] is None):
            continue
        value = c[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            allowed = "a whole number >= 1" + (" or null (all)" if may_be_null else "")
            raise ConfigError(f"{key}={value!r}: expected {allowed}")


def check_env(env_cfg: dict[str, Any]) -> None:
    """The env builds (its data root and task files are there; options are known), with
    the scripted user: an LLM user's backend is not needed to know that."""
    from envs.factory import make_env
    from envs.users import ScriptedUser

    make_env(env_cfg, user=ScriptedUser()).close()


def check_model(model_cfg: dict[str, Any]) -> None:
    """The model config's types, its dtype name and that its weights can be found offline
    or in the Hugging Face cache (a hub id with no network fails here, not after minutes)."""
    from agents.model import ModelConfig, model_source_problem
    from agents.precision import check_dtype_name

    config = build_config(ModelConfig, model_cfg, "model")
    check_dtype_name(config.dtype, "model.dtype")
    problem = model_source_problem(config)
    if problem:
        raise ConfigError(problem)


def check_rollout(model_cfg: dict[str, Any], rollout_cfg: dict[str, Any]) -> None:
    from agents.build import check_backend, rollout_config
    from agents.chat_format import ChatFormatConfig

    check_backend(model_cfg, rollout_cfg)
    rollout_config(rollout_cfg)
    build_config(ChatFormatConfig, rollout_cfg["chat_format"], "rollout.chat_format")


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's limit where it is lower (a container's share)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.exists() and limit.read_text().strip().isdigit():
        total = min(total, int(limit.read_text()))
    return total


def check_memory(c: dict[str, Any], rows: int, rows_key: str, processes: int = 1) -> None:
    """Refuse batches whose keys/values can outgrow this machine once episodes reach
    ``rollout.max_context_tokens`` (a weak model's do): a 60-row evaluation was killed for
    memory after minutes of work, where this says so before any."""
    from agents.model import ModelConfig, kv_bytes_per_token, resolve_device
    from agents.precision import resolve_dtype

    context = c["rollout"]["max_context_tokens"]
    if c["rollout"]["backend"] != "hf" or context is None:
        return
    model = build_config(ModelConfig, c["model"], "model")
    dtype = resolve_dtype(model.dtype, resolve_device(model.device)).dtype
    per_token = kv_bytes_per_token(model, dtype)
    need = KV_PEAK_COPIES * rows * context * per_token * processes
    have = machine_memory_bytes()
    if need > KV_MEMORY_SHARE * have:
        lower = f"{rows_key}" + (" or parallel" if processes > 1 else "")
        raise ConfigError(
            f"{rows_key}={rows} rows x rollout.max_context_tokens={context}"
            + (f" x parallel={processes}" if processes > 1 else "")
            + f" can hold {need / 1e9:.1f} GB of keys/values ({per_token / 1e3:.0f} KB a "
            f"token in {str(dtype).removeprefix('torch.')}); this machine has "
            f"{have / 1e9:.0f} GB: lower {lower} or rollout.max_context_tokens"
        )


def check_acting(c: dict[str, Any]) -> None:
    """The env, and the policy that acts in it: its model and rollout options."""
    check_env(c["env"])
    check_model(c["model"])
    check_rollout(c["model"], c["rollout"])


def check_train(c: dict[str, Any]) -> None:
    """What a ``train`` config adds to :func:`check_acting` (also each run of a
    ``compare``): the learner, its analyst, the loop's and tracking's options."""
    from agents.precision import check_dtype_name
    from learners.registry import get_learner, known_learners
    from learners.training.tracking import TrackingConfig
    from learners.training.train import TrainConfig

    name = c["learner"]["name"]
    if name == "sft":
        raise ConfigError(
            f"learner=sft: SFT has its own command (toolgym sft); train takes one of "
            f"{known_learners()}"
        )
    entry = get_learner(name)
    config = entry.make_config({k: v for k, v in c["learner"].items() if k != "name"})
    if entry.learner_class.needs_analyst(config):
        check_chat_backend(c["credit_llm"])
    train = build_config(TrainConfig, c["train"], "train")
    check_dtype_name(train.autocast, "train.autocast")
    build_config(TrackingConfig, c["tracking"], "tracking")
    if c.get("run_dir"):
        writable_dir(c["run_dir"], "run_dir")


def _run_rows(c: dict[str, Any]) -> tuple[int, str]:
    """A run's widest batch: its evaluation's or its training rollouts' rows."""
    from learners.training.train import TrainConfig

    train = build_config(TrainConfig, c["train"], "train")
    rollout_rows = train.draw_size * c["rollout"]["n"]
    if c["eval_batch"] >= rollout_rows:
        return c["eval_batch"], "eval_batch"
    return rollout_rows, "train.groups_per_draw x rollout.n"


def check_sft(c: dict[str, Any]) -> None:
    from agents.precision import check_dtype_name
    from learners.sft import SFT_SOURCES, SFTConfig

    config = build_config(
        SFTConfig, {k: v for k, v in c["learner"].items() if k != "name"}, "learner sft"
    )
    check_dtype_name(config.autocast, "learner.autocast")
    if c["source"] not in SFT_SOURCES:
        raise ConfigError(
            f"source={c['source']}: no such source{did_you_mean(c['source'], SFT_SOURCES)}"
        )
    if c["source"] == "teacher":
        if not c.get("teacher"):
            raise ConfigError("source=teacher needs teacher=<chat backend config>")
        check_chat_backend(c["teacher"])


def check_compare(c: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """``runs``: the composed train config of every learner x seed."""
    learners = c["learners"]
    if not learners or not c["seeds"]:
        raise ConfigError("compare needs at least one learner and one seed")
    for seed in c["seeds"]:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seeds: {seed!r} is not a whole number")
    if c["baseline"] not in learners:
        raise ConfigError(f"baseline={c['baseline']}: not among learners={learners}")
    check_acting(runs[0])  # env, model and rollout are the same for every run
    for run in runs:
        check_train(run)
    check_memory(runs[0], *_run_rows(runs[0]), min(c["parallel"], len(runs)))


def check_before_work(command: str, c: dict[str, Any]) -> None:
    """All checks of ``command`` before its work: no model loads (the env is built once,
    a hub id may be looked up)."""
    check_positive_ints(c)
    if command in ("evaluate", "rollout", "sft", "train"):
        check_acting(c)
    if command == "evaluate":
        check_memory(c, c["batch_size"], "batch_size")
    if command == "sft":
        check_sft(c)
    elif command == "train":
        check_train(c)
        check_memory(c, *_run_rows(c))
    if c.get("out_dir") and command in ("evaluate", "sft", "compare"):
        writable_dir(c["out_dir"], "out_dir")
