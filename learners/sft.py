"""Supervised warm start: cross-entropy on the assistant tokens of successful episodes.

The loss covers exactly the tokens the RL learners train (``response_mask``), so an SFT
checkpoint and a policy-gradient update see the same sequence layout. Weights stay in fp32
under autocast (bf16 where this machine runs it faster): pure-bf16 weights and Adam states
drop updates below lr ~1e-4 to rounding (shared/FACTS.md).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from agents.episode import Episode, EpisodeGroup
from agents.precision import resolve_dtype
from learners.forward import backward_shared_prefix, shared_prefix_logits, token_logprobs

# where SFT's successful episodes come from: gold replay (offline) or a teacher chat backend
SFT_SOURCES = ("gold", "teacher")


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 60
    """Optimizer steps."""
    batch_episodes: int = 4
    """Episodes per optimizer step (gradient accumulation, one sequence at a time)."""
    lr: float = 1e-4
    """AdamW learning rate (constant). Paper: 1e-5 for a 4B model; a 135M model needs more."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    max_tokens: int = 4096
    """Longer episodes are cut to their last ``max_tokens`` tokens after the prompt."""
    max_tokens_per_forward: int = 16_384
    """A batch's episodes (after the prompt they share, encoded once) go in micro-batches of
    at most this many padded tokens, gradients accumulated (toolgym choice)."""
    autocast: str = "auto"
    """Forward dtype over the fp32 weights: ``auto`` (the faster of bf16/fp32 here,
    :mod:`agents.precision`), ``bfloat16``, ``float16`` or ``float32`` (no autocast)."""
    seed: int = 0
    """Shuffling seed."""


def _window(episode: Episode, config: SFTConfig) -> tuple[list[int], list[int]]:
    """The ids and response mask trained on: the last ``max_tokens`` after the prompt."""
    return episode.ids[-config.max_tokens :], episode.response_mask[-config.max_tokens :]


def _positions(mask: list[int]) -> list[int]:
    return [t for t, m in enumerate(mask) if m]


def _nll(logits: torch.Tensor, ids: list[int], mask: list[int]) -> torch.Tensor:
    """Mean negative log-likelihood of the masked ``ids`` from the ``(R, V)`` logits
    predicting them."""
    positions = _positions(mask)
    logprobs = token_logprobs(logits, [ids[t] for t in positions])  # (R,)
    return -logprobs.sum() / max(len(positions), 1)


def nll(model: torch.nn.Module, prompt_ids: list[int], episode: Episode, config: SFTConfig):
    """The SFT loss of one episode, without gradient (for evaluation)."""
    ids, mask = _window(episode, config)
    items = [(prompt_ids, ids, _positions(mask))]
    (logits,) = shared_prefix_logits(model, items, None, config.max_tokens)
    return _nll(logits, ids, mask)


def _backward_batch(
    model: torch.nn.Module,
    batch: list[tuple[list[int], Episode]],
    config: SFTConfig,
    autocast: torch.dtype | None,
) -> tuple[list[float], int]:
    """Backpropagate the batch's mean loss; per-episode losses and the tokens trained on.
    The batch's episodes share the system prompt: it is encoded once."""
    windows = [_window(episode, config) for _, episode in batch]
    losses = [0.0] * len(batch)

    def loss_of(i: int, logits: torch.Tensor) -> torch.Tensor:
        loss = _nll(logits, *windows[i])
        losses[i] = loss.item()
        return loss / len(batch)

    items = [
        (prompt_ids, ids, _positions(mask))
        for (prompt_ids, _), (ids, mask) in zip(batch, windows, strict=True)
    ]
    backward_shared_prefix(model, items, loss_of, autocast, config.max_tokens_per_forward)
    return losses, sum(sum(mask) for _, mask in windows)


def _batches(
    groups: list[EpisodeGroup], config: SFTConfig
) -> Iterator[list[tuple[list[int], Episode]]]:
    items = [(g.prompt_ids, e) for g in groups for e in g.episodes]
    rng = random.Random(config.seed)
    while True:
        rng.shuffle(items)
        for start in range(0, len(items) - config.batch_episodes + 1, config.batch_episodes):
            yield items[start : start + config.batch_episodes]


def train_sft(
    model: torch.nn.Module,
    groups: list[EpisodeGroup],
    config: SFTConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` (in place, fp32) on the episodes of ``groups``; returns per-step metrics."""
    n_episodes = sum(len(g.episodes) for g in groups)
    if n_episodes < config.batch_episodes:
        raise ValueError(f"{n_episodes} SFT episodes < batch_episodes={config.batch_episodes}")
    model.float().train()
    autocast = resolve_dtype(config.autocast, next(model.parameters()).device).autocast
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    history = []
    batches = _batches(groups, config)
    for step in range(1, config.steps + 1):
        start = time.perf_counter()
        batch = next(batches)
        optimizer.zero_grad(set_to_none=True)
        losses, tokens = _backward_batch(model, batch, config, autocast)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        metrics = {
            "step": step,
            "loss/sft": sum(losses) / len(losses),
            "train/grad_norm": float(grad_norm),
            "train/response_tokens": tokens,
            "time/step_s": time.perf_counter() - start,
        }
        history.append(metrics)
        if on_step:
            on_step(step, metrics)
    model.eval()
    return history
