"""Token-in/token-out rollouts: masks, prefixes, batching, Ray, records."""

import ipaddress
import json
import subprocess
import sys

import pytest

from agents.env_pool import EnvSpec, LocalEnvPool
from agents.episode import load_groups, save_groups
from agents.generation import Generated, SamplingConfig, ScriptedGenerator
from agents.rollout import Policy, RolloutConfig, rollout_groups
from agents.tool_format import format_action
from envs.config import ConfigError

SPEC = EnvSpec({"name": "tau3_airline", "split": "test"})
TASK = "8"  # a state-changing test task with several tool calls


class Recording:
    """Wraps a generator and keeps every context it was asked to continue."""

    def __init__(self, inner):
        self.inner, self.contexts, self.outputs = inner, [], []

    def generate(self, contexts, slots, sampling, seed):
        out = self.inner.generate(contexts, slots, sampling, seed)
        self.contexts += [list(c) for c in contexts]
        self.outputs += out
        return out

    def release(self, slots):
        self.inner.release(slots)


@pytest.fixture(scope="module")
def gold_group(chat):
    pool = LocalEnvPool(SPEC, 1)
    texts = [format_action(a) for a in pool.workers[0].env.gold_actions(TASK)]
    gen = Recording(ScriptedGenerator(chat.render_sft_target, {0: texts}))
    (group,) = rollout_groups(pool, Policy(chat, gen), [TASK], 0, RolloutConfig(n=1))
    return group, gen, texts


def test_gold_replay_through_the_rollout_scores_one(gold_group):
    group, _, texts = gold_group
    (episode,) = group.episodes
    assert episode.reward == 1.0 and episode.termination_reason == "user_stop"
    assert len(episode.assistant_turns()) == len(texts)
    assert episode.tool_calls == [n for t in episode.assistant_turns() for n in t.tool_calls]


def test_response_mask_is_exactly_the_generated_tokens(gold_group, chat):
    group, gen, texts = gold_group
    (episode,) = group.episodes
    generated = [i for i, m in zip(episode.ids, episode.response_mask, strict=False) if m]
    assert generated == [i for out in gen.outputs for i in out.ids]
    for turn, text in zip(episode.assistant_turns(), texts, strict=True):
        span = episode.ids[turn.start : turn.end]
        assert all(episode.response_mask[turn.start : turn.end])
        assert chat.tokenizer.decode(span, skip_special_tokens=True) == text
    observation_turns = [t for t in episode.turns if t.role != "assistant"]
    assert observation_turns and all(
        not any(episode.response_mask[t.start : t.end]) for t in observation_turns
    )
    tool_turn = chat.markers.headers["tool"]
    assert tool_turn in chat.tokenizer.decode(episode.ids[observation_turns[0].start :])


def test_every_context_is_a_prefix_of_the_final_sequence(gold_group):
    group, gen, _ = gold_group
    full = group.prompt_ids + group.episodes[0].ids
    assert len(gen.contexts) == len(group.episodes[0].assistant_turns())
    for context in gen.contexts:
        assert full[: len(context)] == context


def test_sampled_ids_are_kept_even_when_text_would_tokenize_differently(chat):
    """A model may sample a non-canonical tokenisation; re-tokenising its text would
    silently change the ids. The episode must keep the sampled ids."""
    odd = [chat.tokenizer.convert_tokens_to_ids(c) for c in "Sorry."] + [chat.end_id]
    assert odd[:-1] != chat.tokenizer("Sorry.", add_special_tokens=False).input_ids

    class OddTokens:
        def generate(self, contexts, slots, sampling, seed):
            return [Generated(list(odd), [-1.0] * len(odd), True) for _ in contexts]

        def release(self, slots):
            pass

    pool = LocalEnvPool(SPEC, 1)
    (group,) = rollout_groups(pool, Policy(chat, OddTokens()), ["2"], 0, RolloutConfig(n=1))
    (episode,) = group.episodes
    turn = episode.assistant_turns()[0]
    assert episode.ids[turn.start : turn.end] == odd
    assert episode.logprobs[turn.start : turn.end] == [-1.0] * len(odd)


def test_batched_and_sequential_greedy_generation_agree(tiny_policy, chat):
    contexts = [
        chat.tokenizer("Hello, how are you?", add_special_tokens=False).input_ids,
        chat.tokenizer(
            "A much longer context that needs left padding in a batch.", add_special_tokens=False
        ).input_ids,
        chat.tokenizer("Short", add_special_tokens=False).input_ids,
    ]
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=12)
    gen = tiny_policy.generator
    batched = gen.generate(contexts, [0, 1, 2], greedy, seed=0)
    single = [gen.generate([c], [k], greedy, seed=0)[0] for k, c in enumerate(contexts)]
    assert [b.ids for b in batched] == [s.ids for s in single]
    for b, s in zip(batched, single, strict=True):
        assert b.logprobs == pytest.approx(s.logprobs, abs=1e-4)


