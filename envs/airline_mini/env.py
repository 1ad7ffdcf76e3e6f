"""airline-mini, the small domain, as a Gymnasium env (registered as
``toolgym/airline-mini-v0``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envs.airline_mini.policy import REFUSAL
from envs.airline_mini.tasks import airline_mini_domain, airline_mini_taskset
from envs.core import AgentAction, TaskLabels, ToolCall
from envs.tau_env import TauEnv, TauEnvConfig
from envs.users import UserSimulator


@dataclass(frozen=True)
class AirlineMiniConfig(TauEnvConfig):
    """Budgets sized to the small domain: a gold episode takes at most three steps (two
    tool calls and one reply) and one turn, two with a confirmation question."""

    max_turns: int = 4
    """Assistant messages to the user before truncation: room for a question or two."""
    max_steps: int = 8
    """All assistant messages, tool calls included: twice what a gold episode with a
    confirmation question takes."""
    max_observation_chars: int = 1000
    """Every tool result a task needs is shorter (the generator's ``max_record_chars`` is
    700, a cancellation adds ~80), so the agent never loses a field it must read."""
    max_action_chars: int = 2000
    """A reply here is a sentence or two; longer messages are rejected."""


class AirlineMiniEnv(TauEnv):
    """The small airline domain: look up a user or reservation, cancel when the policy
    allows, transfer what the tools cannot do. Four tools, a policy of 236 SmolLM2 tokens."""

    config_class = AirlineMiniConfig

    def __init__(self, user: UserSimulator | None = None, **options: Any):
        """``options``: the fields of :class:`AirlineMiniConfig`."""
        super().__init__(airline_mini_domain(), user=user, **options)
        self._lookups = airline_mini_taskset().lookups

    def gold_actions(self, task_id: str) -> list[AgentAction]:
        """The gold solution; a refused cancellation first looks the reservation up, as
        the policy asks, and says why it refuses (the evaluator scores it the same, and
        SFT on it teaches the check rather than a blind refusal)."""
        lookups = self._lookups.get(task_id, ())
        if not lookups:
            return super().gold_actions(task_id)
        calls = [
            AgentAction(tool_calls=(ToolCall(name, dict(arguments), f"lookup_{k}"),))
            for k, (name, arguments) in enumerate(lookups)
        ]
        return [*calls, AgentAction(content=REFUSAL)]

    def task_labels(self, task_id: str) -> TaskLabels:
        """The evaluator's labels plus the lookups the demonstration makes: they are part
        of the gold solution, so the analyst must not see their values either."""
        labels = super().task_labels(task_id)
        lookups = tuple(ToolCall(n, dict(a)) for n, a in self._lookups.get(task_id, ()))
        return TaskLabels(gold_calls=labels.gold_calls + lookups, answers=labels.answers)
