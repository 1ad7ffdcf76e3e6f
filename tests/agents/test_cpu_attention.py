"""Rows continuing one shared prefix, read once (agents/cpu_attention.py), against each
row encoded whole, in fp32."""

import pytest
import torch
from transformers import DynamicCache

from agents.cpu_attention import continue_shared_prefix
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
