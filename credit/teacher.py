"""Teacher scoring: the same policy scored on the same sampled tokens under two contexts.

The student context is the group's clean prompt; the teacher context is a prompt carrying
privileged training-time text (SGCD: the sibling credit reference; GEAR: ground truth;
SDPO: a successful sibling). At every response token the two next-token distributions are
reduced to a shared local support -- the teacher's top-K tokens, the observed token, and a
tail bucket holding the remaining mass -- so they can be compared with
:mod:`credit.divergence` (SGCD §4.3, App. B "Dense credit features").

The two sides run apart, without gradient. The teacher side (:meth:`TeacherScorer.score_teacher`)
fixes the support. The student side is the policy under the clean prompt: exactly the
logits the learner's own forward computes at the response tokens, so in training the
student side comes from that forward (:class:`credit.reweight.AwaitingStudent`) and SGCD
costs one extra forward, the teacher's, as the paper states;
:meth:`TeacherScorer.score_student` computes it for callers without a learner forward.

Work that is shared is done once: each prompt for all siblings of a group (its keys and
values are read by every sibling's continuation), and the tokens the sampler already
encoded for the rollouts (a :class:`PromptCache`: the group's prompt, most of a τ³
episode) are not encoded again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from agents.cpu_attention import continuation_batches, logits_after_prefix
from agents.episode import Episode, EpisodeGroup
from credit.divergence import DIVERGENCES, entropy
from credit.sanitizer import PrivateValues
from envs.users import ChatBackend


@dataclass
class ScoringConfig:
    top_k: int = 100
    """K of the teacher top-K support. SGCD does not state K; SDPO's reference code
    (lasgroup/SDPO) uses K = 100, as Table 7 lists ("top-K≈100")."""
    divergence: str = "reverse_kl"
    """``reverse_kl`` (SGCD's reported runs, eq. 2), ``forward_kl`` or ``jsd`` (the pilot
    checks of §4.3 / App. B). Computed on the policy's own distributions, at temperature 1
    whatever the sampling temperature: eq. 2 compares the policy p with the teacher q, and
    the credit features describe what the model believes, not how it was sampled (toolgym
    choice; SDPO's loss, by contrast, divides by the sampling temperature as
    lasgroup/SDPO does, since its gradient acts on the sampling distribution)."""
    max_tokens_per_forward: int = 16_384
    """Siblings are batched while their tokens (``batch × longest episode`` where rows are
    padded) stay within this, at least one per forward
    (``agents.cpu_attention.continuation_batches``); it bounds the forward's activations
    (logits are kept only at response tokens). 16,384 = the max response length of Tables
    3-4, so one longest sibling fits (toolgym choice)."""
    positions_per_chunk: int = 1_024
    """Response positions reduced to the support at a time; bounds the fp32 ``(chunk, V)``
    log-softmax (toolgym choice)."""

    def __post_init__(self) -> None:
        if self.divergence not in DIVERGENCES:
            raise ValueError(
                f"unknown divergence {self.divergence!r}; known: {sorted(DIVERGENCES)}"
            )
        if self.top_k < 1 or self.max_tokens_per_forward < 1 or self.positions_per_chunk < 1:
            raise ValueError("top_k, max_tokens_per_forward, positions_per_chunk must be >= 1")


@dataclass
class TeacherSide:
    """One episode's teacher distributions at its ``R`` response tokens, on CPU.

    ``support_ids[:, :K]`` are the teacher's top-K tokens and ``support_ids[:, K]`` the
    observed token; ``teacher_logp`` has their slots plus the tail bucket last. The
    observed token's slot is ``-inf`` when it is already in the top-K.
    """

    positions: torch.Tensor  # (R,) indices into episode.ids
    support_ids: torch.Tensor  # (R, K+1)
    teacher_logp: torch.Tensor  # (R, K+2)
    teacher_entropy: torch.Tensor  # (R,) entropy of the teacher's support distribution


@dataclass
class SupportScores:
    """One episode's scores at its ``R`` response tokens on the teacher's support (the
    slots of :class:`TeacherSide`), both sides, on CPU."""

    positions: torch.Tensor  # (R,) indices into episode.ids
    support_ids: torch.Tensor  # (R, K+1)
    student_logp: torch.Tensor  # (R, K+2)
    teacher_logp: torch.Tensor  # (R, K+2)
    teacher_entropy: torch.Tensor  # (R,) entropy of the teacher's support distribution


def teacher_support(
    teacher_logits: torch.Tensor, observed: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, V)`` teacher logits to ``support_ids`` ``(R, K+1)`` (top-K ∪ observed) and the
    teacher's log-probs on it ``(R, K+2)`` (tail last)."""
    teacher = torch.log_softmax(teacher_logits.float(), dim=-1)  # (R, V)
    top = teacher.topk(min(k, teacher.shape[-1]), dim=-1).indices  # (R, K)
    support_ids = torch.cat([top, observed[:, None]], dim=-1)  # (R, K+1)
    return support_ids, _on_support(teacher, support_ids)


