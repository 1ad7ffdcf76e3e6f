"""The tau2 engine, loaded once per process, and the pieces every tau2-backed domain shares.

Importing tau2 has side effects we neutralise here, before the import (shared/FACTS.md):
litellm fetches a price table from the internet unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is
set, and tau2 logs every tool call through loguru. Import tau2 only through this module.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import hashlib  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from loguru import logger  # noqa: E402

logger.remove()  # tau2 logs each tool call at DEBUG to stderr; keep the user's terminal clean

from tau2.data_model.tasks import Task  # noqa: E402
from tau2.environment.environment import Environment  # noqa: E402
from tau2.environment.toolkit import ToolType  # noqa: E402

from envs.categories import task_category  # noqa: E402
from envs.config import ConfigError  # noqa: E402


class DataIntegrityError(RuntimeError):
    """A benchmark's data files do not match the checksums they shipped with."""


def verify_sha256(files: dict[Path, str], source: str) -> None:
    """Raise :class:`DataIntegrityError` naming every file whose sha256 differs."""
    bad = []
    for path, expected in files.items():
        if not path.is_file():
            bad.append(f"{path} (missing)")
            continue
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            bad.append(f"{path} (sha256 {actual[:12]}..., expected {expected[:12]}...)")
    if bad:
        raise DataIntegrityError(
            f"{source}: data files differ from their recorded checksums: "
            + "; ".join(bad)
            + ". Reinstall the package that ships them (make clean && make test)."
        )


@dataclass
class TauDomain:
    """A tau2 domain as toolgym uses it: tasks, splits, and an environment factory.

    ``build_environment`` returns a fresh tau2 ``Environment`` (own DB copy) per call;
    :meth:`register_with_tau2` hands it to tau2 under ``name`` so that tau2's own
    evaluator rebuilds the same world when it scores an episode. :meth:`pristine_world`
    is one fresh world per domain for whatever only reads it.
    """

    name: str
    tasks: dict[str, Task]
    splits: dict[str, list[str]]
    build_environment: Callable[[], Environment]

    def __post_init__(self) -> None:
        probe = self.build_environment()
        self.tool_types: dict[str, ToolType] = {
            name: probe.tools.tool_type(name) for name in probe.tools.tools
        }
        self.policy: str = probe.get_policy()
        self.tool_schemas: list[dict] = [t.openai_schema for t in probe.get_tools()]
        # (agent, user) DB hashes that never change, filled by envs.tau2_scoring: each task's
        # gold world, and a fresh world
        self.gold_hashes: dict[str, tuple[str | None, str | None]] = {}
        self.fresh_hashes: tuple[str | None, str | None] | None = None
        self._pristine: Environment | None = None

    def pristine_world(self) -> Environment:
        """A fresh world built once and shared: only READ and GENERIC tools may run on it
        (tau2's markers say they leave the DB alone; tests/envs check it per domain)."""
        if self._pristine is None:
            self._pristine = self.build_environment()
        return self._pristine

    def leaves_db_alone(self, tool_name: str) -> bool:
        return self.tool_types.get(tool_name) in (ToolType.READ, ToolType.GENERIC)

    def register_with_tau2(self) -> None:
        """Make the domain known to tau2's own evaluator (envs.tau2_scoring.tau2_evaluate).
        Only then: tau2's registry imports litellm, seconds of every process's start-up."""
        from tau2.registry import registry

        # tau2's registry is process-global and refuses a second registration of a name.
        if self.name in registry.get_domains():
            return

        def constructor(solo_mode: bool = False) -> Environment:
            if solo_mode:
                raise ValueError(f"{self.name} has no solo mode")
            return self.build_environment()

        registry.register_domain(constructor, self.name)
        registry.register_tasks(
            lambda split=None: [
                self.tasks[i] for i in (self.splits[split] if split else self.tasks)
            ],
            self.name,
            get_task_splits=lambda: self.splits,
        )

    def split_ids(self, split: str) -> list[str]:
        if split not in self.splits:
            raise ConfigError(
                f"{self.name} has no split {split!r}; known splits: {sorted(self.splits)}"
            )
        return list(self.splits[split])

    def category(self, task_id: str) -> str:
        actions = self.tasks[task_id].evaluation_criteria.actions or []
        return task_category([a.name for a in actions], self.tool_types)


def load_tasks(tasks_file: Path) -> dict[str, Task]:
    return {t["id"]: Task.model_validate(t) for t in json.loads(tasks_file.read_text())}


def domain_from_files(name: str, folder: Path, toolkit: type, db_class: type) -> TauDomain:
    """A domain laid out as tau2 ships one: ``policy.md``, ``db.json``, ``tasks.json`` and
    ``split_tasks.json`` in ``folder`` (verify their checksums first)."""
    policy = (folder / "policy.md").read_text()
    # Parse db.json once; validating the dict builds a fresh DB per episode in ~0.1 s
    # instead of ~0.4 s from file (pydantic copies every container it validates).
    db_data = json.loads((folder / "db.json").read_text())

    def build_environment() -> Environment:
        return Environment(
            domain_name=name, policy=policy, tools=toolkit(db_class.model_validate(db_data))
        )

    return TauDomain(
        name=name,
        tasks=load_tasks(folder / "tasks.json"),
        splits=json.loads((folder / "split_tasks.json").read_text()),
        build_environment=build_environment,
    )


def tau2_user_system_prompt(scenario_text: str) -> str:
    """tau2's LLM-user system prompt (global guidelines + this task's scenario)."""
    from tau2.user.user_simulator import UserSimulator

    return UserSimulator(instructions=scenario_text).system_prompt
