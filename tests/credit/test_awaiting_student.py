"""Teacher-scored credit in two parts: the teacher side first, each episode's student side
from logits the caller already has (the learner's forward), or scored at completion."""

import copy

import pytest
import torch
from credit_helpers import CharPrompts, RecordingAnalyst, make_episode, make_group

from agents.episode import forward_batches
from credit import Teacher, get_credit
from credit.gear import GEARConfig
from credit.saliency import SaliencyConfig
from credit.sgcd import SGCDConfig
from credit.teacher import ScoringConfig

# A random tiny model's divergences are small: let any divergence spike.
SALIENT = SaliencyConfig(min_spike_divergence=0.0)
CONFIGS = {
    "sgcd": SGCDConfig(scoring=ScoringConfig(top_k=8), saliency=SALIENT),
    "gear": GEARConfig(
        scoring=ScoringConfig(top_k=8),
        saliency=SaliencyConfig(min_spike_divergence=0.0, reset_level=-1.0),
    ),
}
TIMINGS = ("credit/teacher_scoring_s", "credit/analyst_s")
TOL = {"atol": 1e-6, "rtol": 1e-6}


@pytest.fixture
def model(tiny_llama):
    """In float64: the random model's divergences are ~1e-5, so the float32 rounding of a
    whole forward vs the cached, batched scoring path (~1e-7) could move a spike."""
    return copy.deepcopy(tiny_llama).double()


class ReferencePrompts(CharPrompts):
    def reference_solution(self, group):
        return "cancel ZFA04Y"


def _groups():
    unmixed = make_group([make_episode([("assistant", "No.")], 0.0) for _ in range(2)])
    mixed = make_group(
        [
            make_episode(
                [("assistant", "Looking up ZFA04Y."), ("tool", "{}"), ("assistant", "Done.")], 1.0
            ),
            make_episode([("assistant", "I can't do that.")], 0.0),
            make_episode([("user", "hm"), ("assistant", "Cancelled it.")], 1.0),
        ]
    )
    return [unmixed, mixed]


def _student_logits(model, group, episode):
    """The policy's ``(R, V)`` logits at the response tokens, one whole forward."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([group.prompt_ids + episode.ids])).logits[0]
    positions = torch.tensor(episode.response_positions())
    return logits[len(group.prompt_ids) + positions - 1]


def _start(name, model):
    teacher = Teacher(model, ReferencePrompts(), RecordingAnalyst())
    method = get_credit(name)
    return method, teacher, CONFIGS[name]


def _close(a, b):
    assert len(a.advantages) == len(b.advantages)
    for x, y in zip(a.advantages + a.weights, b.advantages + b.weights, strict=True):
        torch.testing.assert_close(x, y, **TOL)
    assert a.teacher_prompts == b.teacher_prompts
    for key in a.diagnostics.keys() - set(TIMINGS):
        assert a.diagnostics[key] == pytest.approx(b.diagnostics[key], abs=1e-6), key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_student_side_from_given_logits_equals_the_complete_credit(model, name):
    groups = _groups()
    method, teacher, config = _start(name, model)
    complete = method.assign(groups, teacher, config)
    started = method.start(groups, teacher, config)
    episodes = [(g, e) for g in groups for e in g.episodes]
    for k, (group, episode) in enumerate(episodes):
        given = started.advantage(k, _student_logits(model, group, episode))
        torch.testing.assert_close(given, complete.advantages[k], **TOL)
    _close(started.complete(), complete)
    assert any(torch.any(w > 1) for w in complete.weights), "credit was inert"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_start_runs_the_teacher_context_only_and_completion_the_missing_students(model, name):
    groups = _groups()
    mixed = groups[1]
    method, teacher, config = _start(name, model)
    seen: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        started = method.start(groups, teacher, config)
        teacher_prompt = started.teacher_prompts[len(groups[0].episodes)]
        lengths = [len(e.ids) for e in mixed.episodes]
        padded = [max(lengths[i] for i in b) for b in forward_batches(lengths, 16_384)]
        assert seen == [len(teacher_prompt), *padded]  # the prompt, then the siblings
        seen.clear()
        first = len(groups[0].episodes)
        for k in range(first):  # the unscored group's advantages need no logits
            started.advantage(k, torch.empty(0))
        for j, episode in enumerate(mixed.episodes[:-1]):
            started.advantage(first + j, _student_logits(model, mixed, episode))
        assert seen == [len(mixed.prompt_ids) + len(e.ids) for e in mixed.episodes[:-1]]
        seen.clear()
        completed = started.complete()
    finally:
        hook.remove()
    # only the sibling nobody finished is scored under the student prompt
    assert seen == [len(mixed.prompt_ids), len(mixed.episodes[-1].ids)]
    _close(completed, method.assign(groups, teacher, config))