def on_support(logits: torch.Tensor, support_ids: torch.Tensor) -> torch.Tensor:
    """``(R, V)`` logits to log-probs ``(R, K+2)`` on ``support_ids`` ``(R, K+1)`` plus the
    tail. The tail is a log-sum-exp over the tokens outside the support, so it is exact even
    when the support holds nearly all the mass (``1 - sum`` would cancel)."""
    return _on_support(torch.log_softmax(logits.float(), dim=-1), support_ids)


def _on_support(logp: torch.Tensor, support_ids: torch.Tensor) -> torch.Tensor:
    in_top = (support_ids[:, :-1] == support_ids[:, -1:]).any(dim=-1)  # (R,)
    slots = logp.gather(-1, support_ids)  # (R, K+1)
    slots[:, -1] = slots[:, -1].masked_fill(in_top, float("-inf"))  # counted once
    outside = logp.scatter(-1, support_ids, float("-inf"))  # (R, V)
    tail = torch.logsumexp(outside, dim=-1, keepdim=True)  # (R, 1)
    return torch.cat([slots, tail], dim=-1)  # (R, K+2)


@torch.no_grad()
def student_scores(
    side: TeacherSide, student_logits: torch.Tensor, positions_per_chunk: int
) -> SupportScores:
    """Both sides' scores from an episode's teacher side and the student's ``(R, V)`` logits
    at its response tokens (any device; reduced ``positions_per_chunk`` rows at a time)."""
    support_ids = side.support_ids.to(student_logits.device)
    rows = _slices(len(side.positions), positions_per_chunk)
    parts = [on_support(student_logits[r], support_ids[r]) for r in rows]
    student = torch.cat(parts) if parts else torch.empty(side.teacher_logp.shape)
    return SupportScores(
        positions=side.positions,
        support_ids=side.support_ids,
        student_logp=student.cpu(),
        teacher_logp=side.teacher_logp,
        teacher_entropy=side.teacher_entropy,
    )


def _slices(rows: int, chunk: int) -> list[slice]:
    """``rows`` response positions in slices of ``chunk``: bounds the fp32 ``(chunk, V)``
    log-softmax."""
    return [slice(start, start + chunk) for start in range(0, rows, chunk)]


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Score without dropout, then give the learner its module back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass
class _Context:
    cache: Any  # the model's KV cache after the prompt (transformers Cache)
    last_logits: torch.Tensor  # (V,) logits after the prompt: predict ids[0]


class PromptCache(Protocol):
    """Keys/values a sampler holds for a prompt, computed with the scorer's own model and
    weights (agents.hf_generation.HFGenerator)."""

    model: torch.nn.Module

    def cached_prefix(self, ids: list[int]) -> tuple[int, Any]:
        """``(n, cache)``: a batch-of-one transformers cache of ``ids[:n]``; ``(0, None)``."""
        ...