def test_sampled_group_shares_one_prompt_and_round_trips_to_disk(tiny_policy, tmp_path):
    pool = LocalEnvPool(SPEC, 3)
    config = RolloutConfig(n=3, sampling=SamplingConfig(temperature=1.0, max_new_tokens=8))
    (group,) = rollout_groups(pool, tiny_policy, ["2"], 11, config)
    assert len(group.episodes) == 3 and group.prompt_ids
    assert len({tuple(e.ids) for e in group.episodes}) > 1  # siblings differ after the prompt
    for e in group.episodes:
        assert e.response_mask[0] == 1  # the shared prompt ends where generation begins
        assert all(lp <= 0 for lp, m in zip(e.logprobs, e.response_mask, strict=False) if m)
    save_groups([group], tmp_path / "groups.jsonl")
    (loaded,) = load_groups(tmp_path / "groups.jsonl")
    assert loaded == group
    again = rollout_groups(pool, tiny_policy, ["2"], 11, config)[0]
    assert [e.ids for e in again.episodes] == [e.ids for e in group.episodes]


def test_ray_rollout_equals_local_rollout_with_more_actors_than_cpus(tiny_policy):
    from agents.env_pool import RayEnvPool
    from agents.ray_runtime import RayConfig, init_ray

    init_ray(RayConfig(num_cpus=2))
    import ray

    try:
        config = RolloutConfig(n=8, sampling=SamplingConfig(temperature=1.0, max_new_tokens=8))
        local = rollout_groups(LocalEnvPool(SPEC, 8), tiny_policy, ["8"], 5, config)
        pool = RayEnvPool(SPEC, 8, num_cpus_per_worker=1)  # 8 actors, 2 CPUs: shares of 0.25
        remote = rollout_groups(pool, tiny_policy, ["8"], 5, config)
        pool.close()
    finally:
        ray.shutdown()
    assert remote == local


@pytest.mark.parametrize(
    "cpus, actors, wanted, share", [(2, 8, 1.0, 0.25), (16, 4, 1.0, 1.0), (6, 4, 2.0, 1)]
)
def test_env_actors_share_the_cpus_there_are(cpus, actors, wanted, share):
    from agents.env_pool import actor_cpus

    assert actor_cpus({"CPU": cpus}, actors, wanted) == share


def test_a_cluster_without_cpus_is_a_config_error():
    from agents.env_pool import actor_cpus

    with pytest.raises(ConfigError, match="no CPUs"):
        actor_cpus({}, 2, 1.0)


# run in a fresh interpreter: Ray reads its bind setting when first imported
_LISTENING = """
import ipaddress, json, pathlib, ray
from agents.ray_runtime import RayConfig, init_ray

def listening():
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found.add(fields[1].rsplit(":", 1)[0])
    return found

before = listening()
init_ray(RayConfig(num_cpus=1))
new = listening() - before
ray.shutdown()
print(json.dumps(sorted(new)))
"""


def _address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host byte order)."""
    raw = b"".join(
        int(hex_ip[i : i + 8], 16).to_bytes(4, "little") for i in range(0, len(hex_ip), 8)
    )
    address = ipaddress.ip_address(raw)
    return getattr(address, "ipv4_mapped", None) or address


def test_a_local_ray_listens_on_loopback_only():
    out = subprocess.run(
        [sys.executable, "-c", _LISTENING], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    new = [_address(a) for a in json.loads(out.stdout.strip().splitlines()[-1])]
    assert new  # Ray's servers were seen listening
    assert all(a.is_loopback for a in new), new


def test_each_group_is_handed_over_as_soon_as_its_siblings_end(chat):
    """A task whose siblings give up at once is reported while the other task's gold
    replays still run; the groups handed over are the ones returned."""
    spec = EnvSpec({"name": "airline_mini", "split": "train"})
    pool = LocalEnvPool(spec, 4)
    gold = [format_action(a) for a in pool.workers[0].env.gold_actions("6")]
    scripts = {0: ["Sorry."], 1: ["Sorry, no."], 2: gold, 3: gold}
    policy = Policy(chat, ScriptedGenerator(chat.render_sft_target, scripts))
    events = []
    groups = rollout_groups(
        pool,
        policy,
        ["6", "6"],
        0,
        RolloutConfig(n=2),
        on_step=lambda finished: events.append(("step", finished)),
        on_group=lambda j, group: events.append(("group", j, group)),
    )
    handed = [e for e in events if e[0] == "group"]
    assert [j for _, j, _ in handed] == [0, 1]
    assert all(group is groups[j] for _, j, group in handed)
    assert groups[0].rewards == [0.0, 0.0] and groups[1].rewards == [1.0, 1.0]
    steps = [e for e in events if e[0] == "step"]
    assert len(steps) == len(gold) > 1
    assert events.index(handed[0]) < events.index(steps[0])  # after the first env step
    assert events.index(handed[1]) > events.index(steps[-2])
