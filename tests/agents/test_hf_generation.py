"""The KV-cached HF generator is exact: the same tokens and log-probs as encoding every
context whole, log-probs equal to a teacher-forced forward, caches dropped when done."""

import pytest
import torch

from agents import hf_generation
from agents.cpu_attention import packs_rows
from agents.env_pool import EnvSpec, LocalEnvPool
from agents.generation import SamplingConfig
from agents.hf_generation import SPARE_COLUMNS, HFGenerator
from agents.model import ModelConfig, load_model
from agents.rollout import Policy, RolloutConfig, rollout_episodes
from learners.forward import token_logprobs

SPEC = EnvSpec({"name": "airline_mini", "split": "train", "max_steps": 4})


def _rollout(model, chat, kv_cache):
    """Two siblings of two airline_mini tasks, sampled: fresh episodes share the prompt."""
    generator = HFGenerator(model, chat.end_id, chat.tokenizer.pad_token_id, kv_cache)
    tasks = [t.task_id for t in SPEC.build().tasks()][:2]
    jobs = [(t, 10 * j + k) for j, t in enumerate(tasks) for k in range(2)]
    config = RolloutConfig(n=2, sampling=SamplingConfig(temperature=1.0, max_new_tokens=12))
    pool = LocalEnvPool(SPEC, len(jobs))
    episodes = rollout_episodes(pool, Policy(chat, generator), jobs, config, seed=3)
    pool.close()
    return episodes, generator


def _turns(generator, sampling, turns=4):
    """A multi-turn rollout without an env: each turn appends the reply, the end token when
    cut, and an observation whose length depends on the slot; slot 1 ends after turn 2, so
    the batch changes shape. Returns (per-slot ids, per-slot log-probs, calls)."""
    ids = {0: list(range(300, 360)), 1: list(range(300, 352)), 2: list(range(300, 345)) + [9]}
    logprobs = {s: [0.0] * len(c) for s, c in ids.items()}
    calls = []
    for turn in range(turns):
        slots = sorted(ids if turn < 2 else set(ids) - {1})
        contexts = [list(ids[s]) for s in slots]
        outputs = generator.generate(contexts, slots, sampling, seed=turn)
        calls.append((contexts, outputs))
        for slot, out in zip(slots, outputs, strict=True):
            closing = [] if out.finished else [generator.end_id]
            observation = list(range(400 + slot, 400 + slot + 5 + 3 * slot))
            ids[slot] += out.ids + closing + observation
            logprobs[slot] += out.logprobs + [0.0] * (len(closing) + len(observation))
        if turn == 1:
            generator.release([1])
    generator.release(sorted(ids))
    return ids, logprobs, calls


def _generator(model, chat, kv_cache=True):
    return HFGenerator(model, chat.end_id, chat.tokenizer.pad_token_id, kv_cache)


@pytest.fixture(scope="module")
def sampled(tiny, chat):
    model, _ = tiny
    return {kv: _rollout(model, chat, kv) for kv in (True, False)}


def test_cached_rollout_equals_reencoding(sampled):
    (cached, _), (plain, _) = sampled[True], sampled[False]
    assert len({tuple(e.ids) for e in cached}) == len(cached), "siblings must differ"
    for a, b in zip(cached, plain, strict=True):
        assert a.ids == b.ids and a.response_mask == b.response_mask
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_cached_turns_equal_reencoding(tiny, chat, temperature):
    model, _ = tiny
    sampling = SamplingConfig(temperature=temperature, top_p=0.9, max_new_tokens=8)
    ids, logprobs, calls = _turns(_generator(model, chat), sampling)
    plain_ids, plain_logprobs, _ = _turns(_generator(model, chat, kv_cache=False), sampling)
    assert len(calls) == 4 and ids == plain_ids
    for slot in ids:
        a, b = torch.tensor(logprobs[slot]), torch.tensor(plain_logprobs[slot])
        assert torch.allclose(a, b, atol=1e-4)


def _assert_logprobs_match_a_forward(model, ids, logprobs):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]  # (T-1, V)
    full = token_logprobs(logits, ids[1:])  # (T-1,)
    recorded = torch.tensor(logprobs[1:])
    generated = recorded != 0
    assert generated.sum() > 0
    assert torch.allclose(full[generated], recorded[generated], atol=1e-4)


def test_prefill_split_by_the_token_budget_stays_exact(tiny, chat, monkeypatch):
    """A budget below any row's context: each row's prefill is a forward of its own."""
    model, _ = tiny
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=8)
    monkeypatch.setattr(hf_generation, "PREFILL_TOKENS", 1)
    ids, logprobs, _ = _turns(_generator(model, chat), sampling)
    monkeypatch.undo()
    plain_ids, plain_logprobs, _ = _turns(_generator(model, chat, kv_cache=False), sampling)
    assert ids == plain_ids
    for slot in ids:
        a, b = torch.tensor(logprobs[slot]), torch.tensor(plain_logprobs[slot])
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_packed_prefill_equals_the_padded_layout(tiny, chat, monkeypatch, kv_cache):
    """On CPU the prefill packs rows one after another, each after its own cache (or none:
    ``kv_cache=False``); the same weights under transformers' SDPA take the right-padded
    layout a GPU runs. Same tokens, log-probs equal to fp32 rounding."""
    model, _ = tiny
    padded_model, _ = load_model(ModelConfig(name="tiny-random", dtype="float32"))
    padded_model.set_attn_implementation("sdpa")
    assert packs_rows(model) and not packs_rows(padded_model)
    layouts = []
    for name in ("_encode_packed", "_encode_padded"):
        encode = getattr(HFGenerator, name)

        def spy(self, rows, encode=encode, name=name):
            layouts.append(name)
            return encode(self, rows)

        monkeypatch.setattr(HFGenerator, name, spy)
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=8)
    ids, logprobs, _ = _turns(_generator(model, chat, kv_cache), sampling)
    assert set(layouts) == {"_encode_packed"}
    layouts.clear()
    padded_ids, padded_logprobs, _ = _turns(_generator(padded_model, chat, kv_cache), sampling)
    assert set(layouts) == {"_encode_padded"}
    assert ids == padded_ids
    for slot in ids:
        a, b = torch.tensor(logprobs[slot]), torch.tensor(padded_logprobs[slot])
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_recorded_logprobs_equal_a_teacher_forced_forward(sampled, tiny, chat):
    model, _ = tiny
    for episode in sampled[True][0]:
        _assert_logprobs_match_a_forward(model, episode.ids, episode.logprobs)
    ids, logprobs, _ = _turns(_generator(model, chat), SamplingConfig(max_new_tokens=8))
    for slot in ids:
        _assert_logprobs_match_a_forward(model, ids[slot], logprobs[slot])


