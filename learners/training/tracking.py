"""Optional experiment tracking: a run's step and evaluation metrics mirrored to TensorBoard
(``<run_dir>/tensorboard``) and Weights & Biases (``<run_dir>/wandb``, offline unless
asked). Off by default; ``metrics.jsonl`` and ``eval.jsonl`` stay the record of a run."""

from __future__ import annotations

import importlib
import os
import uuid
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from envs.config import ConfigError

BACKENDS = ("tensorboard", "wandb")
WANDB_MODES = ("offline", "online")


@dataclass(frozen=True)
class TrackingConfig:
    backends: tuple[str, ...] = ()
    """Any of ``tensorboard``, ``wandb`` (none: no tracking)."""
    wandb_project: str = "toolgym"
    wandb_entity: str | None = None
    """W&B team or user (None: the account's default)."""
    wandb_mode: str = "offline"
    """``offline`` writes local files for ``wandb sync``; ``online`` needs WANDB_API_KEY."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", tuple(self.backends))  # Hydra gives lists
        unknown = sorted(set(self.backends) - set(BACKENDS))
        if unknown:
            raise ConfigError(f"tracking: unknown backends {unknown}; known: {list(BACKENDS)}")
        if self.wandb_mode not in WANDB_MODES:
            raise ConfigError(
                f"tracking: unknown wandb_mode {self.wandb_mode!r}; known: {list(WANDB_MODES)}"
            )
        # checked here, before a model is loaded; a key is read from the environment only
        online = "wandb" in self.backends and self.wandb_mode == "online"
        if online and not os.environ.get("WANDB_API_KEY"):
            raise ConfigError("tracking.wandb_mode=online needs WANDB_API_KEY in the environment")


class Tracker(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics; ``step`` is the x axis, not a series."""
    return {k: float(v) for k, v in metrics.items() if k != "step" and isinstance(v, Real)}


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"tracking needs {module}, which is not installed: pip install 'toolgym[tracking]'"
        ) from e


class TensorBoardTracker:
    def __init__(self, run_dir: Path):
        tensorboardx = _require("tensorboardX")
        self.writer = tensorboardx.SummaryWriter(logdir=str(run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for tag, value in _scalars(metrics).items():
            self.writer.add_scalar(tag, value, step)
        # a step takes seconds or more: flushing each keeps a killed run's events, like
        # metrics.jsonl
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, config: TrackingConfig, run_dir: Path, run_record: dict[str, Any]):
        self.wandb = wandb = _require("wandb")
        # the id persists in the run directory so that a resumed run continues its W&B run
        id_file = run_dir / "wandb_run_id"
        if not id_file.is_file():
            id_file.write_text(uuid.uuid4().hex)
        self.run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            mode=config.wandb_mode,
            dir=run_dir,
            name=f"{run_record['learner']}-seed{run_record['seed']}",
            group=run_record["env"],
            config=run_record["config"],
            id=id_file.read_text().strip(),
            resume="allow",
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(_scalars(metrics), step=step)

    def close(self) -> None:
        self.run.finish()
        # finish() returns before W&B's service has written the log's last block; stopping
        # the service flushes it, so the run directory is complete when training returns
        self.wandb.teardown()


def make_trackers(
    config: TrackingConfig, run_dir: Path, run_record: dict[str, Any]
) -> list[Tracker]:
    """One tracker per configured backend; ``run_record`` is the run's ``run.json``."""
    trackers: list[Tracker] = []
    for name in config.backends:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(run_dir))
        else:  # wandb: TrackingConfig admits no other
            trackers.append(WandbTracker(config, run_dir, run_record))
    return trackers
