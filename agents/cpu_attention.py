"""Attention for one-token decode steps on CPU, registered with transformers.

At a decode step each row has a single query against thousands of cached keys. PyTorch's
CPU ``scaled_dot_product_attention`` runs that shape slowly in bf16 (measured here: 12 ms
against 2.6 ms for two matmuls and a softmax; batch 8, 2,600 keys, SmolLM2's 9 query and
3 key/value heads), and attention then takes two thirds of a decode step. This
implementation computes a one-token step on CPU with grouped matmuls and an fp32 softmax,
runs masked multi-token calls on CPU (prompts, continuations) through SDPA with grouped
key/value heads, and hands every other call (unmasked, CUDA) to transformers' SDPA as is.

Rows that all continue one prefix (a group's prompt under its siblings' continuations:
the learner's pass, with gradient, and teacher scoring) get the prefix's keys/values once,
unrepeated (:func:`continue_shared_prefix`): attention to the prefix is one unmasked call
over every row's queries, attention among each row's own tokens a masked one, merged by
their log-sum-exps; backward runs the kernel's backward on both parts. Repeating a
2.4K-token prompt's keys/values for 8 rows and concatenating them with the continuations
took half of SGCD's teacher scoring here.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "toolgym_cpu_decode"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    shared_prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    if shared_prefix is not None:  # only from continue_shared_prefix, on CPU
        keys, values = shared_prefix[module.layer_idx]
        return _after_shared_prefix(query, key, value, attention_mask, scaling, keys, values)
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


def _after_shared_prefix(query, key, value, attention_mask, scaling, prefix_keys, prefix_values):
    """``query``/``key``/``value``: the rows' own tokens ``(B, H|Hkv, S, D)``, each row
    continuing the prefix ``(1, Hkv, P, D)``; ``attention_mask``: causal and padding
    among the rows' tokens, or None for plain causal."""
    if torch.is_autocast_enabled(query.device.type):  # as autocast casts SDPA's inputs
        dtype = torch.get_autocast_dtype(query.device.type)
        query, key, value, prefix_keys, prefix_values = (
            t.to(dtype) for t in (query, key, value, prefix_keys, prefix_values)
        )
    mask = None
    if attention_mask is not None:  # the kernel takes an additive mask in the query's dtype
        mask = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device)
        mask.masked_fill_(~attention_mask, float("-inf"))
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = _SharedPrefixAttention.apply(query, key, value, prefix_keys, prefix_values, mask, scale)
    return out.transpose(1, 2).contiguous(), None


