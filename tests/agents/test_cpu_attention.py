"""Rows continuing one shared prefix, read once (agents/cpu_attention.py), against each
row encoded whole, in fp32."""

import contextlib

import pytest
import torch
from transformers import DynamicCache

from agents.cpu_attention import NAME, _after_shared_prefix, continue_shared_prefix
from agents.model import ModelConfig, load_model


def _model(tiny, name):
    if name == "tiny-random":
        return tiny[0]
    return load_model(ModelConfig(name=name, dtype="float32"))[0]


@contextlib.contextmanager
def _layout(model, layout):
    """``packed``: this module's CPU attention; ``padded``: transformers' SDPA, which
    continue_shared_prefix serves with right-padded rows and a repeated prefix."""
    assert model.config._attn_implementation == NAME
    if layout == "padded":
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        model.set_attn_implementation(NAME)


def _prefix(model, ids):
    cache = DynamicCache()
    model(input_ids=ids, cache=cache, use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers]


@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("name", ["tiny-random", "smollm2"])
def test_rows_after_a_shared_prefix_equal_whole_sequences(tiny, name, layout):
    model = _model(tiny, name)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prefix_ids = torch.randint(0, vocab, (1, 120), generator=g)
    rows = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (9, 1, 23)]
    keep = [list(range(len(rows[0]))), [0], [0, 5, 22]]
    with torch.no_grad(), _layout(model, layout):
        got = continue_shared_prefix(model, _prefix(model, prefix_ids), rows, keep)
    with torch.no_grad():
        for b, row in enumerate(rows):
            whole = model(input_ids=torch.cat([prefix_ids[0], torch.tensor(row)])[None]).logits
            torch.testing.assert_close(got[b], whole[0, 120:][keep[b]], atol=2e-4, rtol=1e-5)


def test_shared_prefix_attention_and_its_gradient_equal_plain_attention():
    """Against softmax attention over the prefix and the row's own keys, in float64: the
    kernel's backward on each part, given the merged output and log-sum-exp, is the exact
    gradient, packed rows and grouped heads included. (Finite differences cannot judge it:
    the CPU kernel's exponential is an approximation, ~1e-8 off even in float64.)"""
    g = torch.Generator().manual_seed(0)
    heads, kv_heads, dim, prefix = 4, 2, 8, 7
    lengths = [5, 3, 1]
    packed = sum(lengths)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    inputs = [leaf(1, heads, packed, dim)]
    inputs += [leaf(1, kv_heads, packed, dim) for _ in range(2)]
    inputs += [leaf(1, kv_heads, prefix, dim) for _ in range(2)]
    query, key, value, prefix_keys, prefix_values = inputs
    out = _after_shared_prefix(query, key, value, None, prefix_keys, prefix_values, lengths)[0]
    expected = []
    for q, k, v in zip(*(t.split(lengths, dim=2) for t in (query, key, value)), strict=True):
        n = q.shape[2]
        seen = torch.cat(
            [torch.ones(n, prefix, dtype=torch.bool), torch.ones(n, n, dtype=torch.bool).tril()],
            dim=-1,
        )
        keys = torch.cat([prefix_keys, k], dim=2).repeat_interleave(2, 1)
        values = torch.cat([prefix_values, v], dim=2).repeat_interleave(2, 1)
        probs = (q @ keys.transpose(-1, -2) * dim**-0.5).masked_fill(~seen, float("-inf"))
        expected.append((probs.softmax(-1) @ values).transpose(1, 2))
    expected = torch.cat(expected, dim=1)  # (1, N, H, D)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * weights).sum(), inputs)
    want = torch.autograd.grad((expected * weights).sum(), inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("name", ["tiny-random", "smollm2"])
def test_gradient_through_a_shared_prefix_equals_whole_sequences(tiny, name, layout):
    """Encoding the prefix once with gradient and continuing it in one batch gives the
    parameters the gradient of encoding each row whole."""
    model = _model(tiny, name)
    g = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    prefix_ids = torch.randint(0, vocab, (1, 60), generator=g)
    rows = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (9, 1, 23)]
    weights = [torch.randn(len(row), vocab, generator=g) for row in rows]

    def flat_grad() -> torch.Tensor:
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
        return grad

    model.zero_grad(set_to_none=True)
    with _layout(model, layout):
        logits = continue_shared_prefix(
            model, _prefix(model, prefix_ids), rows, [range(len(row)) for row in rows]
        )
    sum((out * w).sum() for out, w in zip(logits, weights, strict=True)).backward()
    shared = flat_grad()
    for row, w in zip(rows, weights, strict=True):
        whole = model(input_ids=torch.cat([prefix_ids[0], torch.tensor(row)])[None]).logits[0, 60:]
        (whole * w).sum().backward()
    whole = flat_grad()  # (and leaves the shared model without gradients)
    assert (shared - whole).norm() <= 1e-5 * whole.norm()
