"""GEAR credit: the Appendix-A properties, the granularity rule, which groups are scored,
diagnostics, and that the ground truth reaches the teacher and no student context."""

import pytest
import torch
from credit_helpers import CharPrompts, make_episode, make_group

from agents.env_pool import EnvSpec, LocalEnvPool
from agents.generation import ScriptedGenerator
from agents.rollout import Policy, RolloutConfig, rollout_groups
from agents.tool_format import format_action
from credit import Teacher, get_credit
from credit.gear import GEARConfig, granular_credit
from credit.reweight import rollout_credit
from credit.saliency import SaliencyConfig
from credit.task_prompts import ChatTaskPrompts
from credit.teacher import ScoringConfig, SupportScores
from envs.core import AgentAction

TITLE = "Ground truth for the teacher only:"
REFERENCE = '<tool_call>{"name": "cancel", "arguments": {"id": "ZFA04Y"}}</tool_call>'
DIAGNOSTICS = (
    "credit/segments_per_rollout",
    "credit/segment_length_mean",
    "credit/weight_mean",
    "credit/weight_p90",
    "credit/clip_share",
    "credit/divergence_max",
    "credit/weighted_token_share",
    "credit/scored_group_share",
)


class GoldPrompts(CharPrompts):
    def reference_solution(self, group):
        return REFERENCE


def _config(reset_level=-1.0, **options):
    # A random tiny model's divergences are small: let any divergence spike.
    return GEARConfig(
        scoring=ScoringConfig(top_k=8),
        saliency=SaliencyConfig(min_spike_divergence=0.0, reset_level=reset_level),
        **options,
    )


def _groups():
    failing = make_group([make_episode([("assistant", "No.")], 0.0) for _ in range(2)])  # A = 0
    partial = make_group(  # not mixed (no success), but A != 0: GEAR scores it
        [
            make_episode([("assistant", "Hmm, let me look.")], 0.5),
            make_episode([("assistant", "No.")], 0.0),
        ]
    )
    mixed = make_group(
        [
            make_episode(
                [("assistant", "Looking up ZFA04Y."), ("tool", "{}"), ("assistant", "Done.")], 1.0
            ),
            make_episode([("assistant", "I can't do that.")], 0.0),
        ]
    )
    return [failing, partial, mixed]


def test_appendix_a_properties_and_scored_groups(tiny_llama):
    groups = _groups()
    prompts = GoldPrompts()
    config = _config()
    out = get_credit("gear").assign(groups, Teacher(tiny_llama, prompts), config)
    grpo = get_credit("grpo").assign(groups, None, get_credit("grpo").make_config())
    c = config.weights.cap

    assert prompts.contexts == [REFERENCE, REFERENCE]  # the partial and mixed groups only
    triples = zip(grpo.advantages, out.weights, out.advantages, strict=True)
    for k, (a, w, a_hat) in enumerate(triples):
        assert not w.requires_grad and not a_hat.requires_grad  # detached
        assert torch.all((w >= 1) & (w <= c))
        torch.testing.assert_close(a_hat, a * w)
        assert torch.equal(torch.sign(a_hat), torch.sign(a))  # never flipped
        assert torch.all(a_hat.abs() <= c * a.abs() + 1e-12)
        if k < 2:  # all-fail group: A = 0, not scored, W = 1
            assert (w == 1).all() and (a_hat == 0).all()
    assert all(torch.any(w > 1) for w in out.weights[2:]), "credit was inert"
    for key in DIAGNOSTICS:
        assert key in out.diagnostics, key
    assert out.diagnostics["credit/scored_group_share"] == pytest.approx(2 / 3)