class TeacherScorer:
    """Scores episodes under a teacher (and a student) prompt with one causal LM.

    ``model`` is any transformers causal LM (``model(input_ids=..., attention_mask=...,
    cache=..., logits_to_keep=...)`` returning ``.logits`` and ``.cache``; a boolean
    ``(B, L)`` ``logits_to_keep`` projects only the rows it marks): in training it is the
    policy itself, so the teacher is the current policy under another context.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: ScoringConfig,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        if prompt_cache is not None and prompt_cache.model is not model:
            raise ValueError("a prompt cache must hold keys/values of the scoring model")
        self.model = model
        self.config = config
        self.prompt_cache = prompt_cache

    @torch.no_grad()
    def score_teacher(
        self, teacher_prompt_ids: Sequence[int], episodes: Sequence[Episode]
    ) -> list[TeacherSide]:
        """Each episode's teacher side: the support and the teacher's log-probs on it."""
        sides: dict[int, TeacherSide] = {}
        for i, logits in self._continuations(teacher_prompt_ids, episodes):
            positions = _response_positions(episodes[i])  # (R,)
            observed = torch.tensor(episodes[i].ids)[positions].to(logits.device)  # (R,)
            rows = _slices(len(positions), self.config.positions_per_chunk)
            parts = [teacher_support(logits[r], observed[r], self.config.top_k) for r in rows]
            k_plus = min(self.config.top_k, logits.shape[-1]) + 1
            support_ids = (
                torch.cat([p[0] for p in parts]) if parts else torch.empty(0, k_plus).long()
            )
            teacher = torch.cat([p[1] for p in parts]) if parts else torch.empty(0, k_plus + 1)
            teacher = teacher.cpu()
            sides[i] = TeacherSide(positions, support_ids.cpu(), teacher, entropy(teacher))
        return [sides[i] for i in range(len(episodes))]

    @torch.no_grad()
    def score_student(
        self,
        student_prompt_ids: Sequence[int],
        sides: Sequence[TeacherSide],
        episodes: Sequence[Episode],
    ) -> list[SupportScores]:
        """The student side on each episode's teacher support: the pass the learner's
        forward makes anyway, for callers without one."""
        scores: dict[int, SupportScores] = {}
        for i, logits in self._continuations(student_prompt_ids, episodes):
            scores[i] = student_scores(sides[i], logits, self.config.positions_per_chunk)
        return [scores[i] for i in range(len(episodes))]

    def _continuations(
        self, prompt_ids: Sequence[int], episodes: Sequence[Episode]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(i, (R, V) logits)`` predicting episode i's response tokens after the prompt,
        a forward batch at a time (only those rows go through the LM head, not tool
        observations or padding)."""
        if not prompt_ids:
            raise ValueError("teacher scoring needs non-empty student and teacher prompts")
        lengths = [len(e.ids) for e in episodes]
        budget = self.config.max_tokens_per_forward
        with _eval_mode(self.model):
            context = self._context(list(prompt_ids))
            prefix = [(layer.keys, layer.values) for layer in context.cache.layers]
            for indices in continuation_batches(self.model, True, lengths, budget):
                rows = [list(episodes[i].ids) for i in indices]
                wanted = [episodes[i].response_positions() for i in indices]
                logits = logits_after_prefix(self.model, prefix, context.last_logits, rows, wanted)
                yield from zip(indices, logits, strict=True)

    def _context(self, ids: list[int]) -> _Context:
        """The prompt's keys/values, from the sampler's cache as far as it reaches; the
        last token always runs, as its logits predict the first response token."""
        # a fresh cache object over the sampler's tensors: extending it concatenates new
        # tensors, the sampler's are never written
        reused, cache = (
            self.prompt_cache.cached_prefix(ids[:-1]) if self.prompt_cache else (0, None)
        )
        tokens = torch.tensor([ids[reused:]], device=next(self.model.parameters()).device)
        out = self.model(input_ids=tokens, cache=cache, use_cache=True, logits_to_keep=1)
        return _Context(cache=out.cache, last_logits=out.logits[0, -1])


def _response_positions(episode: Episode) -> torch.Tensor:
    return torch.tensor(episode.response_positions(), dtype=torch.long)  # (R,)


class TaskPrompts(Protocol):
    """The agent-side adapter teacher-scored credit needs; agents/ implements it.

    credit/ knows no chat template or tokenizer: the adapter reads a group's task as the
    policy saw it, names the task's private labels, renders them as a reference solution,
    renders a teacher prompt around a context text, and decodes ids one token at a time.
    """

    def instruction(self, group: EpisodeGroup) -> str:
        """The task instruction as the policy saw it (e.g. the user's opening message).
        Called from the analyst's worker threads: keep it free of shared mutable state."""
        ...

    def private_values(self, group: EpisodeGroup) -> PrivateValues:
        """Labels the credit analyst must never see: gold-action values, answers."""
        ...

    def reference_solution(self, group: EpisodeGroup) -> str:
        """The task's ground truth as a reference solution, in the policy's own action
        format (GEAR's teacher context): training-only, never in a student context."""
        ...

    def teacher_prompt_ids(self, group: EpisodeGroup, context: str) -> list[int]:
        """``group.prompt_ids`` with ``context`` inserted as training-only teacher text."""
        ...

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        """The text of each token of ``ids``, e.g. ``[tokenizer.decode([i]) for i in ids]``."""
        ...


@dataclass
class Teacher:
    """What teacher-scored credit methods receive as ``teacher`` (None for GRPO).

    A method scores with ``TeacherScorer(model, <its config>.scoring, prompt_cache)``, so
    the scoring settings live in one place: the method's config.
    """

    model: torch.nn.Module
    """The policy (any transformers causal LM) the teacher side is scored with, without
    gradient; in training the sampler's copy, whose prompt cache it can read."""
    prompts: TaskPrompts
    """The agent-side adapter: task text, private labels, teacher prompt ids, token texts."""
    analyst: ChatBackend | None = None
    """The external LLM that writes SGCD's credit references (training only)."""
    prompt_cache: PromptCache | None = None
    """The sampler's keys/values of the rollouts' shared prompt (the ``hf`` generator), so
    that scoring does not encode it again; None: scoring encodes every prompt."""