def test_replies_longer_than_the_spare_columns_stay_exact(tiny, chat):
    """A reply past the batch cache's spare columns grows its buffer in the middle of a
    call (and of a batch whose rows end at different steps)."""
    model, _ = tiny
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=SPARE_COLUMNS + 20)
    ids, logprobs, _ = _turns(_generator(model, chat), sampling, turns=2)
    for slot in ids:
        assert sum(lp != 0 for lp in logprobs[slot]) > SPARE_COLUMNS
        _assert_logprobs_match_a_forward(model, ids[slot], logprobs[slot])


def _assert_greedy_equals_generate(model, chat, calls, max_new_tokens):
    for contexts, outputs in calls:
        for context, out in zip(contexts, outputs, strict=True):
            reference = model.generate(
                input_ids=torch.tensor([context]),
                attention_mask=torch.ones(1, len(context), dtype=torch.long),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=chat.end_id,
                pad_token_id=chat.tokenizer.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
            ids = reference.sequences[0, len(context) :].tolist()
            assert out.ids == ids
            logits = torch.stack(reference.logits, dim=1)[0].float()  # (N, V)
            expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids)[:, None])
            assert torch.allclose(torch.tensor(out.logprobs), expected[:, 0], atol=1e-4)


def test_greedy_turns_equal_transformers_generate(tiny, chat):
    model, _ = tiny
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=8)
    _, _, calls = _turns(_generator(model, chat), sampling)
    _assert_greedy_equals_generate(model, chat, calls, 8)


def test_smollm2_greedy_turns_equal_transformers_generate(chat):
    """The real model in fp32: cached turns equal ``model.generate`` and a teacher-forced
    forward."""
    model, _ = load_model(ModelConfig(name="smollm2", dtype="float32"))
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=6)
    ids, logprobs, calls = _turns(_generator(model, chat), sampling, turns=3)
    _assert_greedy_equals_generate(model, chat, calls, 6)
    for slot in ids:
        _assert_logprobs_match_a_forward(model, ids[slot], logprobs[slot])


def test_an_episode_samples_the_same_alone_or_in_a_batch(tiny, chat):
    model, tokenizer = tiny
    gen = HFGenerator(model, chat.end_id, tokenizer.pad_token_id)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=10)
    a, b = [list(range(300, 340)), list(range(300, 330)) + [7, 8, 9]]
    batched = gen.generate([a, b], [0, 1], sampling, seed=5)
    gen.release([0, 1])
    alone = gen.generate([b], [1], sampling, seed=5)
    assert alone[0].ids == batched[1].ids
    assert batched[0].ids != batched[1].ids


def test_caches_are_dropped_when_episodes_end_and_weights_change(sampled, tiny, chat):
    _, gen = sampled[True]
    assert gen._caches == {}  # every episode ended: nothing kept
    model, tokenizer = tiny
    fresh = HFGenerator(model, chat.end_id, tokenizer.pad_token_id)
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=4)
    fresh.generate([list(range(300, 340))], [0], sampling, seed=0)
    assert set(fresh._caches) == {0} and fresh._prompt.ids
    fresh.sync_weights(model)
    assert fresh._caches == {} and fresh._prompt.ids == []


def test_a_slot_reused_by_another_context_is_encoded_afresh(tiny, chat):
    model, tokenizer = tiny
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=6)
    first, other = list(range(300, 340)), list(range(500, 560))
    reused = HFGenerator(model, chat.end_id, tokenizer.pad_token_id)
    reused.generate([first], [0], sampling, seed=0)  # slot 0 now caches `first`
    new = HFGenerator(model, chat.end_id, tokenizer.pad_token_id)
    expected = new.generate([other], [0], sampling, seed=0)
    assert reused.generate([other], [0], sampling, seed=0) == expected


def test_a_prompt_shared_with_the_previous_call_is_reused_exactly(tiny, chat):
    """The second call shares 40 tokens with the first call's prompt: they are sliced from
    it, one more shared token is encoded, and the outputs equal re-encoding."""
    model, _ = tiny
    generator = _generator(model, chat)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=8)
    calls = [
        [list(range(300, 360)), list(range(300, 350)) + [7]],
        [list(range(300, 340)) + [8, 9], list(range(300, 340)) + [8, 10]],
    ]
    for contexts in calls:
        outputs = generator.generate(contexts, [0, 1], sampling, seed=1)
        generator.release([0, 1])
        expected = _generator(model, chat, kv_cache=False).generate(
            contexts, [0, 1], sampling, seed=1
        )
        for out, ref in zip(outputs, expected, strict=True):
            assert out.ids == ref.ids
            torch.testing.assert_close(out.logprobs, ref.logprobs, atol=1e-5, rtol=1e-5)
    assert generator._prompt.ids == calls[1][0][:41]
