"""A step's credit, computed while the update's forward runs when it waits on a network.

The learner's forward over a step's groups needs no credit; its loss does
(:func:`learners.forward.backward_shared_prefix` asks for the first loss only after the
forward of the shared prefix and the first micro-batch; a teacher-scored credit finishes
each episode from that forward's logits, :class:`credit.types.StepCredit`). SGCD's
credit waits seconds on a hosted analyst; computed in a worker thread, that wait overlaps
the forward, and the loss waits for what is left of it (meanwhile the forward's
activations are held, and the teacher side may be scored beside them). A credit that
computes on this machine (a local analyst, teacher scoring alone, group statistics) would
only compete for the same cores: it is computed at once, before the update.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache

import torch

from credit.types import StepCredit, TokenAdvantages


class PendingCredit:
    """``assign()``'s :class:`~credit.types.StepCredit`, started in a worker thread
    (``in_background``) or computed now; itself a step credit whose first read waits for
    it, so a loss built from it waits and the forward before it does not."""

    def __init__(self, assign: Callable[[], StepCredit], in_background: bool) -> None:
        self._assign = assign
        self._future: Future | None = None
        self._value: StepCredit | None = None
        self.seconds = 0.0
        """How long ``assign`` took."""
        self.waited_s = 0.0
        """How long the credit held up the update (not in background: all of ``seconds``)."""
        if in_background:
            self._future = _worker().submit(self._timed)
        else:
            self._value = self._timed()
            self.waited_s = self.seconds

    def _timed(self) -> StepCredit:
        start = time.perf_counter()
        value = self._assign()
        self.seconds = time.perf_counter() - start
        return value

    def result(self) -> StepCredit:
        if self._value is None:
            start = time.perf_counter()
            self._value = self._future.result()
            self.waited_s = time.perf_counter() - start
        return self._value

    @property
    def teacher_prompts(self) -> Sequence[list[int] | None]:
        return _AwaitedPrompts(self)

    def advantage(self, index: int, student_logits: torch.Tensor) -> torch.Tensor:
        return self.result().advantage(index, student_logits)

    def complete(self) -> TokenAdvantages:
        return self.result().complete()


@cache
def _worker() -> ThreadPoolExecutor:
    """One thread for every step's credit: a new thread's first teacher scoring ran ~20%
    slower here (its own malloc arena and OpenMP team start cold)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="credit")


class _AwaitedPrompts(Sequence):
    """The pending credit's teacher prompts, read (and waited for) on first use."""

    def __init__(self, pending: PendingCredit) -> None:
        self._pending = pending

    def _items(self) -> Sequence[list[int] | None]:
        return self._pending.result().teacher_prompts

    def __getitem__(self, index):
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())
