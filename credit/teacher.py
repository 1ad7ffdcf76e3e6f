"""Teacher scoring: the same policy scored on the same sampled tokens under two contexts.

The student context is the group's clean prompt; the teacher context is a prompt carrying
privileged training-time text (SGCD: the sibling credit reference; GEAR: ground truth;
SDPO: a successful sibling). Both passes run without gradient. At every response token the
two next-token distributions are reduced to a shared local support -- the teacher's top-K
tokens, the observed token, and a tail bucket holding the remaining mass -- so they can be
compared with :mod:`credit.divergence` (SGCD §4.3, App. B "Dense credit features").

Work that is shared is done once: the tokens the two prompts have in common, and each
prompt for all siblings of a group (its KV cache is copied to the siblings' batch). The
tokens the sampler already encoded for the rollouts (a :class:`PromptCache`: the group's
prompt, most of a τ³ episode) are not encoded a third time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from agents.cpu_attention import continuation_batches, logits_after_prefix
from agents.episode import Episode, EpisodeGroup, common_prefix
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
class SupportScores:
    """One episode's scores at its ``R`` response tokens, on CPU.

    ``support_ids[:, :K]`` are the teacher's top-K tokens and ``support_ids[:, K]`` the
    observed token; the log-prob slots follow them, plus the tail bucket last. The observed
    token's slot is ``-inf`` in both distributions when it is already in the top-K.
    """

    positions: torch.Tensor  # (R,) indices into episode.ids
    support_ids: torch.Tensor  # (R, K+1)
    student_logp: torch.Tensor  # (R, K+2)
    teacher_logp: torch.Tensor  # (R, K+2)
    teacher_entropy: torch.Tensor  # (R,) entropy of the teacher's support distribution


def support_distributions(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, observed: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reduce ``(R, V)`` logits to log-probs on teacher top-K ∪ observed ∪ tail.

    Returns ``(student_logp, teacher_logp)``, each ``(R, K+2)``, and ``support_ids``
    ``(R, K+1)``. The tail is a log-sum-exp over the tokens outside the support, so it is
    exact even when the support holds nearly all the mass (``1 - sum`` would cancel).
    """
    student = torch.log_softmax(student_logits.float(), dim=-1)  # (R, V)
    teacher = torch.log_softmax(teacher_logits.float(), dim=-1)  # (R, V)
    top = teacher.topk(min(k, teacher.shape[-1]), dim=-1).indices  # (R, K)
    support_ids = torch.cat([top, observed[:, None]], dim=-1)  # (R, K+1)
    in_top = (top == observed[:, None]).any(dim=-1)  # (R,)

    def on_support(logp: torch.Tensor) -> torch.Tensor:
        slots = logp.gather(-1, support_ids)  # (R, K+1)
        slots[:, -1] = slots[:, -1].masked_fill(in_top, float("-inf"))  # counted once
        outside = logp.scatter(-1, support_ids, float("-inf"))  # (R, V)
        tail = torch.logsumexp(outside, dim=-1, keepdim=True)  # (R, 1)
        return torch.cat([slots, tail], dim=-1)  # (R, K+2)

    return on_support(student), on_support(teacher), support_ids


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
    last_logits: torch.Tensor | None  # (V,) logits after the prompt: predict ids[0]
    length: int


class PromptCache(Protocol):
    """Keys/values a sampler holds for a prompt, computed with the scorer's own model and
    weights (agents.hf_generation.HFGenerator)."""

    model: torch.nn.Module

    def cached_prefix(self, ids: list[int]) -> tuple[int, Any]:
        """``(n, cache)``: a batch-of-one transformers cache of ``ids[:n]``; ``(0, None)``."""
        ...


