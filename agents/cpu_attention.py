"""Attention for one-token decode steps on CPU, registered with transformers.

At a decode step each row has a single query against thousands of cached keys. PyTorch's
CPU ``scaled_dot_product_attention`` runs that shape slowly in bf16 (measured here: 12 ms
against 2.6 ms for two matmuls and a softmax; batch 8, 2,600 keys, SmolLM2's 9 query and
3 key/value heads), and attention then takes two thirds of a decode step. This
implementation computes a one-token step on CPU with grouped matmuls and an fp32 softmax,
runs masked multi-token calls on CPU (prompts, continuations) through SDPA with grouped
key/value heads, and hands every other call (unmasked, CUDA) to transformers' SDPA as is.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
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
    **kwargs,
) -> tuple[torch.Tensor, None]:
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
