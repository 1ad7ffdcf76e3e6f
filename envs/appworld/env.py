"""AppWorld (Trivedi et al., 2024) as a toolgym env: ``toolgym/appworld-v0``.

AppWorld is an interactive-coding benchmark: the agent completes a supervisor's task by
writing Python code cells that call ``apis.<app>.<api>(...)`` in a persistent session, and
ends by calling ``apis.supervisor.complete_task(answer=...)``. It has no simulated user.

* **action** -- an :class:`~envs.core.AgentAction` whose ``content`` is one code cell. A
  function-calling agent may instead call the single tool ``execute_python`` with
  ``{"code": ...}`` (then ``content`` is its free text and is not run); several such calls
  in one action run in order. A ``content`` containing ``###STOP###`` ends the episode
  without running anything. Empty and over-long cells, malformed calls, other tool names
  and other arguments are rejected with an error observation and counted in
  ``info["invalid_actions"]``; the episode goes on.
* **observation** -- on reset, a system message (the protocol and the supervisor's
  identity), the task instruction as the user message, and ``tools`` = the
  ``execute_python`` schema, whose description lists the apps and how to read their API
  docs (``apis.api_docs.show_api_descriptions``/``show_api_doc``): AppWorld's agents look
  APIs up as they go rather than being shown 457 schemas. After a step, one ``tool``
  message per cell with what the cell printed (or AppWorld's ``Execution failed.
  Traceback: ...``), cut to ``max_observation_chars`` (paper: 12,000).
* **episode end** -- ``terminated`` when the agent completes the task or sends the stop
  marker; ``truncated`` after ``max_steps`` actions (paper: 30), when a cell outlives its
  time limit and the server has to be killed (``execution_timeout``), or on an
  infrastructure failure (``env_failure``).
* **reward** -- at the end only: 1.0 if AppWorld's own evaluator passes every test of the
  task, else 0.0. Final ``info`` adds ``success``, ``test_pass_fraction``, ``num_tests``,
  ``passed_tests``/``failed_tests`` (requirement texts) and ``env_failure`` (None, or why
  the server failed: such an episode says nothing about the policy -- drop it, do not
  train on its 0.0). Every step's ``info`` carries ``difficulty`` (1-3, also the
  category ``difficulty_<d>``) and the facets ``app`` (the apps the task needs) and
  ``scenario``, by which reports give TGC/SGC.

Each episode leases its own AppWorld server process from a per-process pool
(:mod:`envs.appworld.pool`) at reset and gives it back once scored, so concurrent episodes
never share a world and an env between episodes holds none. Agent code passes AppWorld's
safety guard, tightened (``blocked_modules``/``blocked_calls``), then runs in an executor
process of its own, fresh each episode, apart from the world, its ground truth and its
evaluator: with a per-cell time limit, under resource limits, with no secrets, confined by
Linux Landlock to reading the Python runtime and writing its own directory, and by a seccomp
filter that refuses new processes, sockets and file metadata changes
(:mod:`envs.appworld.server`). The guard is a filter, not a sandbox; the executor's
confinement is what stops code that gets past it.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.appworld.metrics import SCENARIO_FACET
from envs.appworld.pool import PoolSettings, ServerPool, shared_pool
from envs.appworld.server import (
    AppWorldServer,
    AppWorldServerError,
    CellKilledError,
    ExecutionTimeoutError,
    ServerDiedError,
    ServerSettings,
)
from envs.appworld.tasks import AppWorldData, AppWorldTask
from envs.config import ConfigError, build_config
from envs.core import (
    ENV_FAILURE,
    AgentAction,
    EpisodeCounters,
    TaskLabels,
    TaskSpec,
    ToolCall,
    ToolUseEnv,
)
from envs.users import STOP

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL_NAME = "execute_python"
FAILED_PREFIX = "Execution failed."  # how AppWorld starts the output of a failed cell
NO_USER: dict[str, Any] = {}  # AppWorld has no simulated user


@dataclass(frozen=True)
class AppWorldEnvConfig:
    """Episode limits and server settings (defaults: the SGCD paper, Table 3, where it says)."""

    split: str = "train"
    """Task split the env draws from when ``reset`` gets no ``task_id``."""
    test_splits: tuple[str, ...] = ("test_normal", "test_challenge")
    """Splits held out for evaluation: evaluation commands default to the first; SFT and
    training refuse all of them."""
    data_root: str = ""
    """AppWorld root holding ``data/``; empty: the ``APPWORLD_ROOT`` environment variable."""
    appworld_python: str = ".venv-appworld/bin/python"
    """Python of the AppWorld venv (relative paths start at the repo root)."""
    max_steps: int = 30
    """Actions per episode (paper: 30 env steps)."""
    max_observation_chars: int = 12000
    """A cell's output is cut to this length in what the agent sees (paper: 12,000)."""
    max_action_chars: int = 32000
    """A longer code cell is rejected with an error observation."""
    execution_timeout_s: int = 30
    """Wall-clock limit of one cell, enforced by its executor's alarm (whole seconds, at
    least 1); an executor still busy 2 s later is killed and the episode truncated."""
    request_timeout_s: float = 60.0
    """Limit of every other request, and the slack over execution_timeout_s after which a
    server that does not answer a cell is given up and killed (a cell the alarm cannot stop
    has its executor killed by the server 2 s past its limit)."""
    start_timeout_s: float = 120.0
    """Time a server gets to start and answer (imports of all apps take 3-7 s)."""
    shutdown_grace_s: float = 2.0
    """After SIGTERM, seconds before a server is SIGKILLed."""
    max_servers: int = 8
    """Servers per process, i.e. concurrent episodes (paper: 8 rollouts per prompt)."""
    episodes_per_server: int = 50
    """A server is replaced after this many episodes (memory and latency grow with age)."""
    lease_timeout_s: float = 60.0
    """How long reset waits for a server when all max_servers are in use."""
    port: int = 0
    """Server i listens on 127.0.0.1:port+i; 0 picks free ports (a fixed port serves one
    split per process: each split has its own servers)."""
    memory_limit_mb: int = 4096
    """Address-space cap of each server and what it starts; 0: none."""
    file_size_limit_mb: int = 64
    """Largest file a server (or what it starts) may write; 0: no cap."""
    blocked_modules: tuple[str, ...] = ("os", "pathlib")
    """Modules AppWorld's guard allows that agent code may not import here."""
    blocked_calls: tuple[str, ...] = (
        "builtins.eval",
        "builtins.exec",
        "builtins.compile",
        "__import__",
        "builtins.__import__",
    )
    """Calls refused before execution, added to AppWorld's own list."""
    landlock: bool = True
    """Confine each server with Linux Landlock: writes only in its throw-away directory, no
    reads of other processes' /proc, no TCP connects, no signals out. Needs Linux >= 5.13;
    false runs without it."""
    seccomp: bool = True
    """Refuse agent code's executor new processes, new sockets, file metadata changes,
    ptrace and namespace calls (x86-64 Linux); false runs without."""
    unsafe_no_sandbox: bool = False
    """Allow ``landlock: false`` or ``seccomp: false``: agent code that gets past AppWorld's
    guard then reaches the host. Refused without it."""
    workdir_parent: str = ""
    """Where servers' throw-away directories go; empty: the system temp directory."""

    def __post_init__(self) -> None:
        for name in ("test_splits", "blocked_modules", "blocked_calls"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        positive = (
            "max_steps",
            "max_observation_chars",
            "max_action_chars",
            "execution_timeout_s",
            "max_servers",
            "episodes_per_server",
        )
        bad = [n for n in positive if not isinstance(getattr(self, n), int) or getattr(self, n) < 1]
        if bad:
            raise ConfigError(f"appworld: {bad} must be whole numbers of at least 1")
        if not 0 <= self.port <= 65535 - self.max_servers:
            raise ConfigError(f"appworld: port {self.port} leaves no room for max_servers")
        off = [name for name in ("landlock", "seccomp") if not getattr(self, name)]
        if off and not self.unsafe_no_sandbox:
            raise ConfigError(
                f"appworld: {' and '.join(f'{n}=false' for n in off)} lets agent code that "
                "gets past AppWorld's guard reach the host; set unsafe_no_sandbox=true to run "
                "that way anyway"
            )

    def data_path(self) -> Path:
        root = self.data_root or os.environ.get("APPWORLD_ROOT", "")
        if not root:
            raise ConfigError(
                "appworld: no data. Set data_root (configs/env/appworld.yaml) or APPWORLD_ROOT "
                "to the directory holding data/ (`appworld download data` creates it)"
            )
        return Path(root).expanduser()

    def python_path(self) -> Path:
        python = Path(self.appworld_python).expanduser()
        python = python if python.is_absolute() else REPO_ROOT / python
        if not python.exists():
            raise ConfigError(
                f"appworld: no AppWorld venv at {python}; `make test` (or `make appworld`) "
                "creates .venv-appworld"
            )
        return python

    def pool_settings(self, data_root: Path) -> PoolSettings:
        server = ServerSettings(
            python=self.python_path(),
            data_root=data_root.resolve(),
            port=self.port,
            start_timeout_s=self.start_timeout_s,
            shutdown_grace_s=self.shutdown_grace_s,
            memory_limit_mb=self.memory_limit_mb,
            file_size_limit_mb=self.file_size_limit_mb,
            blocked_modules=self.blocked_modules,
            blocked_calls=self.blocked_calls,
            landlock=self.landlock,
            seccomp=self.seccomp,
            workdir_parent=self.workdir_parent,
        )
        return PoolSettings(
            server=server,
            max_servers=self.max_servers,
            episodes_per_server=self.episodes_per_server,
            lease_timeout_s=self.lease_timeout_s,
            split=self.split,
        )


SYSTEM_PROMPT = """\
You are an AI assistant who completes tasks for your supervisor, {first_name} {last_name} \
(email {email}, phone {phone_number}), by operating their apps through Python code. \
The current date and time is {datetime}.

Each of your messages is one Python code cell, run in a persistent session; what it prints \
comes back to you. Call the apps' APIs as `apis.<app>.<api>(**arguments)`. Apps: {apps}. \
List an app's APIs with `print(apis.api_docs.show_api_descriptions(app_name=...))` and read \
one API's parameters with `print(apis.api_docs.show_api_doc(app_name=..., api_name=...))`. \
The supervisor's account passwords come from `apis.supervisor.show_account_passwords()`. \
When the task is done, call `apis.supervisor.complete_task(answer=...)`, giving an answer \
only if the task asks a question. You have at most {max_steps} code cells."""


def tool_schema(app_names: list[str], max_observation_chars: int) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": (
                "Run one Python code cell in the AppWorld session and return what it prints "
                f"(cut to {max_observation_chars} characters). The same as sending the code "
                f"as the message content. Apps, as apis.<app>.<api>(...): "
                f"{', '.join(app_names)}. API docs: apis.api_docs.show_api_descriptions("
                "app_name=...) and apis.api_docs.show_api_doc(app_name=..., api_name=...)."
            ),
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "Python code"}},
                "required": ["code"],
            },
        },
    }


