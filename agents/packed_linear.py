"""bf16 linear layers of a CPU sampling model, their weights laid out once for oneDNN.

``F.linear`` in bf16 on CPU gives oneDNN the weight as stored, and for the few rows of a
decode step oneDNN lays it out anew at every call. Packed once, SmolLM2's linears ran
1.4-2x faster here at 1-20 rows (MLP 1536x576: 85-171 vs 43-122 us; LM head at 1-8 rows:
5.8-6.6 vs 2.9-3.4 ms, one thread) and the same from ~512 rows on; the results are
bitwise those of ``F.linear`` (tests/agents/test_packed_linear.py).

A packed copy follows its weight: an in-place change of the weight (a weight sync,
``load_state_dict``) bumps the tensor's version, and the next call packs it again. Calls
that could need a gradient through the weight take ``F.linear``.
"""

from __future__ import annotations

import types

import torch


def _packable(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype == torch.bfloat16


def packing_supported() -> bool:
    """oneDNN has a bf16 linear on this CPU: it needs avx512bw/vl/dq or avx_ne_convert (on
    an AVX2-only CPU the reorder raises; ``auto`` picks fp32 there, an explicit bfloat16
    sampler runs ``F.linear``)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def pack_linear_weights(model: torch.nn.Module) -> int:
    """Give every bf16 CPU ``nn.Linear`` of ``model`` a packed-weight forward; returns how
    many. A no-op where oneDNN has no bf16 path on this CPU (:func:`packing_supported`)."""
    if not packing_supported():
        return 0
    packed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and _packable(module.weight):
            module.forward = types.MethodType(_packed_forward, module)
            packed += 1
    return packed


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    weight = self.weight
    if x.dtype != weight.dtype or (torch.is_grad_enabled() and weight.requires_grad):
        return torch.nn.functional.linear(x, weight, self.bias)
    state = getattr(self, "_toolgym_packed", None)
    if state is None or state[0] != weight._version:
        # the layout hint is a decode step's row count; any row count gives the same result
        state = (weight._version, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1))
        self._toolgym_packed = state
    return torch.ops.mkldnn._linear_pointwise(x, state[1], self.bias, "none", [], "")
