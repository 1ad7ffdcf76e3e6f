"""Reading training run directories, as the training loop writes them (learners/training/train.py):

* ``run.json`` -- ``{"env", "learner", "seed", "model", "config"}``.
* ``metrics.jsonl`` -- one object per training step: ``"step"`` and namespaced scalars.
* ``eval.jsonl`` -- one object per held-out evaluation: ``"step"``, ``"eval/success"``,
  ``"eval/<category>/success"``, ``"eval/do_nothing_floor"``, ...
* ``eval_episodes/step_<k>.jsonl`` -- one object per evaluated episode: ``task_id``,
  ``category``, ``reward``, ``tool_calls``, ``reward_components``, ``facets`` (optional:
  facet name -> values, e.g. AppWorld's ``app`` and ``scenario``).
* ``weights/step_<k>.npy`` (optional) -- the credit weights of that step's response tokens.

A comparison directory holds several run directories (at any depth): the same env, one run
per (learner, seed). Malformed input raises :class:`ComparisonError` with one line that
names the file and what is missing.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envs.config import ConfigError

RUN_KEYS = ("env", "learner", "seed")
EVAL_KEYS = ("step", "eval/success")
EPISODE_KEYS = ("task_id", "category", "reward")
WEIGHTS_FILE = re.compile(r"step_(\d+)\.npy")
START = "start"
"""The learner name of the step-0 evaluations (:func:`start_runs`)."""


class ComparisonError(ConfigError):
    """A comparison or run directory that does not follow the run-directory contract."""


@dataclass(frozen=True)
class EvalEpisode:
    task_id: str
    category: str
    reward: float
    tool_calls: tuple[str, ...] = ()
    reward_components: dict[str, float] = field(default_factory=dict)
    facets: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """One training run: its identity, per-step metrics, evaluations, and the episodes of
    its last evaluation."""

    path: Path
    env: str
    learner: str
    seed: int
    model: str
    config: dict[str, Any]
    metrics: list[dict[str, float]]
    evals: list[dict[str, float]]
    final_episodes: list[EvalEpisode]
    weight_files: dict[int, Path]
    """Step -> ``weights/step_<k>.npy``; loaded only when plotted (they can be large)."""

    @property
    def final_eval(self) -> dict[str, float]:
        return self.evals[-1]


def load_run(path: Path) -> Run:
    info = _read_json(path / "run.json")
    missing = [k for k in RUN_KEYS if k not in info]
    if missing:
        raise ComparisonError(f"{path / 'run.json'} lacks {missing}")
    metrics = sorted(_read_jsonl(path / "metrics.jsonl", ("step",)), key=lambda r: r["step"])
    evals = sorted(_read_jsonl(path / "eval.jsonl", EVAL_KEYS), key=lambda r: r["step"])
    if not evals:
        raise ComparisonError(f"{path / 'eval.jsonl'} holds no evaluation")
    final_step = int(evals[-1]["step"])
    episodes = _episodes(path, final_step)
    weights_dir = path / "weights"
    weight_files = {
        int(m.group(1)): p
        for p in (weights_dir.iterdir() if weights_dir.is_dir() else [])
        if (m := WEIGHTS_FILE.fullmatch(p.name))
    }
    return Run(
        path=path,
        env=str(info["env"]),
        learner=str(info["learner"]),
        seed=int(info["seed"]),
        model=str(info.get("model", "")),
        config=info.get("config", {}),
        metrics=metrics,
        evals=evals,
        final_episodes=episodes,
        weight_files=dict(sorted(weight_files.items())),
    )


def _episodes(path: Path, step: int) -> list[EvalEpisode]:
    file = path / "eval_episodes" / f"step_{step}.jsonl"
    records = _read_jsonl(file, EPISODE_KEYS)
    if not records:
        raise ComparisonError(f"{file} is empty")
    return [
        EvalEpisode(
            task_id=str(e["task_id"]),
            category=str(e["category"]),
            reward=float(e["reward"]),
            tool_calls=tuple(e.get("tool_calls", ())),
            reward_components=dict(e.get("reward_components", {})),
            facets={k: tuple(v) for k, v in e.get("facets", {}).items()},
        )
        for e in records
    ]


def start_runs(runs: list[Run]) -> list[Run]:
    """Per seed, the step-0 evaluation every trained run of that seed shares (the model
    they all started from), as a run of learner :data:`START`: what training is measured
    from. A seed whose trained runs did not all evaluate step 0 identically gets none."""
    by_seed: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        if run.metrics:
            by_seed[run.seed].append(run)
    starts = []
    for seed_runs in by_seed.values():
        if any(int(r.evals[0]["step"]) != 0 for r in seed_runs):
            continue
        episodes = [_episodes(r.path, 0) for r in seed_runs]
        if all(e == episodes[0] for e in episodes):
            first = seed_runs[0]
            starts.append(
                replace(
                    first,
                    learner=START,
                    metrics=[],
                    evals=[first.evals[0]],
                    final_episodes=episodes[0],
                    weight_files={},
                )
            )
    return starts


def load_comparison(comparison_dir: Path) -> list[Run]:
    """Every run under ``comparison_dir``, sorted by (learner, seed)."""
    if not comparison_dir.is_dir():
        raise ComparisonError(f"comparison directory {comparison_dir} does not exist")
    run_files = sorted(comparison_dir.rglob("run.json"))
    if not run_files:
        raise ComparisonError(
            f"{comparison_dir} holds no run directory (a folder with run.json, metrics.jsonl, "
            "eval.jsonl and eval_episodes/)"
        )
    runs = sorted((load_run(f.parent) for f in run_files), key=lambda r: (r.learner, r.seed))
    envs = sorted({r.env for r in runs})
    if len(envs) > 1:
        raise ComparisonError(f"{comparison_dir} mixes runs of several envs: {envs}")
    seen: dict[tuple[str, int], Path] = {}
    for r in runs:
        if (r.learner, r.seed) in seen:
            raise ComparisonError(
                f"two runs of learner {r.learner} with seed {r.seed}: "
                f"{seen[r.learner, r.seed]} and {r.path}"
            )
        seen[r.learner, r.seed] = r.path
    return runs


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ComparisonError(f"{path} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ComparisonError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ComparisonError(f"{path} must hold a JSON object")
    return data


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ComparisonError(f"{path} is missing")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ComparisonError(f"{path}:{number} is not valid JSON: {e}") from None
        if not isinstance(record, dict):
            raise ComparisonError(f"{path}:{number} must hold a JSON object")
        missing = [k for k in required if k not in record]
        if missing:
            raise ComparisonError(f"{path}:{number} lacks {missing}")
        records.append(record)
    return records
