import pytest
import torch
from credit_helpers import CharPrompts, RecordingAnalyst, make_episode, make_group

from agents.chat import ChatBackendError
from credit import Teacher, get_credit
from credit.reference import ReferenceConfig
from credit.reweight import rollout_credit
from credit.saliency import SaliencyConfig, saliency
from credit.sanitizer import PrivateValues
from credit.sgcd import SGCDConfig
from credit.teacher import ScoringConfig, SupportScores
from credit.weights import WeightConfig

PRIVATE = PrivateValues(gold_literals=("ZFA04Y",), answer_literals=("$450",))
# A random tiny model's divergences are small: let any divergence spike.
SALIENT = SaliencyConfig(min_spike_divergence=0.0)


def _groups():
    mixed = make_group(
        [
            make_episode(
                [
                    ("assistant", "Looking up ZFA04Y."),
                    ("tool", '{"refund": "$450"}'),
                    ("assistant", "Cancelled; refund $450."),
                ],
                1.0,
            ),
            make_episode([("assistant", "I can't do that.")], 0.0),
            make_episode([("assistant", "Cancelled.")], 1.0),
            make_episode([("assistant", "Sure!"), ("user", "and?"), ("assistant", "Bye.")], 0.0),
        ]
    )
    unmixed = make_group(  # partial credit, no verified success: plain group-relative
        [make_episode([("assistant", "Hmm.")], 0.5), make_episode([("assistant", "No.")], 0.0)]
    )
    return [unmixed, mixed]


def _teacher(model, analyst=None):
    prompts = CharPrompts(PRIVATE)
    return Teacher(model, prompts, analyst), prompts


def _assign(groups, teacher, **options):
    method = get_credit("sgcd")
    config = SGCDConfig(scoring=ScoringConfig(top_k=8), saliency=SALIENT, **options)
    return method.assign(groups, teacher, config)


def test_mixed_groups_reweighted_others_plain(tiny_llama):
    groups = _groups()
    analyst = RecordingAnalyst(reply="(1) look up the reservation before cancelling")
    teacher, prompts = _teacher(tiny_llama, analyst)
    out = _assign(groups, teacher)
    grpo = get_credit("grpo").assign(groups, None, get_credit("grpo").make_config())

    assert len(analyst.calls) == 1  # the mixed group only
    sent = "".join(m["content"] for m in analyst.calls[0])
    assert "ZFA04Y" not in sent and "450" not in sent
    assert prompts.contexts == ["(1) look up the reservation before cancelling"]

    episodes = [e for g in groups for e in g.episodes]
    for k, episode in enumerate(episodes):
        mask = torch.tensor(episode.response_mask, dtype=torch.bool)
        w, adv, base = out.weights[k], out.advantages[k], grpo.advantages[k]
        assert (w[~mask] == 1).all() and (adv[~mask] == 0).all()
        assert ((w >= 1) & (w <= 2)).all() and not w.requires_grad
        torch.testing.assert_close(adv, base * w)
        assert torch.equal(torch.sign(adv), torch.sign(base))  # never flipped
        if k < 2:  # the unmixed group
            assert (w == 1).all()
    mixed_weights = torch.cat([w for w in out.weights[2:]])
    assert (mixed_weights > 1).any()

    # App. B: tokens that spell a masked value get no credit weight.
    first = episodes[2]
    text = "".join(chr(i) for i in first.ids)
    for literal in ("ZFA04Y", "$450"):
        start = text.index(literal)
        assert (out.weights[2][start : start + len(literal)] == 1).all()

    expected = {
        "credit/mixed_group_share",
        "credit/advantage_abs_mean",
        "credit/scored_tokens",
        "credit/segments_per_rollout",
        "credit/segment_length_mean",
        "credit/divergence_mean",
        "credit/divergence_max",
        "credit/weight_mean",
        "credit/weight_max",
        "credit/weight_p90",
        "credit/weighted_token_share",
        "credit/clip_share",
        "credit/excluded_token_share",
        "credit/teacher_scoring_s",
        "credit/analyst_s",
        "credit/reference_chars_mean",
        "credit/reference_prompt_chars_mean",
        "credit/reference_fallback_share",
        "credit/reference_truncated_share",
        "credit/masked_values_mean",
    }
    assert expected <= set(out.diagnostics)
    assert out.diagnostics["credit/mixed_group_share"] == 0.5
    assert out.diagnostics["credit/excluded_token_share"] > 0
    assert out.diagnostics["credit/analyst_cost_usd"] == 0.25
    assert out.diagnostics["credit/analyst_input_tokens"] == 1000