class TeacherScorer:
    """Scores episodes under a student and a teacher prompt with one causal LM.

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
    def score(
        self,
        student_prompt_ids: Sequence[int],
        teacher_prompt_ids: Sequence[int],
        episodes: Sequence[Episode],
    ) -> list[SupportScores]:
        """Support distributions of each episode's response tokens under both prompts."""
        if not student_prompt_ids or not teacher_prompt_ids:
            raise ValueError("teacher scoring needs non-empty student and teacher prompts")
        with _eval_mode(self.model):
            # Each prompt runs at least its own last token, whose logits predict ids[0].
            shared = min(
                common_prefix([list(student_prompt_ids), list(teacher_prompt_ids)]),
                len(student_prompt_ids) - 1,
                len(teacher_prompt_ids) - 1,
            )
            base = self._shared(list(teacher_prompt_ids[:shared])) if shared else None
            student = self._prompt(student_prompt_ids[shared:], base)
            teacher = self._prompt(teacher_prompt_ids[shared:], base)
            scores: dict[int, SupportScores] = {}
            lengths = [len(e.ids) for e in episodes]
            budget = self.config.max_tokens_per_forward
            for indices in continuation_batches(self.model, True, lengths, budget):
                batch = [episodes[i] for i in indices]
                student_rows = self._continue(student, batch)
                teacher_rows = self._continue(teacher, batch)
                for i, s_rows, t_rows in zip(indices, student_rows, teacher_rows, strict=True):
                    scores[i] = self._reduce(episodes[i], s_rows, t_rows)
            return [scores[i] for i in range(len(episodes))]

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _shared(self, ids: list[int]) -> _Context:
        """Both prompts' common tokens, from the sampler's cache as far as it reaches."""
        reused, cache = self.prompt_cache.cached_prefix(ids) if self.prompt_cache else (0, None)
        base = _Context(cache, None, reused) if reused else None
        return base if reused == len(ids) else self._prompt(ids[reused:], base)

    def _prompt(self, ids: Sequence[int], base: _Context | None) -> _Context:
        cache = copy.deepcopy(base.cache) if base is not None else None
        tokens = torch.tensor([list(ids)], device=self._device())  # (1, P)
        out = self.model(input_ids=tokens, cache=cache, use_cache=True, logits_to_keep=1)
        offset = base.length if base is not None else 0
        return _Context(cache=out.cache, last_logits=out.logits[0, -1], length=offset + len(ids))

    def _continue(self, context: _Context, batch: list[Episode]) -> list[torch.Tensor]:
        """Per episode, the ``(R, V)`` logits that predicted its response tokens (only
        those go through the LM head, not tool observations or padding)."""
        prefix = [(layer.keys, layer.values) for layer in context.cache.layers]
        rows = [list(e.ids) for e in batch]
        wanted = [e.response_positions() for e in batch]
        return logits_after_prefix(self.model, prefix, context.last_logits, rows, wanted)

    def _reduce(
        self, episode: Episode, student: torch.Tensor, teacher: torch.Tensor
    ) -> SupportScores:
        positions = _response_positions(episode)  # (R,)
        observed = torch.tensor(episode.ids)[positions].to(student.device)  # (R,)
        parts = []
        chunk = self.config.positions_per_chunk
        for start in range(0, len(positions), chunk):
            part = slice(start, start + chunk)
            parts.append(
                support_distributions(
                    student[part], teacher[part], observed[part], self.config.top_k
                )
            )
        k_plus = min(self.config.top_k, student.shape[-1]) + 1
        if parts:
            s_logp, t_logp, ids = (torch.cat(p).cpu() for p in zip(*parts, strict=True))
        else:
            s_logp = t_logp = torch.empty(0, k_plus + 1)
            ids = torch.empty(0, k_plus, dtype=torch.long)
        return SupportScores(
            positions=positions,
            support_ids=ids,
            student_logp=s_logp,
            teacher_logp=t_logp,
            teacher_entropy=entropy(t_logp),
        )


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
    """The policy (any transformers causal LM); scored without gradient."""
    prompts: TaskPrompts
    """The agent-side adapter: task text, private labels, teacher prompt ids, token texts."""
    analyst: ChatBackend | None = None
    """The external LLM that writes SGCD's credit references (training only)."""
    prompt_cache: PromptCache | None = None
    """The sampler's keys/values of the rollouts' shared prompt (the ``hf`` generator), so
    that scoring does not encode it again; None: scoring encodes every prompt."""
