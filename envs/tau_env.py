"""A Gymnasium env over any tau2 domain: tools on tau2's engine, scoring by tau2's evaluator.

The env owns the conversation loop (tau2's orchestrator is not used): each ``step`` takes
one assistant message. Tool calls run against the episode's own tau2 ``Environment``, built
at the episode's first call that may write (building one is most of a reset's cost, and
many episodes only read): until then they run on the domain's pristine world, which only
reading tools touch. A text message goes to the user simulator. The episode is scored at
its end on the untruncated trajectory exactly as tau2's ``evaluate_simulation`` scores its
own runs (DB and COMMUNICATE checks; action checks reported, not rewarded, in tau3), by
:mod:`envs.tau2_scoring`, which reuses the episode's world instead of rebuilding two.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from envs.config import ConfigError, build_config
from envs.core import AgentAction, EpisodeCounters, TaskLabels, TaskSpec, ToolCall, ToolUseEnv
from envs.tau2_engine import TauDomain
from envs.tau2_scoring import score_episode, summary
from envs.users import STOP, ScriptedUser, UserIdentity, UserScenario, UserSimulator, is_stop

GREETING = "Hi! How can I help you today?"  # tau2's first agent message


@dataclass(frozen=True)
class TauEnvConfig:
    """Episode limits of a tau2-backed env (defaults: the SGCD paper, Table 4)."""

    split: str = "train"
    """Task split the env draws from when ``reset`` gets no ``task_id``."""
    test_splits: tuple[str, ...] = ("test",)
    """Splits held out for evaluation: evaluation commands default to the first; SFT and
    training refuse all of them."""
    max_turns: int = 16
    """Assistant messages to the user (and user replies) before the episode is truncated."""
    max_steps: int = 64
    """All assistant messages, tool calls included: a cap on tool-call loops."""
    max_observation_chars: int = 512
    """Tool results and user messages are cut to this length in what the agent sees."""
    max_action_chars: int = 8000
    """An assistant message longer than this is rejected with an error observation."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "test_splits", tuple(self.test_splits))  # Hydra gives lists


