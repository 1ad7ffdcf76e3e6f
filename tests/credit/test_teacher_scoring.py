import pytest
import torch
from credit_helpers import CharPrompts, encode, make_episode, make_group

from agents import cpu_attention
from agents.episode import Episode, common_prefix, forward_batches
from agents.generation import SamplingConfig
from agents.hf_generation import HFGenerator
from credit.divergence import reverse_kl
from credit.teacher import (
    ScoringConfig,
    TeacherScorer,
    on_support,
    teacher_support,
)


def _score(scorer, student_prompt, teacher_prompt, episodes):
    """Both sides: the teacher's, then the student's on its support."""
    sides = scorer.score_teacher(teacher_prompt, episodes)
    return scorer.score_student(student_prompt, sides, episodes)


@pytest.mark.parametrize("k", [1, 5, 64])
def test_support_sums_to_one_and_tail_holds_the_rest(k):
    g = torch.Generator().manual_seed(k)
    student, teacher = torch.randn(40, 64, generator=g), 4 * torch.randn(40, 64, generator=g)
    observed = torch.randint(0, 64, (40,), generator=g)
    observed[:5] = teacher[:5].argmax(-1)  # some observed tokens inside the top-K
    ids, t_logp = teacher_support(teacher, observed, k)
    s_logp = on_support(student, ids)
    assert s_logp.shape == t_logp.shape == (40, k + 2) and ids.shape == (40, k + 1)
    for logits, logp in ((student, s_logp), (teacher, t_logp)):
        full = torch.softmax(logits, dim=-1)
        torch.testing.assert_close(logp.exp().sum(-1), torch.ones(40))
        in_support = torch.zeros_like(full, dtype=torch.bool).scatter(-1, ids, True)
        torch.testing.assert_close(logp[:, -1].exp(), 1 - (full * in_support).sum(-1))
        torch.testing.assert_close(logp[:, :k].exp(), full.gather(-1, ids[:, :k]))
    assert torch.equal(ids[:, :k], teacher.topk(k, dim=-1).indices)
    in_top = (ids[:, :k] == observed[:, None]).any(-1)
    assert in_top[:5].all()
    assert torch.isneginf(s_logp[in_top, k]).all() and torch.isneginf(t_logp[in_top, k]).all()
    assert torch.isfinite(s_logp[~in_top, k]).all()


# transformers' SDPA repeats the prompt per row; toolgym's CPU attention reads it once
@pytest.fixture(params=["sdpa", cpu_attention.NAME])
def scoring_llama(tiny_llama, request):
    before = tiny_llama.config._attn_implementation
    tiny_llama.set_attn_implementation(request.param)
    yield tiny_llama
    tiny_llama.set_attn_implementation(before)


GREEDY_ONE = SamplingConfig(temperature=0.0, max_new_tokens=1)


def _episodes():
    return [
        make_episode(
            [("assistant", "Let me check."), ("tool", '{"ok": 1}'), ("assistant", "Done")], 1
        ),
        make_episode([("assistant", "No.")], 0),
        make_episode([("user", "hm"), ("assistant", "Booked it, see you!")], 0),
        # The first id sampled straight after the prompt: predicted by the prompt's last logit.
        Episode("t1", "action", encode("Yes"), [1, 1, 1], [0.0] * 3, [], 1.0),
    ]


