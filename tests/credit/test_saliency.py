import pytest
import torch

from credit.saliency import SaliencyConfig, normalise, saliency

CONFIG = SaliencyConfig(
    spike_level=0.5, min_spike_divergence=0.01, reset_level=0.1, entropy_rise=0.1
)
Z = [0.0] * 6  # quiet tokens, so the median divergence is 0 and n = d / max(d)

# (case, divergence, teacher entropy (None: flat 0.2), turn starts, expected s, span lengths)
CASES = [
    (
        "spike extends until the divergence resets",
        Z + [1.0, 0.6, 0.5, 0.0] + Z,
        None,
        [],
        Z + [1.0, 1.0, 1.0, 0.0] + Z,
        [3],
    ),
    (
        "entropy rise past the anchor's ends the span",
        Z + [1.0, 0.6, 0.4, 0.3] + Z,
        {6: 0.2, 7: 0.25, 8: 0.35},  # +0.05 stays, +0.15 stops
        [],
        Z + [1.0, 1.0, 0.0, 0.0] + Z,
        [2],
    ),
    (
        "entropy falling does not end the span",
        Z + [1.0, 0.6, 0.4] + Z,
        {6: 0.5, 7: 0.1, 8: 0.05},
        [],
        Z + [1.0, 1.0, 1.0] + Z,
        [3],
    ),
    (
        "a new assistant turn ends the span",
        Z + [1.0, 0.6, 0.4, 0.3] + Z,
        None,
        [8],
        Z + [1.0, 1.0, 0.0, 0.0] + Z,
        [2],
    ),
    (
        "a spike inside a span extends it with the anchor's value",
        Z + [0.8, 0.3, 1.0, 0.3, 0.0] + Z,
        None,
        [],
        Z + [0.8, 0.8, 0.8, 0.8, 0.0] + Z,
        [4],
    ),
    (
        "after a reset, the next spike opens a second span",
        Z + [1.0, 0.0, 0.6, 0.2] + Z,
        None,
        [],
        Z + [1.0, 0.0, 0.6, 0.6] + Z,
        [1, 2],
    ),
    (
        "a spike on a turn start opens a span there",
        Z + [1.0, 0.4, 0.9, 0.4] + Z,
        None,
        [8],
        Z + [1.0, 1.0, 0.9, 0.9] + Z,
        [2, 2],
    ),
    (
        "below min_spike_divergence nothing spikes",
        Z + [0.005, 0.004] + Z,
        None,
        [],
        Z + [0.0, 0.0] + Z,
        [],
    ),
    ("flat divergence marks nothing", [0.3] * 8, None, [], [0.0] * 8, []),
    ("empty rollout", [], None, [], [], []),
]


@pytest.mark.parametrize(
    "divergence,entropy,starts,expected,lengths", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_segmenter_rule(divergence, entropy, starts, expected, lengths):
    d = torch.tensor(divergence)
    h = torch.full_like(d, 0.2)
    for t, value in (entropy or {}).items():
        h[t] = value
    turn_starts = torch.zeros(len(d), dtype=torch.bool)
    turn_starts[starts] = True
    out = saliency(d, h, turn_starts, CONFIG)
    torch.testing.assert_close(out.values, torch.tensor(expected))
    assert out.segment_lengths == lengths


def test_negative_reset_level_keeps_the_continuation():
    # GEAR's reading: after departing, the continuation stays one segment though the
    # divergence returns to low; only entropy or a new turn end it.
    config = SaliencyConfig(reset_level=-1.0)
    d = torch.tensor(Z + [1.0, 0.0, 0.0, 0.0] + Z)
    starts = torch.zeros(len(d), dtype=torch.bool)
    starts[10] = True
    out = saliency(d, torch.full_like(d, 0.2), starts, config)
    assert out.values[6:10].tolist() == [1.0] * 4 and out.values[10:].sum() == 0


def test_normalise():
    torch.testing.assert_close(
        normalise(torch.tensor([0.0, 1.0, 1.0, 3.0, 5.0])), torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0])
    )


def _loop_saliency(d, h, starts, config):
    """Token-by-token state machine: the rule as written in the paper."""
    n = normalise(d)
    values, lengths = torch.zeros_like(n), []
    in_span, anchor = False, 0
    for t in range(len(n)):
        if in_span and (
            starts[t] or n[t] <= config.reset_level or h[t] - h[anchor] > config.entropy_rise
        ):
            in_span = False
        if not in_span and n[t] >= config.spike_level and d[t] >= config.min_spike_divergence:
            in_span, anchor = True, t
            lengths.append(0)
        if in_span:
            values[t] = n[anchor]
            lengths[-1] += 1
    return values, lengths


@pytest.mark.parametrize("seed", range(20))
def test_span_vectorised_matches_token_loop(seed):
    g = torch.Generator().manual_seed(seed)
    length = int(torch.randint(1, 300, (1,), generator=g))
    d = torch.rand(length, generator=g) ** 4  # mostly small, a few spikes
    h = torch.rand(length, generator=g) * 0.3
    starts = torch.rand(length, generator=g) < 0.05
    out = saliency(d, h, starts, CONFIG)
    values, lengths = _loop_saliency(d, h, starts, CONFIG)
    torch.testing.assert_close(out.values, values)
    assert out.segment_lengths == lengths
    assert ((out.values >= 0) & (out.values <= 1)).all()