def test_segments_take_the_departure_divergence_aligned_tokens_keep_their_own():
    # Support of 3 slots; the student puts mass p on slot 0, the teacher 1/3 everywhere.
    def scores(ps, entropies):
        student = torch.tensor([[p, (1 - p) / 2, (1 - p) / 2] for p in ps]).log()  # (R, 3)
        teacher = torch.full((len(ps), 3), 1 / 3).log()  # (R, 3)
        return SupportScores(
            positions=torch.tensor([0, 1, 2, 3, 4, 5, 7, 8]),  # a new turn at position 7
            support_ids=torch.zeros(len(ps), 2, dtype=torch.long),
            student_logp=student,
            teacher_logp=teacher,
            teacher_entropy=torch.tensor(entropies),
        )

    flat = [1.0986] * 8  # log 3: normalised entropy 1, never rising
    #   aligned  aligned  SPIKE  low  low  SPIKE?  | new turn: low  aligned
    ps = [0.34, 0.40, 0.98, 0.34, 0.34, 0.97, 0.34, 0.45]
    config = _config(token_scale=1.0)
    base = rollout_credit(
        scores(ps, flat),
        torch.zeros(8, dtype=torch.bool),
        "reverse_kl",
        config.saliency,
        config.weights,
    )
    credit = granular_credit(base, config)
    s = credit.saliency
    # One segment from the spike at index 2 to the end of the turn (no divergence reset):
    # the later spike at 5 extends it, and every token gets the departure's value.
    assert base.segment_lengths == [4]
    assert torch.all(s[2:6] == s[2]) and s[2] == 1.0
    # Aligned tokens keep their own normalised divergence: token resolution.
    assert s[1] > s[0] >= 0 and s[7] > s[6] >= 0 and s[1] < config.saliency.spike_level
    # With a divergence reset the same spike closes at the first low token instead.
    reset = _config(reset_level=0.1)
    short = rollout_credit(
        scores(ps, flat),
        torch.zeros(8, dtype=torch.bool),
        "reverse_kl",
        reset.saliency,
        reset.weights,
    )
    assert short.segment_lengths[0] == 1
    # token_scale = 0: aligned tokens get W = 1, as SGCD.
    sgcd_like = granular_credit(base, _config(token_scale=0.0))
    assert torch.all(sgcd_like.weights[[0, 1, 6, 7]] == 1)


class RecordingGenerator(ScriptedGenerator):
    """Records every context the policy is asked to continue."""

    def __init__(self, encode, scripts):
        super().__init__(encode, scripts)
        self.contexts: list[list[int]] = []

    def generate(self, contexts, slots, sampling, seed):
        self.contexts.extend(list(c) for c in contexts)
        return super().generate(contexts, slots, sampling, seed)


def _contains(haystack: list[int], needle: list[int]) -> bool:
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack)))


@pytest.fixture(scope="module")
def airline():
    """A mixed airline_mini group from the real engine: a gold replay and a refusal, with
    every context the policy was asked to continue recorded."""
    from agents.chat_format import ChatFormat, ChatFormatConfig
    from agents.model import ModelConfig, load_model

    torch.manual_seed(0)
    model, tokenizer = load_model(ModelConfig(name="tiny-random", dtype="float32"))
    chat = ChatFormat(tokenizer, ChatFormatConfig())
    spec = EnvSpec({"name": "airline_mini", "split": "train"})
    env = spec.build()
    ids = [t.task_id for t in env.tasks()]
    task = next(i for i in ids if env.task_labels(i).gold_calls and env.task_labels(i).answers)
    win = [format_action(a) for a in env.gold_actions(task)]
    generator = RecordingGenerator(chat.render_sft_target, {0: win, 1: ["Sorry."]})
    policy = Policy(chat, generator)
    (group,) = rollout_groups(LocalEnvPool(spec, 2), policy, [task], 0, RolloutConfig(n=2))
    assert group.is_mixed, "the gold replay should win and the refusal fail"
    prompts = ChatTaskPrompts(chat, env.task_labels, TITLE)
    return model, chat, env.task_labels(task), group, prompts, generator.contexts


def test_ground_truth_reaches_the_teacher_and_no_student_context(airline):
    _, chat, labels, group, prompts, contexts = airline
    reference = prompts.reference_solution(group)
    calls = [format_action(AgentAction(tool_calls=(c,))) for c in labels.gold_calls]
    assert all(call in reference for call in calls)
    assert all(answer in reference for answer in labels.answers)
    block = chat.tokenizer(
        f"<|im_start|>system\n{TITLE}\n{reference}<|im_end|>\n", add_special_tokens=False
    ).input_ids
    assert _contains(prompts.teacher_prompt_ids(group, reference), block)
    # The winning sibling replays the gold calls, so it is the block (title + rendered
    # reference) that must be absent: from the prompt, every episode and every context
    # the policy was asked to continue.
    assert contexts
    students = [group.prompt_ids, *(group.prompt_ids + e.ids for e in group.episodes)]
    for ids in students + contexts:
        assert not _contains(ids, block)
        assert TITLE not in chat.tokenizer.decode(ids)


def test_real_adapter_and_model_give_bounded_sign_preserving_credit(airline):
    model, _, _, group, prompts, _ = airline
    out = get_credit("gear").assign([group], Teacher(model, prompts), _config())
    grpo = get_credit("grpo").assign([group], None, get_credit("grpo").make_config())
    for a, w, a_hat in zip(grpo.advantages, out.weights, out.advantages, strict=True):
        assert not w.requires_grad and torch.all((w >= 1) & (w <= 2))
        assert torch.equal(torch.sign(a_hat), torch.sign(a))
    assert any(torch.any(w > 1) for w in out.weights)
    for key in DIAGNOSTICS:
        assert key in out.diagnostics, key
