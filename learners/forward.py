"""Logits of recorded tokens under a model, with a shared prefix encoded once.

Siblings share their prompt (~70% of a τ³-airline episode), and SFT batches share the
system prompt. :func:`backward_shared_prefix` encodes the prefix the sequences share once
with gradient, runs their continuations against its keys/values in micro-batches (by a
token budget; packed on CPU, :mod:`agents.cpu_attention`), backpropagates each
micro-batch's loss into detached copies of the prefix's keys/values, and finally sends the
accumulated gradient through the prefix once: the same loss and gradient as encoding each
sequence whole (Prefix Grouper, arXiv 2506.05433), for one prefix pass instead of one per
sequence. :func:`shared_prefix_logits` is the same computation without gradient
(reference and teacher passes). Only the positions a loss reads (the response tokens) go
through the LM head: tool observations and user turns are most of a multi-turn episode's
tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from agents.cpu_attention import continuation_batches, logits_after_prefix
from agents.episode import Episode, common_prefix

# (context ids, ids, the positions in ids whose predicting logits are wanted: sorted)
Item = tuple[Sequence[int], Sequence[int], Sequence[int]]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast on the model's own device (CPU or CUDA); off when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@dataclass
class _Prefix:
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (1, H, S, D), as computed
    last_logits: torch.Tensor | None  # (1, V): predicts the token after the prefix


def _encode_prefix(model: torch.nn.Module, ids: list[int], autocast: torch.dtype | None) -> _Prefix:
    if not ids:
        return _Prefix([], None)
    device = next(model.parameters()).device
    cache = DynamicCache()
    with _autocast(device, autocast):
        out = model(
            input_ids=torch.tensor([ids], device=device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    return _Prefix(kv, out.logits[:, -1])


def _continuation_logits(
    model: torch.nn.Module,
    kv: list[tuple[torch.Tensor, torch.Tensor]],
    last_logits: torch.Tensor | None,
    rows: list[list[int]],
    first: list[int],
    items: list[Item],
    batch: list[int],
    autocast: torch.dtype | None,
) -> list[torch.Tensor]:
    """For the items in ``batch``, the ``(len(wanted), V)`` fp32 logits predicting their
    wanted ids, from their rows after the prefix (``kv``; its ``last_logits`` ``(1, V)``)."""
    wanted = [[first[i] + t for t in items[i][2]] for i in batch]
    last = last_logits[0] if last_logits is not None else None
    with _autocast(next(model.parameters()).device, autocast):
        logits = logits_after_prefix(model, kv, last, [rows[i] for i in batch], wanted)
    return [row.float() for row in logits]


def _split(items: list[Item]) -> tuple[list[int], list[list[int]], list[int]]:
    """The shared prefix, each item's tokens after it, and where its ids start there
    (the prefix ends before every id: its last logits predict the first)."""
    fulls = [list(context) + list(ids) for context, ids, _ in items]
    if any(not context for context, _, _ in items) or any(not ids for _, ids, _ in items):
        raise ValueError("every sequence needs a non-empty context and non-empty ids")
    shared = min(common_prefix(fulls), min(len(context) for context, _, _ in items))
    rows = [full[shared:] for full in fulls]
    first = [len(context) - shared for context, _, _ in items]
    return fulls[0][:shared], rows, first


def backward_shared_prefix(
    model: torch.nn.Module,
    items: list[Item],
    loss_of: Callable[[int, torch.Tensor], torch.Tensor],
    autocast: torch.dtype | None,
    max_tokens: int,
) -> None:
    """For each item ``i = (context, ids, wanted)``: ``loss_of(i, logits)`` with ``logits``
    the ``(len(wanted), V)`` fp32 logits predicting ``ids[wanted]`` (with gradient);
    backpropagates the sum of the losses. Micro-batches hold at most ``max_tokens``
    continuation tokens, padding included where rows are padded."""
    prefix_ids, rows, first = _split(items)
    prefix = _encode_prefix(model, prefix_ids, autocast)
    # Detached leaves: each micro-batch's backward stops here and accumulates into them.
    kv = [(k.detach().requires_grad_(), v.detach().requires_grad_()) for k, v in prefix.kv]
    last = prefix.last_logits.detach().requires_grad_() if prefix_ids else None
    for batch in continuation_batches(model, bool(prefix_ids), [len(r) for r in rows], max_tokens):
        logits = _continuation_logits(model, kv, last, rows, first, items, batch, autocast)
        loss = sum(loss_of(i, out) for i, out in zip(batch, logits, strict=True))
        if loss.requires_grad:
            loss.backward()
    if not prefix_ids:
        return
    outputs, grads = [], []
    for (k, v), (k_leaf, v_leaf) in zip(prefix.kv, kv, strict=True):
        outputs += [k, v]
        grads += [k_leaf.grad, v_leaf.grad]
    outputs.append(prefix.last_logits)
    grads.append(last.grad)
    pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])


@torch.no_grad()
def shared_prefix_logits(
    model: torch.nn.Module,
    items: list[Item],
    autocast: torch.dtype | None,
    max_tokens: int,
) -> list[torch.Tensor]:
    """Per item ``(context, ids, wanted)``, the ``(len(wanted), V)`` fp32 logits predicting
    ``ids[wanted]``, without gradient; the shared prefix is encoded once."""
    prefix_ids, rows, first = _split(items)
    prefix = _encode_prefix(model, prefix_ids, autocast)
    out: list[torch.Tensor] = [torch.empty(0)] * len(items)
    for batch in continuation_batches(model, bool(prefix_ids), [len(r) for r in rows], max_tokens):
        logits = _continuation_logits(
            model, prefix.kv, prefix.last_logits, rows, first, items, batch, autocast
        )
        for i, row_logits in zip(batch, logits, strict=True):
            out[i] = row_logits
    return out


def token_logprobs(logits: torch.Tensor, ids: Sequence[int], temperature: float = 1.0):
    """``(N,)`` log p(ids[n]) from the ``(N, V)`` logits predicting them.

    ``temperature`` must be the sampling temperature (1 for greedy) so that ratios with
    the behaviour log-probs compare the same distribution.
    """
    if temperature != 1.0:
        logits = logits / temperature
    targets = torch.tensor(list(ids), device=logits.device)  # (N,)
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def episode_logprobs(logits: torch.Tensor, episode: Episode, temperature: float = 1.0):
    """``(T,)`` log-probs of ``episode.ids`` from the ``(R, V)`` logits predicting its
    response tokens (:meth:`Episode.response_positions`): those, 0 elsewhere."""
    positions = episode.response_positions()
    picked = token_logprobs(logits, [episode.ids[t] for t in positions], temperature)  # (R,)
    index = torch.tensor(positions, dtype=torch.long, device=picked.device)
    return torch.zeros(len(episode.ids), dtype=picked.dtype, device=picked.device).scatter(
        0, index, picked
    )
