"""The contract every toolgym environment keeps, and the action types agents send it.

A toolgym env is a ``gymnasium.Env`` whose observations and actions are text-shaped:

* **observation** -- a dict ``{"messages": [...], "tools": [...]}``. ``messages`` holds the
  messages the agent has not seen yet, each ``{"role": "system"|"user"|"tool", "content":
  str}`` (tool messages add ``"name"`` and ``"tool_call_id"``). On ``reset`` they are the
  system prompt (the domain policy) and the user's opening message, and ``tools`` holds
  the tool schemas (OpenAI function format); after a step ``tools`` is empty. Tool and
  user content is truncated to the env's observation budget; the untruncated record stays
  in the env (``episode_record``) for scoring and replay.
* **action** -- an :class:`AgentAction`: one assistant message, optionally carrying tool
  calls. Turning raw model text into an ``AgentAction`` is the agent's job
  (``agents.tool_format``); the env never parses text.

``reset(seed=..., options={"task_id": ...})`` picks the task (a seeded draw from the
env's split when no ``task_id`` is given). ``step`` never raises on bad agent input: a
malformed or unknown tool call, bad arguments or an over-long message come back as an
error observation, are counted in ``info`` and the episode goes on.

``terminated`` is True when the conversation ends (the user stops, transfers, or the agent
stops); ``truncated`` is True when the turn budget runs out. The reward is 0 on every
step but the last, where it is the benchmark's own evaluator score.

``info`` keys, on every step (:data:`STEP_INFO_KEYS`):

* ``task_id``, ``category`` -- the task and its category (see :mod:`envs.categories`).
* ``turns`` -- assistant messages sent to the user so far; ``steps`` -- actions so far.
* ``tool_calls`` -- tool calls executed; ``tool_errors`` -- of those, the ones that failed.
* ``invalid_actions`` -- malformed tool calls and over-long messages rejected by the env.
* ``user`` -- the user simulator's identity: ``model``, ``prompt_hash``, ``temperature``.

and, where a benchmark slices its results further than by category, ``facets``: facet
name -> the task's values (AppWorld: ``{"app": [apps it needs], "scenario": [its
scenario]}``); reports break success down by them.

and on the final step (:data:`FINAL_INFO_KEYS`): ``termination_reason`` (:data:`ENV_FAILURE`
when the env's own machinery failed, not the agent: such an episode says nothing about the
policy and is not trained on) and ``reward_components`` (the evaluator's parts, e.g.
``{"db": 1.0, "communicate": 0.0}``), plus whatever diagnostics the benchmark's evaluator
reports.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym

STEP_INFO_KEYS = (
    "task_id",
    "category",
    "turns",
    "steps",
    "tool_calls",
    "tool_errors",
    "invalid_actions",
    "user",
)
FINAL_INFO_KEYS = ("termination_reason", "reward_components")
ENV_FAILURE = "env_failure"


@dataclass(frozen=True)
class ToolCall:
    """One tool call as the agent issued it; ``arguments`` are already decoded JSON."""

    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class AgentAction:
    """One assistant message.

    ``malformed`` holds the raw text of tool calls the agent tried to make but that could
    not be read (bad JSON, no name, arguments that are not an object); the env answers
    each with an error observation.
    """

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    malformed: tuple[str, ...] = ()

    @property
    def is_tool_use(self) -> bool:
        return bool(self.tool_calls or self.malformed)


@dataclass(frozen=True)
class TaskLabels:
    """A task's training-only labels: what a privileged teacher may see (GEAR's reference
    solution) and what must be masked from an external LLM (SGCD's sanitizer). Never
    part of the student's prompt, a rollout or evaluation."""

    gold_calls: tuple[ToolCall, ...]
    answers: tuple[str, ...]


@dataclass(frozen=True)
class TaskSpec:
    """What every benchmark says about one of its tasks."""

    task_id: str
    split: str
    category: str


class ActionSpace(gym.Space[AgentAction]):
    """Any :class:`AgentAction`; sampling gives a plain text reply."""

    def __init__(self, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, AgentAction)

    def sample(self, mask: Any = None, probability: Any = None) -> AgentAction:
        return AgentAction(content=f"Reply {int(self.np_random.integers(1 << 16))}.")


class ObservationSpace(gym.Space[dict]):
    """``{"messages": [{"role", "content", ...}], "tools": [schema, ...]}``."""

    ROLES = ("system", "user", "tool")

    def __init__(self, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    def contains(self, x: Any) -> bool:
        if not isinstance(x, dict) or set(x) != {"messages", "tools"}:
            return False
        if not isinstance(x["tools"], list) or not isinstance(x["messages"], list):
            return False
        return all(
            isinstance(m, dict)
            and m.get("role") in self.ROLES
            and isinstance(m.get("content"), str)
            for m in x["messages"]
        )

    def sample(self, mask: Any = None, probability: Any = None) -> dict:
        return {"messages": [{"role": "user", "content": "Hello."}], "tools": []}


@dataclass
class EpisodeCounters:
    """Per-episode counts reported in ``info``."""

    turns: int = 0
    steps: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    invalid_actions: int = 0
    user_turns: int = 0
    tools_used: list[str] = field(default_factory=list)


class ToolUseEnv(gym.Env[dict, AgentAction], abc.ABC):
    """Base class of toolgym's benchmarks; see the module docstring for the contract.

    A subclass implements ``reset``/``step`` and these benchmark hooks:

    * :meth:`tasks` -- the tasks of the env's split, as :class:`TaskSpec`.
    * :meth:`gold_actions` -- for a task, a scripted list of agent actions that the
      benchmark's evaluator scores 1.0 with the env's scripted user (the conformance
      suite replays it).
    * :meth:`state_hash` -- a hash of the mutable world state, for isolation checks.
    * :meth:`episode_record` -- the untruncated record of the current episode.

    and sets ``max_action_chars``, the longest assistant message it accepts.

    ``releases_gil`` (False by default) says that ``reset``/``step`` spend their time outside
    this Python process or in code that releases the GIL (AppWorld waits on its server), so
    an env pool may run several envs' calls at once in threads. An env that sets it must
    accept ``reset``/``step``/``close`` from any thread, one call at a time per env, while
    other envs of its class are called from other threads.
    """

    max_action_chars: int
    releases_gil: ClassVar[bool] = False

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.action_space = ActionSpace()
        self.observation_space = ObservationSpace()
        self._done = True  # no episode until reset()

    def _check_step(self, action: Any, hint: str) -> None:
        """API misuse (not agent mistakes) raises: stepping a finished episode, or an
        action that is not an AgentAction (``hint`` says how to make one)."""
        if self._done:
            raise RuntimeError("episode is over: call reset() before step()")
        if not isinstance(action, AgentAction):
            raise TypeError(
                f"step() takes an envs.core.AgentAction, got {type(action).__name__}; {hint}"
            )

    @abc.abstractmethod
    def tasks(self) -> list[TaskSpec]: ...

    @abc.abstractmethod
    def gold_actions(self, task_id: str) -> list[AgentAction]: ...

    def task_labels(self, task_id: str) -> TaskLabels:
        """The gold tool calls of ``gold_actions``; benchmarks with explicit answers
        override this to add them."""
        calls = tuple(c for a in self.gold_actions(task_id) for c in a.tool_calls)
        return TaskLabels(gold_calls=calls, answers=())

    @abc.abstractmethod
    def state_hash(self) -> str: ...

    @abc.abstractmethod
    def episode_record(self) -> dict[str, Any]: ...