class AppWorldEnv(ToolUseEnv):
    """AppWorld tasks through the real engine and evaluator (see the module docstring)."""

    # The work happens in the env's leased server process; this side holds no thread-bound
    # state (a fresh HTTP connection per request; leases go through the pool's lock).
    releases_gil = True

    def __init__(self, user: Any = None, **options: Any):
        """``options``: the fields of :class:`AppWorldEnvConfig`. ``user`` is accepted for
        the factory's sake and ignored: AppWorld has no simulated user."""
        super().__init__()
        self.config = build_config(AppWorldEnvConfig, options, "appworld")
        self.max_action_chars = self.config.max_action_chars
        self.data = AppWorldData(self.config.data_path())
        self._split_ids = self.data.split_ids(self.config.split)
        self.pool: ServerPool = shared_pool(self.config.pool_settings(self.data.root))
        self._server: AppWorldServer | None = None
        self._lease: weakref.finalize | None = None
        self._final_state_hash: str | None = None
        self._task: AppWorldTask | None = None

    # -- benchmark hooks -------------------------------------------------------------
    def tasks(self) -> list[TaskSpec]:
        return [
            TaskSpec(task_id=i, split=self.config.split, category=self.data.task(i).category)
            for i in self._split_ids
        ]

    def gold_actions(self, task_id: str) -> list[AgentAction]:
        """The task's ground-truth solution as code cells (full-mode ground truth only)."""
        return [AgentAction(content=cell) for cell in self.data.solution_cells(task_id)]

    def task_labels(self, task_id: str) -> TaskLabels:
        """The solution cells as ``execute_python`` calls and the expected answer
        (``answer.json``): GEAR's reference solution, and what SGCD's sanitizer keeps from
        the analyst (an answer a sibling prints or submits is masked wherever it occurs)."""
        cells = self.data.solution_cells(task_id)
        return TaskLabels(
            gold_calls=tuple(ToolCall(TOOL_NAME, {"code": c}) for c in cells),
            answers=self.data.answer_literals(task_id),
        )

    def state_hash(self) -> str:
        """Hash of the world's DB changes since the task's start state, as AppWorld saves
        them after every cell (``experiments/outputs/<exp>/tasks/<id>/dbs``); once the
        episode has ended, that of its final state."""
        if self._final_state_hash is not None:
            return self._final_state_hash
        if self._server is None or self._task is None:
            raise RuntimeError("no world to hash: call reset() (or the server failed)")
        dbs = (
            self._server.workdir
            / "root/experiments/outputs"
            / self._server.experiment_name
            / "tasks"
            / self._task.task_id
            / "dbs"
        )
        digest = hashlib.sha256()
        for path in sorted(dbs.glob("*.jsonl")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def episode_record(self) -> dict[str, Any]:
        return {
            "task_id": self._task.task_id,
            "benchmark": "appworld",
            "cells": list(self._cells),
            "rejected": list(self._rejected),
            "evaluation": self._evaluation,
            "env_failure": self._env_failure,
        }

    # -- gymnasium API ---------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict, dict]:
        super().reset(seed=seed)
        task_id = (options or {}).get("task_id")
        if task_id is None:
            task_id = self._split_ids[int(self.np_random.integers(len(self._split_ids)))]
        task = self.data.task(str(task_id))
        self._task = task
        self._counters = EpisodeCounters()
        self._cells: list[dict[str, Any]] = []
        self._rejected: list[dict[str, Any]] = []
        self._evaluation: dict[str, Any] | None = None
        self._env_failure: str | None = None
        self._final_state_hash = None
        self._initialize(task)
        self._done = False
        system = SYSTEM_PROMPT.format(
            **task.supervisor,
            datetime=task.datetime,
            apps=", ".join(self.data.app_names),
            max_steps=self.config.max_steps,
        )
        obs = {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": task.instruction},
            ],
            "tools": [tool_schema(self.data.app_names, self.config.max_observation_chars)],
        }
        return obs, self._info()

    def step(self, action: AgentAction) -> tuple[dict, float, bool, bool, dict]:
        self._check_step(action, "AppWorld's code cell goes in its content")
        self._counters.steps += 1
        if not action.is_tool_use and STOP in action.content:
            return self._end([], "agent_stop", truncated=False)
        cells, messages = self._cells_of(action)
        for cell_id, code in cells:
            try:
                output = self._execute(code)
            except (CellKilledError, ExecutionTimeoutError) as error:
                if isinstance(error, ExecutionTimeoutError):  # the server itself hung
                    self._discard_server()
                messages.append(self._message(f"{FAILED_PREFIX} Traceback:\n{error}", cell_id))
                return self._end(messages, "execution_timeout", truncated=True)
            except AppWorldServerError as error:
                return self._fail(messages, error)
            messages.append(self._message(output, cell_id))
        if cells:
            try:
                completed = self._call("/task_completed", {"task_id": self._task.task_id})
            except AppWorldServerError as error:
                return self._fail(messages, error)
            if completed:
                return self._end(messages, "task_completed", truncated=False)
        if self._counters.steps >= self.config.max_steps:
            return self._end(messages, "max_steps", truncated=True)
        return {"messages": messages, "tools": []}, 0.0, False, False, self._info()

    def close(self) -> None:
        self._release_server()
        self._done = True

    # -- internals -------------------------------------------------------------------
    def _cells_of(self, action: AgentAction) -> tuple[list[tuple[str, str]], list[dict]]:
        """(tool-call id, code) pairs to run, and error messages for what was rejected."""
        rejections = [f"malformed tool call: {raw}" for raw in action.malformed]
        cells: list[tuple[str, str]] = []
        if not action.is_tool_use:
            cells.append(("", action.content))
        for k, call in enumerate(action.tool_calls):
            call_id = call.id or f"call_{self._counters.steps}_{k}"
            if call.name != TOOL_NAME:
                rejections.append(f"unknown tool {call.name!r}; the only tool is {TOOL_NAME}")
            elif set(call.arguments) != {"code"} or not isinstance(call.arguments["code"], str):
                rejections.append(f"{TOOL_NAME} takes exactly {{'code': str}}")
            else:
                cells.append((call_id, call.arguments["code"]))
        runnable = []
        for call_id, code in cells:
            if not code.strip():
                rejections.append("empty code cell")
            elif len(code) > self.config.max_action_chars:
                rejections.append(f"code cell exceeds {self.config.max_action_chars} chars")
            else:
                runnable.append((call_id, code))
        for why in rejections:
            self._counters.invalid_actions += 1
            self._rejected.append(
                {"step": self._counters.steps, "content": action.content, "error": why}
            )
        return runnable, [self._message(f"Error: {why}", "") for why in rejections]

    def _execute(self, code: str) -> str:
        output = self._call(
            "/execute",
            {"task_id": self._task.task_id, "code": code},
            extra_time=self.config.execution_timeout_s,
        )
        self._counters.tool_calls += 1
        self._counters.tool_errors += int(output.startswith(FAILED_PREFIX))
        self._counters.tools_used.append(TOOL_NAME)
        self._cells.append({"step": self._counters.steps, "code": code, "output": output})
        return output

    def _call(self, path: str, body: dict[str, Any], extra_time: float = 0.0) -> Any:
        return self._server.call(path, body, timeout=self.config.request_timeout_s + extra_time)

    def _initialize(self, task: AppWorldTask) -> None:
        """Open the task's world, on a fresh server if ours has died (one retry)."""
        body = {
            "task_id": task.task_id,
            "timeout_seconds": self.config.execution_timeout_s,
            "raise_on_unsafe_syntax": True,
            "null_patch_unsafe_execution": True,
        }
        for attempt in (1, 2):
            server = self._ensure_server()
            body["experiment_name"] = server.experiment_name
            try:
                server.call("/initialize", body, self.config.request_timeout_s)
                server.episodes += 1
                return
            except (ServerDiedError, ExecutionTimeoutError):
                self._discard_server()
                if attempt == 2:
                    raise

    def _ensure_server(self) -> AppWorldServer:
        server = self._server
        if server is not None and server.alive:
            if server.episodes < self.pool.settings.episodes_per_server:
                return server
        self._release_server()  # the pool retires a worn-out or dead server
        self._server = self.pool.lease()
        self._lease = weakref.finalize(self, self.pool.release, self._server)
        return self._server

    def _release_server(self) -> None:
        """Give the server back once the episode is scored: a server is leased per
        episode, not per env, so idle envs (a training pool beside an evaluation pool)
        never hold one."""
        if self._lease is not None:
            self._lease()  # returns the server to the pool, once
        self._server, self._lease = None, None

    def _discard_server(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._release_server()

    def _fail(self, messages: list[dict], error: AppWorldServerError):
        """The server failed under us: drop it; the episode ends as an env failure."""
        self._discard_server()
        self._env_failure = str(error)
        messages.append(self._message(f"Error: the AppWorld server failed: {error}", ""))
        return self._end(messages, ENV_FAILURE, truncated=True)

    def _end(self, messages: list[dict], reason: str, truncated: bool):
        self._done = True
        final: dict[str, Any] = {"termination_reason": reason, "env_failure": self._env_failure}
        if self._server is not None and self._env_failure is None:
            try:
                self._evaluation = self._call(
                    "/evaluate",
                    {"task_id": self._task.task_id, "suppress_errors": True, "report": False},
                )
            except AppWorldServerError as error:
                self._discard_server()
                self._env_failure = final["env_failure"] = str(error)
                reason, truncated = ENV_FAILURE, True
                final["termination_reason"] = reason
        final.update(self._scores())
        if self._server is not None:  # kept: the server goes back to the pool now
            self._final_state_hash = self.state_hash()
        self._release_server()
        info = {**self._info(), **final}
        reward = 1.0 if final["success"] else 0.0
        obs = {"messages": messages, "tools": []}
        return obs, reward, not truncated, truncated, info

    def _scores(self) -> dict[str, Any]:
        evaluation = self._evaluation
        if evaluation is None:  # the episode died before AppWorld could score it
            return {
                "success": False,
                "test_pass_fraction": 0.0,
                "num_tests": 0,
                "passed_tests": [],
                "failed_tests": [],
                "reward_components": {},
            }
        passed = [p["requirement"] for p in evaluation["passes"]]
        fraction = len(passed) / evaluation["num_tests"] if evaluation["num_tests"] else 0.0
        return {
            "success": bool(evaluation["success"]),
            "test_pass_fraction": fraction,
            "num_tests": evaluation["num_tests"],
            "passed_tests": passed,
            "failed_tests": [f["requirement"] for f in evaluation["failures"]],
            # the reward is success itself; the part a failure still got right is the tests
            "reward_components": {"test_pass_fraction": fraction},
        }

    def _message(self, text: str, call_id: str) -> dict[str, str]:
        limit = self.config.max_observation_chars
        if len(text) > limit:
            text = text[:limit] + f"... [truncated {len(text) - limit} chars]"
        return {"role": "tool", "name": TOOL_NAME, "tool_call_id": call_id, "content": text}

    def _info(self) -> dict[str, Any]:
        c = self._counters
        return {
            "task_id": self._task.task_id,
            "category": self._task.category,
            "difficulty": self._task.difficulty,
            "facets": {"app": list(self._task.apps), SCENARIO_FACET: [self._task.scenario]},
            "turns": c.turns,
            "steps": c.steps,
            "tool_calls": c.tool_calls,
            "tool_errors": c.tool_errors,
            "invalid_actions": c.invalid_actions,
            "tools_used": list(c.tools_used),
            "user": dict(NO_USER),
        }
