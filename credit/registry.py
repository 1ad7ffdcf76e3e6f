"""Credit methods by name: one signature for every method.

A credit method turns sibling groups into per-token advantages::

    @register_credit("grpo", GroupRelativeConfig)
    def assign(groups: list[EpisodeGroup], teacher: Teacher | None,
               config: GroupRelativeConfig) -> StepCredit: ...

* ``groups`` -- the step's sibling groups, in order; ``TokenAdvantages`` lists their
  episodes in the same order (group by group, sibling by sibling).
* ``teacher`` -- a :class:`credit.teacher.Teacher`: what teacher-scored methods need
  beyond the groups (the policy model, the agent-side prompt adapter, the external credit
  analyst); ``None`` for methods that score nothing (GRPO). A method that needs it
  raises ``ValueError`` when it is missing.
* ``config`` -- an instance of the dataclass the method registered with. Hydra builds it
  from ``configs/credit/<name>.yaml``; :meth:`CreditMethod.make_config` builds it from a
  plain dict and names unknown options.

A method returns a :class:`~credit.types.TokenAdvantages`, or, when its advantages need
the student's logits at the response tokens (teacher-scored credit), a
:class:`~credit.reweight.AwaitingStudent`: the trainer finishes it from its own forward
(``get_credit(name).start(...)``, then ``advantage(i, logits)`` per episode), other callers
get it complete (``get_credit(name).assign(...)``). Learners never compute advantages
themselves.

A method may also register ``early(group, teacher, config)``: work it can start on one
group as soon as that group's rollouts have ended and before the step's other groups
have (SGCD: its analyst request, sent to an :class:`agents.chat.EarlyStartChat`). The
trainer calls it for the groups the step will learn from; it must not change what
``start`` computes.

An unknown name raises ``ValueError`` listing the registered ones (verl's estimator
registry, without per-estimator arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from omegaconf import OmegaConf

from credit.types import StepCredit, TokenAdvantages

AssignFn = Callable[..., StepCredit]
EarlyFn = Callable[[Any, Any, Any], None]


@dataclass(frozen=True)
class CreditMethod:
    name: str
    fn: AssignFn
    config_class: type
    early: EarlyFn | None = None

    def start(self, groups: list, teacher: Any, config: Any) -> StepCredit:
        """The step's credit as far as it goes without the learner's forward."""
        return self.fn(groups, teacher, config)

    def assign(self, groups: list, teacher: Any, config: Any) -> TokenAdvantages:
        """The step's credit, complete."""
        return self.fn(groups, teacher, config).complete()

    def make_config(self, options: dict[str, Any] | None = None) -> Any:
        """The config from a plain (possibly nested) dict, checked and typed as Hydra does;
        an unknown option name raises with the known ones."""
        options = options or {}
        _check_names(self.name, self.config_class, options, prefix="")
        merged = OmegaConf.merge(OmegaConf.structured(self.config_class), options)
        return OmegaConf.to_object(merged)


def _check_names(method: str, config_class: type, options: dict[str, Any], prefix: str) -> None:
    defaults = config_class()
    known = sorted(f.name for f in fields(config_class))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"credit method {method!r}: unknown options {[prefix + u for u in unknown]}; "
            f"known{' under ' + prefix.rstrip('.') if prefix else ''}: {known}"
        )
    for name, value in options.items():
        nested = getattr(defaults, name)
        if isinstance(value, dict) and is_dataclass(nested):
            _check_names(method, type(nested), value, prefix=f"{prefix}{name}.")


_METHODS: dict[str, CreditMethod] = {}


def register_credit(
    name: str, config_class: type, early: EarlyFn | None = None
) -> Callable[[AssignFn], AssignFn]:
    def decorate(assign: AssignFn) -> AssignFn:
        if name in _METHODS:
            raise ValueError(f"credit method {name!r} is already registered")
        _METHODS[name] = CreditMethod(name=name, fn=assign, config_class=config_class, early=early)
        return assign

    return decorate


def get_credit(name: str) -> CreditMethod:
    if name not in _METHODS:
        raise ValueError(f"unknown credit method {name!r}; known: {known_credit_methods()}")
    return _METHODS[name]


def known_credit_methods() -> list[str]:
    return sorted(_METHODS)
