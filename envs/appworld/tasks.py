"""AppWorld tasks and splits, read from the data directory (no AppWorld import needed).

The data root is ``APPWORLD_ROOT`` as AppWorld defines it: the directory that holds
``data/`` (``appworld download data`` writes it; ``envs/appworld/synthetic.py`` builds a
small one). Per task, ``data/tasks/<id>/`` has ``specs.json`` (instruction, supervisor) and
``ground_truth/`` (``metadata.json`` with the difficulty; ``required_apps.json`` and
``compiled_solution.py`` where the ground truth is in full mode). Splits are the files
``data/datasets/<split>.txt``: train 90, dev 57, test_normal 168, test_challenge 417 tasks
in the real release.

A task id is ``<scenario>_<n>``; scenario goal completion groups tasks by scenario.
"""

from __future__ import annotations

import ast
import json
import textwrap
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from envs.config import ConfigError

SPLITS = ("train", "dev", "test_normal", "test_challenge")
# Apps every world loads; AppWorld does not count them among a task's required apps.
COMMON_APPS = ("api_docs", "supervisor")
SOLUTION_FUNCTION = "solution"


def scenario_of(task_id: str) -> str:
    """The scenario (AppWorld's "generator id") of ``<scenario>_<n>``."""
    scenario, sep, number = task_id.partition("_")
    if not sep or "_" in number:
        raise ConfigError(f"AppWorld task ids look like <scenario>_<n>; got {task_id!r}")
    return scenario


@dataclass(frozen=True)
class AppWorldTask:
    task_id: str
    instruction: str
    supervisor: dict[str, str]
    datetime: str
    difficulty: int
    apps: tuple[str, ...]
    """Apps the task needs (``required_apps.json``); empty where the data do not say."""

    @property
    def scenario(self) -> str:
        return scenario_of(self.task_id)

    @property
    def category(self) -> str:
        """AppWorld reports by difficulty (1-3); toolgym uses it as the task category."""
        return f"difficulty_{self.difficulty}"


class AppWorldData:
    """Read-only view of an AppWorld data root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.data = self.root / "data"
        if not (self.data / "tasks").is_dir() or not (self.data / "datasets").is_dir():
            raise ConfigError(
                f"no AppWorld data under {self.data}: run `appworld download data` with "
                "APPWORLD_ROOT set to the directory that should hold data/, or point "
                "data_root (or APPWORLD_ROOT) at an existing one"
            )

    @cached_property
    def splits(self) -> dict[str, list[str]]:
        return {
            path.stem: [line.strip() for line in path.read_text().splitlines() if line.strip()]
            for path in sorted((self.data / "datasets").glob("*.txt"))
        }

    def split_ids(self, split: str) -> list[str]:
        if split not in self.splits:
            raise ConfigError(
                f"AppWorld data at {self.root} has no split {split!r}; "
                f"known splits: {sorted(self.splits)}"
            )
        return list(self.splits[split])

    def task(self, task_id: str) -> AppWorldTask:
        directory = self.data / "tasks" / task_id
        if not (directory / "specs.json").is_file():
            raise ConfigError(f"unknown AppWorld task_id {task_id!r} (no {directory}/specs.json)")
        specs = json.loads((directory / "specs.json").read_text())
        truth = directory / "ground_truth"
        metadata = json.loads((truth / "metadata.json").read_text())
        apps_file = truth / "required_apps.json"
        apps = json.loads(apps_file.read_text()) if apps_file.is_file() else []
        return AppWorldTask(
            task_id=task_id,
            instruction=specs["instruction"],
            supervisor=specs.get("supervisor") or specs["main_user"],
            datetime=specs["datetime"],
            difficulty=int(metadata["difficulty"]),
            apps=tuple(a for a in apps if a not in COMMON_APPS),
        )

    @cached_property
    def app_names(self) -> list[str]:
        """Apps whose API docs the data ship (AppWorld's order: api_docs, supervisor, rest)."""
        names = sorted(p.stem for p in (self.data / "api_docs" / "standard").glob("*.json"))
        return [a for a in COMMON_APPS if a in names] + [a for a in names if a not in COMMON_APPS]

    def answer_literals(self, task_id: str) -> tuple[str, ...]:
        """The task's expected answer (``ground_truth/answer.json``) as strings: its leaf
        values, none for a task that is not a question (``null``)."""
        path = self.data / "tasks" / task_id / "ground_truth" / "answer.json"
        return tuple(_leaf_strings(json.loads(path.read_text()))) if path.is_file() else ()

    def solution_cells(self, task_id: str) -> list[str]:
        """The body of ``solution(apis, requester)`` in ``compiled_solution.py``, as one cell."""
        path = self.data / "tasks" / task_id / "ground_truth" / "compiled_solution.py"
        if not path.is_file():
            raise ConfigError(
                f"AppWorld task {task_id} ships no solution ({path}); only full-mode ground "
                "truth (train, dev, the synthetic world) has one"
            )
        source = path.read_text()
        function = next(
            (
                node
                for node in ast.parse(source).body
                if isinstance(node, ast.FunctionDef) and node.name == SOLUTION_FUNCTION
            ),
            None,
        )
        if function is None:
            raise ConfigError(f"{path} defines no {SOLUTION_FUNCTION}() function")
        lines = source.splitlines()[function.body[0].lineno - 1 : function.end_lineno]
        return [textwrap.dedent("\n".join(lines))]


def _leaf_strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaf_strings(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaf_strings(v)]
    return [] if value is None else [str(value)]
