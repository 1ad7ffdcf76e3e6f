"""Batches for one forward each: within the token budget, little padding where rows are
padded, every sequence exactly once."""

from agents.episode import PAD_SLACK, forward_batches


def _padded(lengths, batch):
    return len(batch) * max(lengths[i] for i in batch)


def test_padded_siblings_of_mixed_lengths_are_batched_by_length():
    # the airline_mini siblings that one padded batch computed at 2.3x their tokens
    lengths = [793, 86, 654, 336, 72, 72, 387, 390]
    batches = forward_batches(lengths, 16_384)
    assert batches == [[4, 5, 1], [3, 6, 7], [2, 0]]
    for batch in batches:
        assert _padded(lengths, batch) <= (1 + PAD_SLACK) * sum(lengths[i] for i in batch)


def test_packed_siblings_fill_a_forward_up_to_the_budget():
    lengths = [793, 86, 654, 336, 72, 72, 387, 390]
    assert forward_batches(lengths, 16_384, packed=True) == [[4, 5, 1, 3, 6, 7, 2, 0]]
    batches = forward_batches(lengths, 1_000, packed=True)
    assert batches == [[4, 5, 1, 3, 6], [7], [2], [0]]
    assert all(sum(lengths[i] for i in b) <= 1_000 for b in batches)


def test_the_token_budget_bounds_each_batch_and_one_sequence_always_fits():
    lengths = [100] * 7 + [5_000]
    for packed in (False, True):
        batches = forward_batches(lengths, 300, packed)
        assert sorted(i for b in batches for i in b) == list(range(8))
        assert all(_padded(lengths, b) <= 300 for b in batches if len(b) > 1)
        assert [7] in batches and max(len(b) for b in batches) == 3
