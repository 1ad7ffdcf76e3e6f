"""Attention for one-token decode steps on CPU, registered with transformers.

At a decode step each row has a single query against thousands of cached keys. PyTorch's
CPU ``scaled_dot_product_attention`` runs that shape slowly in bf16 (measured here: 12 ms
against 2.6 ms for two matmuls and a softmax; batch 8, 2,600 keys, SmolLM2's 9 query and
3 key/value heads), and attention then takes two thirds of a decode step. This
implementation computes a one-token step on CPU with grouped matmuls and an fp32 softmax,
runs masked multi-token calls on CPU (prompts, continuations) through SDPA with grouped
key/value heads, and hands every other call (unmasked, CUDA) to transformers' SDPA as is.

Rows that all continue one prefix (a group's prompt under its siblings' continuations:
the learner's pass, with gradient, and teacher scoring) run packed one after another, with
no padding, and get the prefix's keys/values once, unrepeated
(:func:`continue_shared_prefix`): attention to the prefix is one unmasked call over every
row's queries, attention among each row's own tokens one causal call per row, merged by
their log-sum-exps; backward runs the kernel's backward on both parts. Repeating a
2.4K-token prompt's keys/values for 8 rows and concatenating them with the continuations
took half of SGCD's teacher scoring here; padding siblings to the longest and masking
(the kernel then scores every block, padded or above the diagonal) took 2.3-2.7x the time
of per-row causal calls on siblings of 72-770 tokens.

The sampler's prefill (agents/hf_generation.py) packs its rows the same way, each row
after its own cached keys/values (:class:`RowPrefixes`): laid out right-padded in one
batch, with every row's cache copied into a padded buffer and attended to under a mask,
a turn's tool results (19 rows of 200-329 tokens after caches of ~500, fp32, one thread)
took 32.5 s against 24.4 s packed (profiled; 1.2-1.5x over repeats).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from agents.episode import forward_batches

NAME = "toolgym_cpu_decode"


@dataclass
class SharedPrefix:
    """What :func:`continue_shared_prefix` hands this module's attention (a model kwarg)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    """The prefix's keys/values per layer, ``(1, Hkv, P, D)``."""
    row_lengths: list[int]
    """The rows' lengths: their tokens lie one after another in the (one-row) query."""


@dataclass
class RowPrefixes:
    """What the sampler's packed prefill hands this module's attention (a model kwarg): rows
    that each continue their own prefix, with no gradient."""

    kv: list[list[tuple[torch.Tensor, torch.Tensor]]]
    """Per row, its prefix's keys/values per layer, ``(1, Hkv, P_i, D)``; ``[]`` for none."""
    row_lengths: list[int]
    """The rows' lengths: their tokens lie one after another in the (one-row) query."""


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    shared_prefix: SharedPrefix | None = None,
    row_prefixes: RowPrefixes | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    if shared_prefix is not None:  # only from continue_shared_prefix, on CPU
        keys, values = shared_prefix.kv[module.layer_idx]
        return _after_shared_prefix(
            query, key, value, scaling, keys, values, shared_prefix.row_lengths
        )
    if row_prefixes is not None:  # only from the sampler's packed prefill, on CPU
        return _after_row_prefixes(query, key, value, scaling, module.layer_idx, row_prefixes)
    if query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if query.shape[2] != 1:
        return _masked_gqa_attention(module, query, key, value, attention_mask, dropout, scaling)
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)  # (B, Hkv, G, D)
    scale = scaling if scaling is not None else dim**-0.5
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale  # (B, Hkv, G, L)
    if attention_mask is not None:  # (B, 1, 1, L) from sdpa_mask: True where attended
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # (B, Hkv, G, D)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _masked_gqa_attention(module, query, key, value, attention_mask, dropout, scaling):
    """Several queries on CPU. With a mask, transformers repeats every key/value head for
    its query heads (a copy, and a sum in backward: ~10% of a learner step at a 2.4K-token
    prompt, measured); CPU SDPA takes the grouped heads as they are (``enable_gqa``)."""
    if attention_mask is None or getattr(module, "num_key_value_groups", 1) == 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling
        )
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=True,
    )  # (B, H, S, D)
    return out.transpose(1, 2).contiguous(), None