def _naive(model, prompt, episode, k):
    """One full forward per sequence, nothing shared: the reference."""
    ids = torch.tensor([prompt + episode.ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]  # (P+T, V)
    positions = torch.nonzero(torch.tensor(episode.response_mask)).flatten()
    return logits[len(prompt) + positions - 1], torch.tensor(episode.ids)[positions], positions


@pytest.mark.parametrize(
    "config",
    [
        ScoringConfig(top_k=8),
        ScoringConfig(top_k=8, max_tokens_per_forward=1, positions_per_chunk=3),
    ],
    ids=["batched", "one-per-forward-chunked"],
)
def test_cached_batched_scoring_matches_naive_forwards(scoring_llama, config):
    tiny_llama = scoring_llama
    group = make_group(_episodes())
    teacher_prompt = CharPrompts().teacher_prompt_ids(group, "check the reservation first")
    scores = _score(
        TeacherScorer(tiny_llama, config), group.prompt_ids, teacher_prompt, group.episodes
    )
    for episode, got in zip(group.episodes, scores, strict=True):
        s_logits, observed, positions = _naive(tiny_llama, group.prompt_ids, episode, config.top_k)
        t_logits, _, _ = _naive(tiny_llama, teacher_prompt, episode, config.top_k)
        ids_ref, t_ref = teacher_support(t_logits, observed, config.top_k)
        s_ref = on_support(s_logits, ids_ref)
        assert torch.equal(got.positions, positions)
        assert torch.equal(got.support_ids, ids_ref)
        torch.testing.assert_close(got.student_logp, s_ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.teacher_logp, t_ref, atol=1e-4, rtol=1e-4)
        assert not got.student_logp.requires_grad


def test_same_context_gives_zero_divergence(tiny_llama):
    group = make_group(_episodes())
    scorer = TeacherScorer(tiny_llama, ScoringConfig(top_k=16))
    for score in _score(scorer, group.prompt_ids, list(group.prompt_ids), group.episodes):
        assert reverse_kl(score.student_logp, score.teacher_logp).abs().max() < 1e-6


def test_context_moves_the_teacher_and_training_mode_is_restored(tiny_llama):
    group = make_group(_episodes())
    tiny_llama.train()
    try:
        scorer = TeacherScorer(tiny_llama, ScoringConfig(top_k=16))
        teacher_prompt = encode("Always verify first. ") + group.prompt_ids
        scores = _score(scorer, group.prompt_ids, teacher_prompt, group.episodes)
        assert tiny_llama.training
    finally:
        tiny_llama.eval()
    divergence = torch.cat([reverse_kl(s.student_logp, s.teacher_logp) for s in scores])
    assert divergence.max() > 0
    for s in scores:
        assert (
            (s.teacher_entropy >= 0) & (s.teacher_entropy <= torch.log(torch.tensor(18.0)))
        ).all()


def test_empty_prompt_refused(tiny_llama):
    with pytest.raises(ValueError, match="non-empty"):
        TeacherScorer(tiny_llama, ScoringConfig()).score_teacher([], _episodes())


@pytest.mark.parametrize("packed", [False, True])
def test_each_prompt_runs_once_for_all_siblings(tiny_llama, packed):
    group = make_group(_episodes())
    teacher_prompt = CharPrompts().teacher_prompt_ids(group, "ctx")
    seen: list[int] = []
    hook = tiny_llama.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    if packed:  # agents/cpu_attention.py's attention: siblings packed, no padding
        tiny_llama.set_attn_implementation(cpu_attention.NAME)
    try:
        _score(
            TeacherScorer(tiny_llama, ScoringConfig(top_k=4)),
            group.prompt_ids,
            teacher_prompt,
            group.episodes,
        )
    finally:
        hook.remove()
        tiny_llama.set_attn_implementation("sdpa")
    lengths = [len(e.ids) for e in group.episodes]
    # per context (teacher, then student): its prompt once, then one forward per batch of
    # siblings: padded, siblings of similar length; packed, all of them (within the budget)
    batches = [
        sum(lengths[i] for i in b) if packed else len(b) * max(lengths[i] for i in b)
        for b in forward_batches(lengths, 16_384, packed)
    ]
    if packed:
        assert len(batches) == 1
    assert seen == [len(teacher_prompt), *batches, len(group.prompt_ids), *batches]


@pytest.mark.parametrize("sampled", ["the group's prompt", "another task's prompt"])
def test_scoring_from_the_samplers_prompt_cache_is_exact_and_skips_its_tokens(tiny_llama, sampled):
    group = make_group(_episodes())
    teacher_prompt = CharPrompts().teacher_prompt_ids(group, "check the reservation first")
    sampler_prompt = group.prompt_ids if sampled == "the group's prompt" else encode("<sys")
    generator = HFGenerator(tiny_llama, end_id=0, pad_id=0)
    generator.generate([sampler_prompt + [5], sampler_prompt + [7]], [0, 1], GREEDY_ONE, seed=0)

    seen: list[int] = []
    hook = tiny_llama.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        config = ScoringConfig(top_k=8)
        args = (group.prompt_ids, teacher_prompt, group.episodes)
        plain = _score(TeacherScorer(tiny_llama, config), *args)
        seen.clear()
        kept = [layer.keys.clone() for layer in generator.cached_prefix(sampler_prompt)[1].layers]
        reused = _score(TeacherScorer(tiny_llama, config, generator), *args)
    finally:
        hook.remove()
    after = generator.cached_prefix(sampler_prompt)[1].layers
    assert all(torch.equal(a.keys, k) for a, k in zip(after, kept, strict=True))  # unwritten
    # each prompt encodes only the tokens the sampler did not (its last one always runs)
    cached = {
        len(p): common_prefix([sampler_prompt, p[:-1]]) for p in (teacher_prompt, group.prompt_ids)
    }
    assert seen[0] == len(teacher_prompt) - cached[len(teacher_prompt)]
    assert seen[len(seen) // 2] == len(group.prompt_ids) - cached[len(group.prompt_ids)]
    assert cached[len(group.prompt_ids)] == (
        len(group.prompt_ids) - 1 if sampled == "the group's prompt" else 4
    )
    for a, b in zip(plain, reused, strict=True):
        assert torch.equal(a.support_ids, b.support_ids)
        torch.testing.assert_close(a.student_logp, b.student_logp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.teacher_logp, b.teacher_logp, atol=1e-5, rtol=1e-5)


def test_a_prompt_cache_of_another_model_is_refused(tiny_llama):
    other = HFGenerator(torch.nn.Linear(1, 1), end_id=0, pad_id=0)
    with pytest.raises(ValueError, match="scoring model"):
        TeacherScorer(tiny_llama, ScoringConfig(), other)
