import random

import pytest
import torch
from credit_helpers import make_episode, make_group

from credit import get_credit
from credit.group_relative import GroupRelativeConfig, group_advantages


def _group(rewards):
    return make_group([make_episode([("assistant", "ok")], r) for r in rewards])


@pytest.mark.parametrize(
    "rewards,scale,expected",
    [
        ([1, 0, 0, 1], False, [0.5, -0.5, -0.5, 0.5]),
        ([1, 0, 0, 0], False, [0.75, -0.25, -0.25, -0.25]),
        ([1, 1, 1], False, [0.0, 0.0, 0.0]),  # not mixed: no signal
        # std of [1, 0, 0, 0] (unbiased) = 0.5
        ([1, 0, 0, 0], True, [1.5, -0.5, -0.5, -0.5]),
        ([0.0, 0.0], True, [0.0, 0.0]),  # zero std: eps keeps it finite
        ([1.0], True, [0.0]),  # a lone sibling
    ],
)
def test_group_relative_values(rewards, scale, expected):
    config = GroupRelativeConfig(scale_by_std=scale)
    values = group_advantages([_group(rewards)], config)
    assert values.tolist() == pytest.approx(expected, abs=1e-5)


def _loop_reference(groups, config):
    out = []
    for g in groups:
        r = torch.tensor(g.rewards, dtype=torch.float64)
        a = r - r.mean()
        if config.scale_by_std:
            std = r.std() if len(r) > 1 else torch.tensor(0.0, dtype=torch.float64)
            a = a / (std + config.std_eps)
        out += a.tolist()
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_vectorised_matches_loop(seed, scale):
    rng = random.Random(seed)
    groups = [
        _group([rng.choice([0.0, 0.5, 1.0]) for _ in range(rng.randint(1, 8))])
        for _ in range(rng.randint(1, 6))
    ]
    config = GroupRelativeConfig(scale_by_std=scale)
    torch.testing.assert_close(group_advantages(groups, config), _loop_reference(groups, config))


def test_broadcast_only_on_response_tokens():
    win = make_episode([("assistant", "look"), ("tool", "{}"), ("assistant", "done")], 1.0)
    lose = make_episode([("assistant", "no"), ("user", "why")], 0.0)
    method = get_credit("grpo")
    out = method.assign([make_group([win, lose])], None, method.make_config())
    for episode, adv, w in zip([win, lose], out.advantages, out.weights, strict=True):
        mask = torch.tensor(episode.response_mask, dtype=torch.bool)
        assert adv.shape == (len(episode.ids),)
        assert (adv[~mask] == 0).all()
        assert (adv[mask] == episode.reward - 0.5).all()
        assert (w == 1).all()
    assert out.diagnostics["credit/mixed_group_share"] == 1.0