_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _after_shared_prefix(query, key, value, scaling, prefix_keys, prefix_values, row_lengths):
    """``query``/``key``/``value``: the rows' own tokens ``(1, H|Hkv, N, D)``, packed one
    after another (``row_lengths``), each row continuing the prefix ``(1, Hkv, P, D)``."""
    if torch.is_autocast_enabled(query.device.type):  # as autocast casts SDPA's inputs
        dtype = torch.get_autocast_dtype(query.device.type)
        query, key, value, prefix_keys, prefix_values = (
            t.to(dtype) for t in (query, key, value, prefix_keys, prefix_values)
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = _SharedPrefixAttention.apply(
        query, key, value, prefix_keys, prefix_values, scale, row_lengths
    )
    return out.transpose(1, 2).contiguous(), None


def _after_row_prefixes(query, key, value, scaling, layer, prefixes):
    """``query``/``key``/``value``: packed rows ``(1, H|Hkv, N, D)``, each continuing its
    own prefix of ``prefixes``; one row at a time (rows of a sampler's batch differ in
    prefix). A row without a prefix attends causally to its own tokens only (the kernel
    refuses zero keys)."""
    out = []
    parts = (t.split(prefixes.row_lengths, dim=2) for t in (query, key, value))
    for q, k, v, kv in zip(*parts, prefixes.kv, strict=True):
        if kv:
            keys, values = kv[layer]
            out.append(_after_shared_prefix(q, k, v, scaling, keys, values, [q.shape[2]])[0])
            continue
        groups = q.shape[1] // k.shape[1]
        own, _ = _flash(
            q.contiguous(),
            k.repeat_interleave(groups, 1),
            v.repeat_interleave(groups, 1),
            0.0,
            True,
            scale=scaling if scaling is not None else q.shape[-1] ** -0.5,
        )
        out.append(own.transpose(1, 2))
    return torch.cat(out, dim=1).contiguous(), None


def _stacked(t: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """``(1, H, N, ...)`` -> ``(1, Hkv, G*N, ...)``: the queries of one key/value head, one
    query head after another (the prefix is the same for all of them)."""
    heads, length = t.shape[1:3]
    return t.reshape(1, kv_heads, heads // kv_heads * length, *t.shape[3:])


def _unstacked(t: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of :func:`_stacked`."""
    return t.reshape(1, heads, t.shape[2] * t.shape[1] // heads, *t.shape[3:])


def _rows(t: torch.Tensor, row_lengths: list[int]) -> tuple[torch.Tensor, ...]:
    """Each row's part of packed ``(1, H, N, ...)``, contiguous as the kernel wants it."""
    return tuple(part.contiguous() for part in t.split(row_lengths, dim=2))


class _SharedPrefixAttention(torch.autograd.Function):
    """Attention of the packed rows' queries to the prefix (one unmasked flash call over
    all of them) and to their own tokens (one causal call per row), merged by log-sum-exp.
    Backward runs the kernel's backward on each part with the merged output and
    log-sum-exp, which gives each part's share of the exact gradient (as ring attention
    does): the prefix's keys/values get the sum over all rows, never repeated per row."""

    @staticmethod
    def forward(ctx, query, key, value, prefix_keys, prefix_values, scale, row_lengths):
        heads, kv_heads = query.shape[1], key.shape[1]
        out_p, lse_p = _flash(
            _stacked(query, kv_heads), prefix_keys, prefix_values, 0.0, False, scale=scale
        )
        key_r = key.repeat_interleave(heads // kv_heads, 1)
        value_r = value.repeat_interleave(heads // kv_heads, 1)
        own = [
            _flash(q, k, v, 0.0, True, scale=scale)
            for q, k, v in zip(
                *(_rows(t, row_lengths) for t in (query, key_r, value_r)), strict=True
            )
        ]
        out_s = torch.cat([o for o, _ in own], dim=2)  # (1, H, N, D)
        lse_s = torch.cat([lse for _, lse in own], dim=2)  # (1, H, N)
        out_p = _unstacked(out_p, heads)
        lse_p = _unstacked(lse_p[..., None], heads)[..., 0]
        lse = torch.logaddexp(lse_p, lse_s)  # (1, H, N)
        out = (
            out_p.float() * (lse_p - lse).exp()[..., None]
            + out_s.float() * (lse_s - lse).exp()[..., None]
        ).to(query.dtype)
        ctx.save_for_backward(query, key_r, value_r, prefix_keys, prefix_values, out, lse)
        ctx.scale, ctx.kv_heads, ctx.row_lengths = scale, kv_heads, row_lengths
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key_r, value_r, prefix_keys, prefix_values, out, lse = ctx.saved_tensors
        heads, length, dim = query.shape[1:]
        kv_heads, row_lengths = ctx.kv_heads, ctx.row_lengths
        grad_out = grad_out.contiguous()
        dq_p, dk_p, dv_p = _flash_backward(
            _stacked(grad_out, kv_heads),
            _stacked(query, kv_heads),
            prefix_keys,
            prefix_values,
            _stacked(out, kv_heads),
            _stacked(lse[..., None], kv_heads)[..., 0].contiguous(),
            0.0,
            False,
            scale=ctx.scale,
        )
        parts = (grad_out, query, key_r, value_r, out, lse)
        own = [
            _flash_backward(g, q, k, v, o, lse_r, 0.0, True, scale=ctx.scale)
            for g, q, k, v, o, lse_r in zip(*(_rows(t, row_lengths) for t in parts), strict=True)
        ]
        dq_s, dk_r, dv_r = (torch.cat(grads, dim=2) for grads in zip(*own, strict=True))
        dq = _unstacked(dq_p, heads) + dq_s

        def grouped(t: torch.Tensor) -> torch.Tensor:  # sum each key/value head's queries
            return t.reshape(1, kv_heads, heads // kv_heads, length, dim).sum(2)

        return dq, grouped(dk_r), grouped(dv_r), dk_p, dv_p, None, None


def packs_rows(model: torch.nn.Module) -> bool:
    """Whether rows after a prefix can run packed through ``model`` (on CPU, with this
    module's attention) rather than right-padded."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    return on_cpu and model.config._attn_implementation == NAME


def continuation_batches(
    model: torch.nn.Module, has_prefix: bool, lengths: list[int], max_tokens: int
) -> list[list[int]]:
    """Row indices in the batches to hand :func:`continue_shared_prefix`, each within
    ``max_tokens`` tokens: filled by real tokens where it packs the rows, by similar
    lengths where it pads them (:func:`agents.episode.forward_batches`)."""
    return forward_batches(lengths, max_tokens, packed=has_prefix and packs_rows(model))


def continue_shared_prefix(
    model: torch.nn.Module,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    rows: Sequence[Sequence[int]],
    keep: Sequence[Sequence[int]],
) -> list[torch.Tensor]:
    """Per row of ids that continues the prefix (its per-layer keys/values ``(1, Hkv, P,
    D)``; ``[]`` for none), ``model``'s ``(len(keep[b]), V)`` logits at the row's sorted
    positions ``keep[b]``; only those go through the LM head. Gradients reach the prefix's
    keys/values where they require them. On CPU with this module's attention the rows run
    packed and the prefix is read once for all of them; otherwise (CUDA, another
    attention, no prefix) they run right-padded, the prefix repeated per row into a cache
    as transformers does (real tokens never attend to the pad after them)."""
    device = next(model.parameters()).device
    length = prefix[0][0].shape[-2] if prefix else 0
    counts = [len(k) for k in keep]
    if prefix and packs_rows(model):  # on CPU
        lengths = [len(row) for row in rows]
        tokens = torch.tensor([[t for row in rows for t in row]])  # (1, N)
        positions = torch.cat([torch.arange(length, length + n) for n in lengths])[None]
        starts = accumulate(lengths[:-1], initial=0)
        wanted = torch.zeros_like(tokens, dtype=torch.bool)  # (1, N)
        wanted[0, [start + i for start, k in zip(starts, keep, strict=True) for i in k]] = True
        out = model(
            input_ids=tokens,
            position_ids=positions,
            # all ones: no padding, so transformers builds no mask (causal skip)
            attention_mask=torch.ones_like(tokens),
            use_cache=False,
            logits_to_keep=wanted,
            shared_prefix=SharedPrefix(prefix, lengths),
        )
        return list(out.logits.split(counts))  # (K, V): the wanted positions, row by row
    batch, longest = len(rows), max(len(row) for row in rows)
    tokens = torch.zeros(batch, longest, dtype=torch.long, device=device)  # (B, L)
    mask = torch.zeros(batch, longest, dtype=torch.long, device=device)  # (B, L)
    wanted = torch.zeros(batch, longest, dtype=torch.bool, device=device)  # (B, L)
    for b, (row, k) in enumerate(zip(rows, keep, strict=True)):
        tokens[b, : len(row)] = torch.tensor(list(row), device=device)
        mask[b, : len(row)] = 1
        wanted[b, list(k)] = True
    context: dict[str, Any] = {"attention_mask": mask}
    if prefix:
        repeated = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix]
        context = {
            "attention_mask": torch.cat([mask.new_ones(batch, length), mask], dim=1),
            "cache": DynamicCache(ddp_cache_data=repeated),
            "use_cache": True,
        }
    positions = torch.arange(length, length + longest, device=device).expand(batch, -1)
    out = model(input_ids=tokens, position_ids=positions, logits_to_keep=wanted, **context)
    return list(out.logits.split(counts))


def logits_after_prefix(
    model: torch.nn.Module,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    last_logits: torch.Tensor | None,
    rows: list[list[int]],
    wanted: list[list[int]],
) -> list[torch.Tensor]:
    """Per row of ids continuing ``prefix`` (per-layer keys/values, ``[]`` for none), the
    ``(len(wanted), V)`` logits predicting ``row[i]`` for each ``i`` of its sorted
    ``wanted``: ``row[0]`` is predicted by the prefix's ``last_logits`` ``(V,)``."""
    keep = [[i - 1 for i in want if i > 0] for want in wanted]  # the logit predicting row[i]
    kept = continue_shared_prefix(model, prefix, rows, keep)
    return [
        torch.cat([last_logits[None], body]) if want and want[0] == 0 else body
        for body, want in zip(kept, wanted, strict=True)
    ]


def one_token_safe_mask(*args, **kwargs) -> torch.Tensor | None:
    """transformers' SDPA mask, kept for one-token queries. For a query at position 0
    whose padding mask is ones then zeros (a preallocated cache, agents/hf_generation.py)
    transformers drops the mask and relies on SDPA's upper-left ``is_causal``, which it
    then turns off for a one-token query: the token would attend to unwritten columns."""
    if kwargs.get("q_length") == 1:
        kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(NAME, decode_attention)
AttentionMaskInterface.register(NAME, one_token_safe_mask)