def _stacked(t: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """``(B, H, S, ...)`` -> ``(1, Hkv, B*G*S, ...)``: the queries of one key/value head,
    every row's, one after another (the prefix is the same for all of them)."""
    batch, heads, length = t.shape[:3]
    t = t.reshape(batch, kv_heads, heads // kv_heads * length, *t.shape[3:]).transpose(0, 1)
    return t.reshape(1, kv_heads, batch * heads // kv_heads * length, *t.shape[3:])


def _per_row(t: torch.Tensor, batch: int, heads: int) -> torch.Tensor:
    """The inverse of :func:`_stacked`."""
    kv_heads, length = t.shape[1], t.shape[2] // batch
    t = t.reshape(kv_heads, batch, length, *t.shape[3:]).transpose(0, 1)
    return t.reshape(batch, heads, length * kv_heads // heads, *t.shape[3:])


class _SharedPrefixAttention(torch.autograd.Function):
    """Attention of the rows' queries to the prefix (one unmasked flash call over all rows'
    queries) and to their own tokens (a masked one), merged by log-sum-exp. Backward runs
    the kernel's backward on each part with the merged output and log-sum-exp, which
    gives each part's share of the exact gradient (as ring attention does): the prefix's
    keys/values get the sum over all rows, without ever being repeated per row."""

    @staticmethod
    def forward(ctx, query, key, value, prefix_keys, prefix_values, mask, scale):
        batch, heads = query.shape[:2]
        kv_heads = key.shape[1]
        groups = heads // kv_heads
        out_p, lse_p = _flash(
            _stacked(query, kv_heads), prefix_keys, prefix_values, 0.0, False, scale=scale
        )
        key_r, value_r = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
        out_s, lse_s = _flash(query, key_r, value_r, 0.0, mask is None, attn_mask=mask, scale=scale)
        out_p = _per_row(out_p, batch, heads)
        lse_p = _per_row(lse_p[..., None], batch, heads)[..., 0]
        lse = torch.logaddexp(lse_p, lse_s)  # (B, H, S)
        out = (
            out_p.float() * (lse_p - lse).exp()[..., None]
            + out_s.float() * (lse_s - lse).exp()[..., None]
        ).to(query.dtype)
        ctx.save_for_backward(query, key_r, value_r, prefix_keys, prefix_values, mask, out, lse)
        ctx.scale, ctx.kv_heads = scale, kv_heads
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key_r, value_r, prefix_keys, prefix_values, mask, out, lse = ctx.saved_tensors
        batch, heads, length, dim = query.shape
        kv_heads = ctx.kv_heads
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
        dq_s, dk_r, dv_r = _flash_backward(
            grad_out,
            query,
            key_r,
            value_r,
            out,
            lse,
            0.0,
            mask is None,
            attn_mask=mask,
            scale=ctx.scale,
        )
        dq = _per_row(dq_p, batch, heads) + dq_s

        def grouped(t: torch.Tensor) -> torch.Tensor:  # sum each key/value head's queries
            return t.reshape(batch, kv_heads, heads // kv_heads, length, dim).sum(2)

        return dq, grouped(dk_r), grouped(dv_r), dk_p, dv_p, None, None


def continue_shared_prefix(
    model: torch.nn.Module,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: torch.Tensor | int,
) -> Any:
    """``model``'s output for rows ``input_ids`` ``(B, S)`` that each continue the same
    prefix, given as its per-layer keys/values ``(1, Hkv, P, D)``; ``attention_mask``
    ``(B, S)`` marks the rows' real tokens (right padding). Gradients reach the prefix's
    keys/values where they require them. On CPU with this module's attention the prefix is
    read once for all rows; otherwise (CUDA, another attention) it is repeated per row into
    a cache, as transformers does."""
    length = prefix[0][0].shape[-2]
    batch, width = input_ids.shape
    positions = torch.arange(length, length + width, device=input_ids.device).expand(batch, -1)
    if input_ids.device.type == "cpu" and model.config._attn_implementation == NAME:
        context = {"attention_mask": attention_mask, "use_cache": False, "shared_prefix": prefix}
    else:
        cache = DynamicCache(
            ddp_cache_data=[
                (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix
            ]
        )
        ones = attention_mask.new_ones(batch, length)
        context = {
            "attention_mask": torch.cat([ones, attention_mask], dim=1),
            "cache": cache,
            "use_cache": True,
        }
    return model(
        input_ids=input_ids, position_ids=positions, logits_to_keep=logits_to_keep, **context
    )


def logits_after_prefix(
    model: torch.nn.Module,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    last_logits: torch.Tensor | None,
    rows: list[list[int]],
    wanted: list[list[int]],
) -> list[torch.Tensor]:
    """Per row of ids continuing ``prefix`` (per-layer keys/values, ``[]`` for none), the
    ``(len(wanted), V)`` logits predicting ``row[i]`` for each ``i`` of its sorted
    ``wanted``: ``row[0]`` is predicted by the prefix's ``last_logits`` ``(V,)``. The rows
    run as one right-padded batch (real tokens never attend to the pad after them), and
    only the wanted positions go through the LM head."""
    device = next(model.parameters()).device
    longest = max(len(row) for row in rows)
    tokens = torch.zeros(len(rows), longest, dtype=torch.long, device=device)  # (B, L)
    mask = torch.zeros(len(rows), longest, dtype=torch.long, device=device)  # (B, L)
    keep = torch.zeros(len(rows), longest, dtype=torch.bool, device=device)  # (B, L)
    for b, (row, want) in enumerate(zip(rows, wanted, strict=True)):
        tokens[b, : len(row)] = torch.tensor(row, device=device)
        mask[b, : len(row)] = 1
        keep[b, [i - 1 for i in want if i > 0]] = True  # the logit predicting row[i]
    if prefix:
        out = continue_shared_prefix(model, prefix, tokens, mask, keep)
    else:
        out = model(input_ids=tokens, attention_mask=mask, logits_to_keep=keep)
    kept = out.logits.split(keep.sum(dim=1).tolist())  # B x (R', V), row by row
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
