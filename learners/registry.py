"""Learners: each says only how its loss differs; the loop (learners/training/train.py) is shared.

A learner is a class registered by name with :func:`register_learner`, built from its
config dataclass. The loop gives it one episode at a time (:class:`LossInput`, with the
policy's logits from one shared-prefix forward of the whole group,
:func:`learners.forward.backward_shared_prefix`) and sums what :meth:`Learner.loss`
returns; advantages always come from the credit method the learner names
(``credit_method``): learners never compute advantages themselves.

To add a learner, follow docs/ADDING_A_LEARNER.md (a worked example its test runs).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.episode import Episode, EpisodeGroup
from credit.teacher import Teacher
from envs.config import ConfigError, did_you_mean
from learners.forward import episode_logprobs


@dataclass
class LossInput:
    """One episode of the batch, with everything a loss may need."""

    model: torch.nn.Module
    """The trainable policy (for passes under other contexts, e.g. a teacher prompt)."""
    group: EpisodeGroup
    index: int
    """The episode's index in ``group.episodes``."""
    advantages: torch.Tensor
    """``(T,)`` from the credit method, zero outside the response mask."""
    scale: float
    """Multiplies the masked token sum: 1/(batch response tokens) for token-mean
    aggregation, 1/(batch episodes x episode tokens) for sequence-mean."""
    logits: torch.Tensor
    """``(R, V)`` fp32 logits of the policy predicting the episode's R response tokens
    (``episode.response_positions()``, in order), with gradient. Only these positions go
    through the LM head."""
    teacher_prompt_ids: list[int] | None = None
    """The teacher prompt credit assignment scored this episode under (SGCD's credit
    reference), if any."""

    @property
    def episode(self) -> Episode:
        return self.group.episodes[self.index]

    def token_logprobs(self, temperature: float) -> torch.Tensor:
        """``(T,)`` log-probs of ``episode.ids`` at the sampling ``temperature``: from
        :attr:`logits` at the response tokens (with gradient), 0 elsewhere."""
        return episode_logprobs(self.logits, self.episode, temperature)


@dataclass
class LearnerContext:
    """What the loop shares with learners, built once per run."""

    temperature: float
    """The rollout temperature: log-probs are recomputed at it (1 for greedy)."""
    autocast: torch.dtype | None
    """Forward dtype over fp32 master weights (None: fp32)."""
    max_tokens_per_forward: int = 16_384
    """Micro-batch budget of every forward: rows x longest continuation."""
    reference: torch.nn.Module | None = None
    """A frozen copy of the initial policy, for learners with ``needs_reference``."""
    teacher: Teacher | None = None
    """The credit teacher (policy + prompt adapter + analyst) for teacher-scored methods."""


class Learner(abc.ABC):
    credit_method: ClassVar[str] = "grpo"
    """The credit method (``credit.get_credit``) whose advantages this learner trains on."""
    needs_reference: ClassVar[bool] = False
    """Whether the loop must keep a frozen reference policy."""

    def __init__(self, config: Any, context: LearnerContext):
        self.config = config
        self.context = context

    def credit_config(self) -> dict[str, Any]:
        """Options for the credit method (default: its defaults)."""
        return getattr(self.config, "credit", None) or {}

    @classmethod
    def needs_analyst(cls, config: Any) -> bool:
        """Whether a run with this (typed) config needs the external credit analyst
        (``credit_llm``): built before the learner, so decided from the config alone."""
        return False

    @abc.abstractmethod
    def loss(self, x: LossInput) -> tuple[torch.Tensor, dict[str, float]]:
        """Scaled loss of one episode and its metrics (namespaced ``loss/...``)."""

    def after_step(self, model: torch.nn.Module) -> None:  # noqa: B027 (optional hook)
        """Called after each optimizer step (e.g. to update an EMA teacher)."""


@dataclass(frozen=True)
class LearnerEntry:
    name: str
    learner_class: type[Learner]
    config_class: type

    def make_config(self, options: dict[str, Any]) -> Any:
        """The typed config (nested dataclasses included) from a plain dict; an unknown or
        ill-typed option is a ConfigError naming it."""
        try:
            merged = OmegaConf.merge(OmegaConf.structured(self.config_class), options)
            return OmegaConf.to_object(merged)
        except (OmegaConfBaseException, ValueError) as e:
            raise ConfigError(f"learner {self.name}: {e}".splitlines()[0]) from e


_LEARNERS: dict[str, LearnerEntry] = {}


def register_learner(name: str, config_class: type) -> Callable[[type[Learner]], type[Learner]]:
    def decorate(cls: type[Learner]) -> type[Learner]:
        if name in _LEARNERS:
            raise ValueError(f"learner {name!r} is already registered")
        _LEARNERS[name] = LearnerEntry(name, cls, config_class)
        return cls

    return decorate


def get_learner(name: str) -> LearnerEntry:
    if name not in _LEARNERS:
        raise ConfigError(f"unknown learner {name!r}{did_you_mean(name, known_learners())}")
    return _LEARNERS[name]


def known_learners() -> list[str]:
    return sorted(_LEARNERS)