def test_successful_sibling_ablation_needs_no_analyst(tiny_llama):
    teacher, prompts = _teacher(tiny_llama, analyst=None)
    _assign(_groups(), teacher, teacher_context="successful_sibling")
    (context,) = prompts.contexts
    # The shorter of the two successes, sanitized.
    assert context == "### Sibling 3 (outcome: success)\n[step 1] assistant: Cancelled.\n"


def test_uniform_ablation_spreads_each_rollouts_mean_weight(tiny_llama):
    groups = _groups()
    per_token = _assign(groups, _teacher(tiny_llama, RecordingAnalyst())[0])
    uniform = _assign(groups, _teacher(tiny_llama, RecordingAnalyst())[0], weighting="uniform")
    episodes = [e for g in groups for e in g.episodes]
    for k, episode in enumerate(episodes):
        mask = torch.tensor(episode.response_mask, dtype=torch.bool)
        expected = per_token.weights[k][mask].mean()
        torch.testing.assert_close(uniform.weights[k][mask], expected.expand(int(mask.sum())))


def test_missing_teacher_parts_are_refused(tiny_llama):
    with pytest.raises(ValueError, match="needs a Teacher"):
        _assign(_groups(), None)
    with pytest.raises(ValueError, match="needs teacher.analyst"):
        _assign(_groups(), _teacher(tiny_llama)[0])
    analyst = RecordingAnalyst()
    analyst.supports_temperature = False
    with pytest.raises(ValueError, match="temperature"):
        _assign(
            _groups(), _teacher(tiny_llama, analyst)[0], reference=ReferenceConfig(temperature=0.0)
        )


def _scores(positions, seed):
    g = torch.Generator().manual_seed(seed)
    r = len(positions)
    student = torch.log_softmax(torch.randn(r, 6, generator=g), -1)
    teacher = torch.log_softmax(3 * torch.randn(r, 6, generator=g), -1)
    entropy = -(teacher.exp() * teacher).sum(-1)
    return SupportScores(
        torch.tensor(positions), torch.zeros(r, 5, dtype=torch.long), student, teacher, entropy
    )


@pytest.mark.parametrize("seed", range(5))
def test_excluded_tokens_are_left_out_of_segmentation(seed):
    # Two assistant turns; the second turn's first token is excluded, so its start moves on.
    scores = _scores([0, 1, 2, 3, 4, 9, 10, 11, 12], seed)
    excluded = torch.tensor([0, 0, 1, 0, 0, 1, 0, 0, 0], dtype=torch.bool)
    config = SaliencyConfig(min_spike_divergence=0.0, spike_level=0.3)
    out = rollout_credit(scores, excluded, "reverse_kl", config, WeightConfig())
    assert (out.saliency[excluded] == 0).all() and (out.weights[excluded] == 1).all()
    keep = ~excluded
    h = scores.teacher_entropy / torch.log(torch.tensor(7.0))
    starts = torch.tensor([1, 0, 0, 0, 1, 0, 0], dtype=torch.bool)
    reference = saliency(out.divergence[keep], h[keep], starts, config)
    torch.testing.assert_close(out.saliency[keep], reference.values)
    assert out.excluded == 2


class FailingAnalyst(RecordingAnalyst):
    """An analyst whose backend gave up (its retries spent)."""

    def complete(self, messages, *, temperature, seed):
        self.calls.append(messages)
        raise ChatBackendError("overloaded after 4 retries")


def test_a_failed_analyst_call_falls_back_to_the_no_reference_context(tiny_llama):
    analyst = FailingAnalyst()
    teacher, prompts = _teacher(tiny_llama, analyst)
    out = _assign(_groups(), teacher)
    assert len(analyst.calls) == 1 and out.diagnostics["credit/analyst_failures"] == 1.0
    (context,) = prompts.contexts
    assert context == "### Sibling 3 (outcome: success)\n[step 1] assistant: Cancelled.\n"
    assert len(out.advantages) == 6
