"""Rows continuing one shared prefix, read once (agents/cpu_attention.py), against each
row encoded whole, in fp32."""

import pytest
import torch
from transformers import DynamicCache

from agents.cpu_attention import _after_shared_prefix, continue_shared_prefix
from agents.model import ModelConfig, load_model


@pytest.mark.parametrize("name", ["tiny-random", "smollm2"])
def test_rows_after_a_shared_prefix_equal_whole_sequences(tiny, name):
    model = (
        tiny[0] if name == "tiny-random" else load_model(ModelConfig(name=name, dtype="float32"))[0]
    )
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prefix_ids = torch.randint(0, vocab, (1, 120), generator=g)
    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=prefix_ids, cache=cache, use_cache=True)
    prefix = [(layer.keys, layer.values) for layer in cache.layers]
    rows = [torch.randint(0, vocab, (n,), generator=g) for n in (9, 1, 23)]
    ids = torch.zeros(len(rows), 23, dtype=torch.long)
    mask = torch.zeros(len(rows), 23, dtype=torch.long)  # right padding
    for b, row in enumerate(rows):
        ids[b, : len(row)], mask[b, : len(row)] = row, 1
    with torch.no_grad():
        got = continue_shared_prefix(model, prefix, ids, mask, 0).logits  # (B, 23, V)
        for b, row in enumerate(rows):
            whole = model(input_ids=torch.cat([prefix_ids[0], row])[None]).logits[0, 120:]
            torch.testing.assert_close(got[b, : len(row)], whole, atol=2e-4, rtol=1e-5)


def test_shared_prefix_attention_and_its_gradient_equal_plain_attention():
    """Against softmax attention over the prefix and the row's own keys, in float64: the
    kernel's backward on each part, given the merged output and log-sum-exp, is the exact
    gradient, padding and grouped heads included. (Finite differences cannot judge it: the
    CPU kernel's exponential is an approximation, ~1e-8 off even in float64.)"""
    g = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, length, dim, prefix = 2, 4, 2, 5, 8, 7

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    inputs = [leaf(batch, heads, length, dim)]
    inputs += [leaf(batch, kv_heads, length, dim) for _ in range(2)]
    inputs += [leaf(1, kv_heads, prefix, dim) for _ in range(2)]
    query, key, value, prefix_keys, prefix_values = inputs
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    padded = causal.expand(batch, 1, -1, -1).clone()
    padded[1, :, :, 3:] = False  # the second row has 3 real tokens
    for mask in (None, padded):
        out = _after_shared_prefix(query, key, value, mask, None, prefix_keys, prefix_values)[0]
        seen = torch.cat(
            [
                torch.ones(batch, 1, length, prefix, dtype=torch.bool),
                causal.expand(batch, 1, -1, -1) if mask is None else mask,
            ],
            dim=-1,
        )
        keys = torch.cat([prefix_keys.expand(batch, -1, -1, -1), key], dim=2)
        values = torch.cat([prefix_values.expand(batch, -1, -1, -1), value], dim=2)
        scores = query @ keys.repeat_interleave(2, 1).transpose(-1, -2) * dim**-0.5
        probs = scores.masked_fill(~seen, float("-inf")).softmax(-1)
        expected = (probs @ values.repeat_interleave(2, 1)).transpose(1, 2)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
        weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
        got = torch.autograd.grad((out * weights).sum(), inputs)
        want = torch.autograd.grad((expected * weights).sum(), inputs)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["tiny-random", "smollm2"])
def test_gradient_through_a_shared_prefix_equals_whole_sequences(tiny, name):
    """Encoding the prefix once with gradient and continuing it in one padded batch gives
    the parameters the gradient of encoding each row whole."""
    model = (
        tiny[0] if name == "tiny-random" else load_model(ModelConfig(name=name, dtype="float32"))[0]
    )
    g = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    prefix_ids = torch.randint(0, vocab, (1, 60), generator=g)
    rows = [torch.randint(0, vocab, (n,), generator=g) for n in (9, 1, 23)]
    weights = [torch.randn(len(row), vocab, generator=g) for row in rows]

    def flat_grad() -> torch.Tensor:
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
        return grad

    model.zero_grad(set_to_none=True)
    cache = DynamicCache()
    model(input_ids=prefix_ids, cache=cache, use_cache=True)
    prefix = [(layer.keys, layer.values) for layer in cache.layers]
    ids = torch.zeros(len(rows), 23, dtype=torch.long)
    mask = torch.zeros(len(rows), 23, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)], mask[b, : len(row)] = row, 1
    logits = continue_shared_prefix(model, prefix, ids, mask, 0).logits
    sum(
        (logits[b, : len(row)] * w).sum()
        for b, (row, w) in enumerate(zip(rows, weights, strict=True))
    ).backward()
    shared = flat_grad()
    for row, w in zip(rows, weights, strict=True):
        whole = model(input_ids=torch.cat([prefix_ids[0], row])[None]).logits[0, 60:]
        (whole * w).sum().backward()
    whole = flat_grad()  # (and leaves the shared model without gradients)
    assert (shared - whole).norm() <= 1e-5 * whole.norm()
