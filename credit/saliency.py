"""Divergence-driven credit saliency: the segmenter ``g`` of SGCD §4.4 / eq. 3.

Within one rollout's response tokens (in order), the divergence is normalised, spikes
are marked, and each spike anchors a span that extends over the following tokens while
the teacher's entropy stays within ``entropy_rise`` of its value at the anchor. The span
ends at the first token where the entropy rises past that, where the divergence resets
(falls back to ``reset_level`` or below), or where a new assistant turn begins (a tool
observation or user message in between breaks the autoregressive continuation). Every
token of a span gets the anchor's normalised divergence as its saliency (GEAR: "uses
the divergence at the departure point to modulate the segment"); every other token 0.
A spike inside an open span extends it and does not start a new one.

The normalisation is toolgym's reading of "within each rollout we normalize d": 0 at the
rollout's median divergence, 1 at its maximum, clipped to [0, 1], so saliency marks
localised disagreement rather than a uniformly shifted teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SaliencyConfig:
    spike_level: float = 0.5
    """A token spikes when its normalised divergence is at least this (half-way from the
    rollout's median to its maximum). The paper gives no value (toolgym choice)."""
    min_spike_divergence: float = 0.01
    """...and its raw divergence is at least this many nats, so a rollout whose teacher
    barely differs (e.g. an empty context) marks nothing. Toolgym choice."""
    reset_level: float = 0.1
    """A span ends where the normalised divergence falls to this or below ("divergence
    reset", §4.4); a negative value disables resets (GEAR-style continuation spans).
    Toolgym choice."""
    entropy_rise: float = 0.1
    """A span ends where the teacher entropy exceeds its value at the anchor by more than
    this, in units of the support's maximum entropy ``log(K+2)`` ("entropy rises", §4.4).
    Toolgym choice."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.spike_level <= 1.0 or self.reset_level >= self.spike_level:
            raise ValueError("need 0 <= spike_level <= 1 and reset_level < spike_level")


@dataclass
class Saliency:
    values: torch.Tensor  # (R,) s in [0, 1]
    segment_lengths: list[int]  # one per span, in order


def normalise(divergence: torch.Tensor) -> torch.Tensor:
    """``(d - median) / (max - median)`` clipped to [0, 1]; zeros when flat. ``(R,) -> (R,)``."""
    if divergence.numel() == 0:
        return divergence.clone()
    median, peak = divergence.median(), divergence.max()
    if peak <= median:
        return torch.zeros_like(divergence)
    return ((divergence - median) / (peak - median)).clamp(0.0, 1.0)


def saliency(
    divergence: torch.Tensor,
    entropy: torch.Tensor,
    turn_starts: torch.Tensor,
    config: SaliencyConfig,
) -> Saliency:
    """Segment one rollout's response tokens.

    ``divergence`` ``(R,)`` in nats, ``entropy`` ``(R,)`` the teacher entropy normalised by
    its maximum, ``turn_starts`` ``(R,)`` bool, True at the first token of each assistant
    turn. Vectorised within each span; the loop runs once per span, not per token.
    """
    divergence, entropy = divergence.detach(), entropy.detach()
    n = normalise(divergence)  # (R,)
    length = n.numel()
    values = torch.zeros_like(n)
    spikes = torch.nonzero((n >= config.spike_level) & (divergence >= config.min_spike_divergence))
    spikes = spikes.flatten()  # (P,)
    hard_stops = torch.nonzero((n <= config.reset_level) | turn_starts).flatten()  # (Q,)
    lengths: list[int] = []
    next_spike = 0
    while next_spike < len(spikes):
        anchor = int(spikes[next_spike])
        later = torch.searchsorted(hard_stops, anchor + 1)
        hard = int(hard_stops[later]) if later < len(hard_stops) else length
        risen = entropy[anchor + 1 : hard] - entropy[anchor] > config.entropy_rise  # (w,)
        end = anchor + 1 + int(risen.nonzero()[0]) if risen.any() else hard
        values[anchor:end] = n[anchor]
        lengths.append(end - anchor)
        next_spike = int(torch.searchsorted(spikes, end))  # first spike at or after the end
    return Saliency(values=values, segment_lengths=lengths)