class TauEnv(ToolUseEnv):
    """A tau2 domain as a toolgym env; subclasses say which domain (see tau3_airline).

    A subclass whose domain needs other default budgets sets ``config_class`` to a subclass
    of :class:`TauEnvConfig` that changes the defaults (see airline_mini)."""

    config_class: type[TauEnvConfig] = TauEnvConfig

    def __init__(self, domain: TauDomain, user: UserSimulator | None = None, **options: Any):
        super().__init__()
        self.domain = domain
        self.config = build_config(self.config_class, options, domain.name)
        self.user = user or ScriptedUser()
        self.max_action_chars = self.config.max_action_chars
        self._split_ids = domain.split_ids(self.config.split)
        self._task_id: str | None = None  # set by reset
        self._world = None

    # -- benchmark hooks -------------------------------------------------------------
    def tasks(self) -> list[TaskSpec]:
        return [
            TaskSpec(task_id=i, split=self.config.split, category=self.domain.category(i))
            for i in self._split_ids
        ]

    def gold_actions(self, task_id: str) -> list[AgentAction]:
        """The gold tool calls, one per message, then a closing message that states every
        ``communicate_info`` value (a transfer closes with the transfer notice)."""
        criteria = self.domain.tasks[task_id].evaluation_criteria
        actions = [
            AgentAction(tool_calls=(ToolCall(a.name, dict(a.arguments), f"gold_{k}"),))
            for k, a in enumerate(criteria.actions or [])
        ]
        info = "; ".join(criteria.communicate_info or [])
        closing = f"All done. {info}".strip() if actions or info else "Sorry, I cannot help."
        return actions + [AgentAction(content=closing)]

    def task_labels(self, task_id: str) -> TaskLabels:
        criteria = self.domain.tasks[task_id].evaluation_criteria
        calls = tuple(ToolCall(a.name, dict(a.arguments)) for a in criteria.actions or [])
        return TaskLabels(gold_calls=calls, answers=tuple(criteria.communicate_info or []))

    def state_hash(self) -> str:
        if self._task_id is None:
            raise RuntimeError("call reset() before state_hash()")
        return self._current_world().get_db_hash()

    def episode_record(self) -> dict[str, Any]:
        return {
            "task_id": self._task_id,
            "domain": self.domain.name,
            "user": self._identity.as_dict(),
            "messages": [m.model_dump(mode="json") for m in self._trajectory],
            "rejected": list(self._rejected),
        }

    # -- gymnasium API ---------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = options or {}
        task_id = options.get("task_id")
        if task_id is None:
            task_id = self._split_ids[int(self.np_random.integers(len(self._split_ids)))]
        task_id = str(task_id)
        if task_id not in self.domain.tasks:
            ids = sorted(self.domain.tasks, key=lambda t: (len(t), t))
            close = difflib.get_close_matches(task_id, ids, n=3)
            raise ConfigError(
                f"unknown task_id {task_id!r} for {self.domain.name}"
                + (f" (close: {close})" if close else "")
                + f"; its {len(ids)} tasks run {ids[0]}..{ids[-1]} (toolgym tasks lists them)"
            )
        from tau2.data_model.message import AssistantMessage, UserMessage

        task = self.domain.tasks[task_id]
        self._task_id = task_id
        self._category = self.domain.category(task_id)
        self._world = None  # built at the first call that may write (_world_for)
        self._counters = EpisodeCounters()
        self._rejected: list[dict[str, Any]] = []
        self._transferred = False
        self._identity: UserIdentity = self.user.start(_scenario(task), seed)
        self._trajectory: list = [AssistantMessage(role="assistant", content=GREETING)]
        self._conversation = [{"role": "assistant", "content": GREETING}]
        opening = self.user.reply(self._conversation, transferred=False)
        self._conversation.append({"role": "user", "content": opening})
        self._trajectory.append(UserMessage(role="user", content=opening))
        self._done = False
        obs = {
            "messages": [
                {"role": "system", "content": self.domain.policy},
                {"role": "user", "content": self._clip(opening)},
            ],
            "tools": list(self.domain.tool_schemas),
        }
        return obs, self._info()

    def step(self, action: AgentAction) -> tuple[dict, float, bool, bool, dict]:
        self._check_step(action, "parse model text with agents.tool_format.parse_action")
        self._counters.steps += 1
        if len(action.content) > self.config.max_action_chars:
            messages = [
                self._reject(action, f"message exceeds {self.config.max_action_chars} chars")
            ]
            return self._advance(messages, stop_reason=None)
        if action.is_tool_use:
            return self._advance(self._run_tools(action), stop_reason=None)
        if not action.content.strip():
            return self._advance([self._reject(action, "empty message")], stop_reason=None)
        return self._talk(action.content)

    def close(self) -> None:
        self._world = None
        self._done = True

    # -- internals -------------------------------------------------------------------
    def _run_tools(self, action: AgentAction) -> list[dict[str, str]]:
        from tau2.data_model.message import AssistantMessage
        from tau2.data_model.message import ToolCall as TauToolCall

        observations = [
            self._reject(action, f"malformed tool call: {raw}") for raw in action.malformed
        ]
        runnable = []
        for call in action.tool_calls:
            why = _unbounded(call)
            if why:
                observations.append(self._reject(action, f"{call.name}: {why}"))
            else:
                runnable.append(call)
        if not runnable:
            return observations
        calls = [
            TauToolCall(
                id=c.id or f"call_{self._counters.steps}_{k}", name=c.name, arguments=c.arguments
            )
            for k, c in enumerate(runnable)
        ]
        self._trajectory.append(
            AssistantMessage(role="assistant", content=action.content or None, tool_calls=calls)
        )
        for call in calls:
            result = self._world_for(call.name).get_response(call)
            self._trajectory.append(result)
            self._counters.tool_calls += 1
            self._counters.tool_errors += int(result.error)
            self._counters.tools_used.append(call.name)
            self._transferred |= call.name == "transfer_to_human_agents" and not result.error
            observations.append(
                {
                    "role": "tool",
                    "name": call.name,
                    "tool_call_id": call.id,
                    "content": self._clip(result.content or ""),
                }
            )
        return observations

    def _world_for(self, tool_name: str):
        """The world a call runs on: the episode's own from its first call that may write
        (a fresh world: the calls before only read), else the shared pristine one."""
        if self._world is None and not self.domain.leaves_db_alone(tool_name):
            self._world = self.domain.build_environment()
        return self._current_world()

    def _current_world(self):
        return self.domain.pristine_world() if self._world is None else self._world

    def _talk(self, content: str) -> tuple[dict, float, bool, bool, dict]:
        from tau2.data_model.message import AssistantMessage, UserMessage

        self._counters.turns += 1
        self._trajectory.append(AssistantMessage(role="assistant", content=content))
        self._conversation.append({"role": "assistant", "content": content})
        if STOP in content:
            return self._advance([], stop_reason="agent_stop")
        reply = self.user.reply(self._conversation, transferred=self._transferred)
        self._counters.user_turns += 1
        self._conversation.append({"role": "user", "content": reply})
        self._trajectory.append(UserMessage(role="user", content=reply))
        message = {"role": "user", "content": self._clip(reply)}
        return self._advance([message], stop_reason="user_stop" if is_stop(reply) else None)

    def _reject(self, action: AgentAction, why: str) -> dict[str, str]:
        self._counters.invalid_actions += 1
        self._rejected.append(
            {"step": self._counters.steps, "content": action.content, "error": why}
        )
        return {"role": "tool", "name": "error", "tool_call_id": "", "content": f"Error: {why}"}

    def _advance(self, messages, stop_reason: str | None):
        over_budget = (
            self._counters.turns >= self.config.max_turns
            or self._counters.steps >= self.config.max_steps
        )
        terminated = stop_reason is not None
        truncated = over_budget and not terminated
        info = self._info()
        reward = 0.0
        if terminated or truncated:
            self._done = True
            reward, final = self._score(stop_reason or "max_steps")
            info.update(final)
        return {"messages": messages, "tools": []}, reward, terminated, truncated, info

    def _score(self, termination: str) -> tuple[float, dict[str, Any]]:
        from tau2.data_model.simulation import TerminationReason

        result = score_episode(
            self.domain,
            self._task_id,
            self._current_world(),
            self._trajectory,
            TerminationReason(termination),
        )
        return float(result.reward), {"termination_reason": termination, **summary(result)}

    def _clip(self, text: str) -> str:
        limit = self.config.max_observation_chars
        return (
            text
            if len(text) <= limit
            else text[:limit] + f"... [truncated {len(text) - limit} chars]"
        )

    def _info(self) -> dict[str, Any]:
        c = self._counters
        return {
            "task_id": self._task_id,
            "category": self._category,
            "turns": c.turns,
            "steps": c.steps,
            "tool_calls": c.tool_calls,
            "tool_errors": c.tool_errors,
            "invalid_actions": c.invalid_actions,
            "tools_used": list(c.tools_used),
            "user": self._identity.as_dict(),
        }


def _scenario(task) -> UserScenario:
    instructions = task.user_scenario.instructions
    return UserScenario(
        reason_for_call=getattr(instructions, "reason_for_call", str(instructions)),
        known_info=getattr(instructions, "known_info", "") or "",
        task_instructions=getattr(instructions, "task_instructions", "") or "",
        full_text=str(task.user_scenario),
    )


def _unbounded(call: ToolCall) -> str | None:
    """Why tau2 would run ``call`` without a bound on time or memory, or None. Its
    ``calculate`` evaluates the expression with ``eval``: an integer power such as
    ``9**9**8`` never returns and would stall a whole rollout batch; the tool's own
    description offers only +, -, *, / and parentheses."""
    expression = call.arguments.get("expression") if call.name == "calculate" else None
    if isinstance(expression, str) and "**" in expression.replace(" ", ""):
        return "only +, -, *, / and parentheses are supported (no **)"
    return None
