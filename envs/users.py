"""The simulated-user seam of conversational envs.

An env hands its user simulator the task's user scenario and the user-visible conversation
(assistant text and user replies, never tool traffic) and gets the user's next message.
Two simulators:

* :class:`ScriptedUser` -- deterministic rules, for tests and CPU demos.
* :class:`LLMUser` -- tau2's own user-simulator prompt, answered by any
  :class:`ChatBackend` (Anthropic API, a local transformers model, an OpenAI-compatible
  server; the backends live in ``agents``).

Every simulator reports a :class:`UserIdentity` (model, prompt hash, temperature) that the
env records with each episode, so a failure caused by the user side can be told apart.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from envs.config import ConfigError

STOP = "###STOP###"
TRANSFER = "###TRANSFER###"
OUT_OF_SCOPE = "###OUT-OF-SCOPE###"
STOP_MARKERS = (STOP, TRANSFER, OUT_OF_SCOPE)


def is_stop(message: str) -> bool:
    return any(marker in message for marker in STOP_MARKERS)


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UserIdentity:
    model: str
    prompt_hash: str
    temperature: float | None  # None: the model's default

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UserScenario:
    """What the simulated customer knows and wants (tau2's ``user_scenario``)."""

    reason_for_call: str
    known_info: str
    task_instructions: str
    full_text: str  # the scenario as tau2 renders it into the LLM user's prompt


class ChatBackend(Protocol):
    """A chat model that completes a list of ``{"role", "content"}`` messages.

    ``temperature=None`` samples at the model's default; a backend whose API cannot set
    it has ``supports_temperature = False`` and accepts only None.
    """

    model: str
    supports_temperature: bool

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float | None, seed: int | None
    ) -> str: ...


class UserSimulator(abc.ABC):
    """Plays the customer. ``conversation`` alternates assistant/user text messages."""

    @abc.abstractmethod
    def start(self, scenario: UserScenario, seed: int | None) -> UserIdentity:
        """Begin an episode; returns the identity to record with it."""

    @abc.abstractmethod
    def reply(self, conversation: list[dict[str, str]], *, transferred: bool) -> str:
        """The user's next message; a stop marker in it ends the episode."""


@dataclass
class ScriptedUser(UserSimulator):
    """Deterministic customer.

    Its first message states the reason for the call and what it knows. Afterwards it
    answers ``transfer_marker`` once the agent has transferred it to a human, confirms
    (``confirmation``) when the agent's message ends in a question, and otherwise ends
    the conversation with ``###STOP###``.
    """

    confirmation: str = "Yes, please go ahead."

    def start(self, scenario: UserScenario, seed: int | None) -> UserIdentity:
        self._scenario = scenario
        rules = f"scripted-v1|confirm={self.confirmation}|{scenario.full_text}"
        return UserIdentity(model="scripted", prompt_hash=prompt_hash(rules), temperature=0.0)

    def reply(self, conversation: list[dict[str, str]], *, transferred: bool) -> str:
        if len([m for m in conversation if m["role"] == "user"]) == 0:
            return f"{self._scenario.reason_for_call.strip()}\n{self._scenario.known_info.strip()}"
        if transferred:
            return TRANSFER
        if conversation[-1]["content"].rstrip().endswith("?"):
            return self.confirmation
        return STOP


@dataclass
class LLMUser(UserSimulator):
    """tau2's LLM user simulator (its system prompt and stop rules) on any chat backend.

    The system prompt is built by ``tau2.user.user_simulator.UserSimulator`` from the
    task's scenario, so it is the one tau2's own leaderboard runs use; roles are flipped
    as tau2 does (the simulated user speaks as "assistant" to its model).
    """

    backend: ChatBackend
    temperature: float | None = None
    """None: the model's default (the only choice on Anthropic's current API)."""

    def __post_init__(self) -> None:
        if self.temperature is not None and not self.backend.supports_temperature:
            raise ConfigError(
                f"chat backend {self.backend.model} cannot set a temperature; use null"
            )

    def start(self, scenario: UserScenario, seed: int | None) -> UserIdentity:
        from envs.tau2_engine import tau2_user_system_prompt

        self._system = tau2_user_system_prompt(scenario.full_text)
        self._seed = seed
        return UserIdentity(
            model=self.backend.model,
            prompt_hash=prompt_hash(self._system),
            temperature=self.temperature,
        )

    def reply(self, conversation: list[dict[str, str]], *, transferred: bool) -> str:
        flipped = {"assistant": "user", "user": "assistant"}
        messages = [{"role": "system", "content": self._system}] + [
            {"role": flipped[m["role"]], "content": m["content"]} for m in conversation
        ]
        return self.backend.complete(messages, temperature=self.temperature, seed=self._seed)
