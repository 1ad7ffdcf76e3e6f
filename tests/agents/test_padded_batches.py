"""Batches of similar-length sequences: within the token budget, little padding, every
sequence exactly once."""

from agents.episode import PAD_SLACK, padded_batches


def _padded(lengths, batch):
    return len(batch) * max(lengths[i] for i in batch)


def test_siblings_of_mixed_lengths_are_batched_by_length():
    # the airline_mini siblings that one padded batch computed at 2.3x their tokens
    lengths = [793, 86, 654, 336, 72, 72, 387, 390]
    batches = padded_batches(lengths, 16_384)
    assert batches == [[4, 5, 1], [3, 6, 7], [2, 0]]
    for batch in batches:
        assert _padded(lengths, batch) <= (1 + PAD_SLACK) * sum(lengths[i] for i in batch)


def test_the_token_budget_bounds_each_batch_and_one_sequence_always_fits():
    lengths = [100] * 7 + [5_000]
    batches = padded_batches(lengths, 300)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(_padded(lengths, b) <= 300 for b in batches if len(b) > 1)
    assert [7] in batches and max(len(b) for b in batches) == 3
