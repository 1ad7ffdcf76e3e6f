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
from learners.forward import token_logprobs


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
    autocast: str = "auto"
    """Forward dtype over the fp32 weights: ``auto`` (the faster of bf16/fp32 here,
    :mod:`agents.precision`), ``bfloat16``, ``float16`` or ``float32`` (no autocast)."""
    seed: int = 0
    """Shuffling seed."""


def nll(
    model: torch.nn.Module,
    prompt_ids: list[int],
    episode: Episode,
    config: SFTConfig,
    autocast: torch.dtype | None = None,
):
    """Mean negative log-likelihood over the episode's response tokens, and their count."""
    ids, mask = episode.ids, episode.response_mask
    if len(ids) > config.max_tokens:
        ids, mask = ids[-config.max_tokens :], mask[-config.max_tokens :]
    logprobs = token_logprobs(model, prompt_ids, ids, autocast_dtype=autocast)  # (T,)
    weights = torch.tensor(mask, dtype=logprobs.dtype)  # (T,)
    return -(logprobs * weights).sum() / weights.sum().clamp(min=1), int(weights.sum())


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
        losses, tokens = [], 0
        for prompt_ids, episode in batch:
            loss, n = nll(model, prompt_ids, episode, config, autocast)
            (loss / len(batch)).backward()
            losses.append(loss.item())
            tokens += n
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
