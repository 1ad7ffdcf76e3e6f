"""Attention for one-token decode steps on CPU, registered with transformers.

At a decode step each row has a single query against thousands of cached keys. PyTorch's
CPU ``scaled_dot_product_attention`` runs that shape slowly in bf16 (measured here: 12 ms
against 2.6 ms for two matmuls and a softmax; batch 8, 2,600 keys, SmolLM2's 9 query and
3 key/value heads), and attention then takes two thirds of a decode step. This
implementation computes a one-token step on CPU with grouped matmuls and an fp32 softmax,
runs masked multi-token calls on CPU (prompts, continuations) through SDPA with grouped
key/value heads, and hands every other call (unmasked, CUDA) to transformers' SDPA as is.

Rows that all continue one prefix (a group's prompt, scored under several siblings'
continuations without gradient) get the prefix's keys/values once, unrepeated
(:func:`continue_shared_prefix`): attention to the prefix is one unmasked call over every
row's queries, attention among each row's own tokens a masked one, merged by their
log-sum-exps. Repeating a 2.4K-token prompt's keys/values for 8 rows and concatenating
them with the continuations took half of SGCD's teacher scoring here.
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


def _after_shared_prefix(query, key, value, attention_mask, scaling, prefix_keys, prefix_values):
    """``query``/``key``/``value``: the rows' own tokens ``(B, H|Hkv, S, D)``, each row
    continuing the prefix ``(1, Hkv, P, D)``; ``attention_mask``: causal and padding
    among the rows' tokens, or None for plain causal."""
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    # The prefix: every query of every row sees all of it, so the rows' queries of one
    # key/value head are stacked into one unmasked call, (1, Hkv, B*G*S, D).
    stacked = query.reshape(batch, kv_heads, groups * length, dim).transpose(0, 1)
    out_p, lse_p = flash(
        stacked.reshape(1, kv_heads, batch * groups * length, dim),
        prefix_keys,
        prefix_values,
        0.0,
        False,
        scale=scale,
    )

    def per_row(t: torch.Tensor) -> torch.Tensor:  # (1, Hkv, B*G*S, ...) -> (B, H, S, ...)
        t = t.reshape(kv_heads, batch, groups * length, *t.shape[3:]).transpose(0, 1)
        return t.reshape(batch, heads, length, *t.shape[3:])

    mask = None
    if attention_mask is not None:  # the kernel takes an additive mask in the query's dtype
        mask = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device)
        mask.masked_fill_(~attention_mask, float("-inf"))
    out_s, lse_s = flash(
        query,
        key.repeat_interleave(groups, dim=1),
        value.repeat_interleave(groups, dim=1),
        0.0,
        attention_mask is None,
        attn_mask=mask,
        scale=scale,
    )  # (B, H, S, D), (B, H, S)
    out_p, lse_p = per_row(out_p), per_row(lse_p[..., None])[..., 0]
    lse = torch.logaddexp(lse_p, lse_s)
    out = (
        out_p.float() * (lse_p - lse).exp()[..., None]
        + out_s.float() * (lse_s - lse).exp()[..., None]
    )
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


@torch.no_grad()  # the prefix's log-sum-exp carries no gradient through the kernel
def continue_shared_prefix(
    model: torch.nn.Module,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: torch.Tensor | int,
) -> Any:
    """``model``'s output for rows ``input_ids`` ``(B, S)`` that each continue the same
    prefix, given as its per-layer keys/values ``(1, Hkv, P, D)``; ``attention_mask``
    ``(B, S)`` marks the rows' real tokens (right padding). Without gradient. On CPU with
    this module's attention the prefix is read once for all rows; otherwise (CUDA, another
    attention) it is repeated per row into a cache, as transformers does."""
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
