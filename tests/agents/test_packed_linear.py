"""Packed bf16 linears give F.linear's results bit for bit and follow weight changes."""

import pytest
import torch

from agents import packed_linear
from agents.model import ModelConfig, load_model
from agents.packed_linear import pack_linear_weights, packing_supported

needs_packing = pytest.mark.skipif(
    not packing_supported(), reason="oneDNN has no bf16 linear on this CPU (AVX2-only)"
)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@needs_packing
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_a_packed_model_computes_what_the_plain_one_does(rows):
    plain, _ = load_model(ModelConfig(name="tiny-random", dtype="bfloat16"))
    packed, _ = load_model(ModelConfig(name="tiny-random", dtype="bfloat16"))
    assert pack_linear_weights(packed) == sum(
        isinstance(m, torch.nn.Linear) for m in packed.modules()
    )
    ids = torch.randint(0, plain.config.vocab_size, (rows, 7))
    assert torch.equal(_logits(packed, ids), _logits(plain, ids))


@needs_packing
def test_a_weight_change_is_followed():
    plain, _ = load_model(ModelConfig(name="tiny-random", dtype="bfloat16"))
    packed, _ = load_model(ModelConfig(name="tiny-random", dtype="bfloat16"))
    pack_linear_weights(packed)
    ids = torch.randint(0, plain.config.vocab_size, (2, 5))
    before = _logits(packed, ids)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.1 * torch.randn_like(p))
    packed.load_state_dict(plain.state_dict())  # as a weight sync does, in place
    after = _logits(packed, ids)
    assert not torch.equal(after, before)
    assert torch.equal(after, _logits(plain, ids))


@needs_packing
def test_fp32_linears_and_gradients_keep_f_linear():
    model, _ = load_model(ModelConfig(name="tiny-random", dtype="float32"))
    assert pack_linear_weights(model) == 0
    bf16, _ = load_model(ModelConfig(name="tiny-random", dtype="bfloat16"))
    pack_linear_weights(bf16)
    ids = torch.randint(0, bf16.config.vocab_size, (1, 4))
    bf16(input_ids=ids).logits.float().sum().backward()  # no packed path under autograd
    assert all(p.grad is not None for p in bf16.parameters() if p.requires_grad)


def test_a_cpu_without_a_bf16_linear_keeps_f_linear(monkeypatch):
    """An AVX2-only CPU: packing would raise there, so nothing is packed and the bf16
    model still runs (an explicit ``dtype: bfloat16`` sampler)."""
    monkeypatch.setattr(packed_linear, "packing_supported", lambda: False)
    model, _ = load_model(ModelConfig(name="tiny-random", dtype="bfloat16"))
    assert pack_linear_weights(model) == 0
    ids = torch.randint(0, model.config.vocab_size, (2, 5))
    assert torch.isfinite(_logits(model, ids).float()).all()
