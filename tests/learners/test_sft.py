"""SFT data from gold replays and a teacher backend; the SFT learner on a real (tiny) model."""

import pytest

from agents.chat import make_chat_backend
from agents.env_pool import EnvSpec, LocalEnvPool
from agents.trajectories import gold_replay_records, teacher_records
from envs.config import ConfigError, check_not_held_out
from learners.sft import SFTConfig, nll, train_sft

SPEC = EnvSpec({"name": "airline_mini", "split": "train"})
TRAIN_TASKS = ["0", "1", "5", "6", "9", "10"]  # every category
APPWORLD_TEST = ("test_normal", "test_challenge")


@pytest.fixture(scope="module")
def gold(tiny_chat):
    env = SPEC.build()
    pool = LocalEnvPool(SPEC, 3)
    return gold_replay_records(pool, tiny_chat, TRAIN_TASKS, env.gold_actions)


def test_gold_records_are_successful_train_episodes_only(gold):
    groups, report = gold
    assert (report.kept, report.discarded) == (len(TRAIN_TASKS), 0)
    assert [g.task_id for g in groups] == TRAIN_TASKS
    assert all(e.reward == 1.0 and sum(e.response_mask) > 0 for g in groups for e in g.episodes)
    test_ids = {
        t.task_id for t in EnvSpec({"name": "airline_mini", "split": "test"}).build().tasks()
    }
    assert not test_ids & {g.task_id for g in groups}


@pytest.mark.parametrize(
    "split, test_splits",
    [("test", ("test",)), ("base", ("test", "base")), ("test_challenge", APPWORLD_TEST)],
)
def test_held_out_splits_are_refused(split, test_splits):
    with pytest.raises(ConfigError, match=f"held-out '{split}' split"):
        check_not_held_out(split, test_splits, "SFT data")
    check_not_held_out("train", test_splits, "SFT data")


def test_teacher_records_keep_only_successes(tiny_chat):
    """A real local model as the teacher (offline stand-in for the Anthropic teacher):
    it cannot solve the tasks, so only do-nothing-floor tasks may be kept."""
    backend = make_chat_backend({"kind": "local", "model": "tiny-random", "max_tokens": 6})
    pool = LocalEnvPool(SPEC, 4)
    groups, report = teacher_records(pool, tiny_chat, backend, ["1", "5"], 2, 0, 0.0)
    assert report.kept + report.discarded == 4
    kept = [e for g in groups for e in g.episodes]
    assert len(kept) == report.kept and all(e.success for e in kept)
    assert backend.usage.calls >= 4


def test_sft_lowers_the_loss_on_its_records(gold, tiny_fresh):
    groups, _ = gold
    model, _ = tiny_fresh
    config = SFTConfig(steps=8, batch_episodes=3, lr=3e-3, autocast="float32", max_tokens=1024)
    before = [nll(model, g.prompt_ids, g.episodes[0], config).item() for g in groups]
    history = train_sft(model, groups, config)
    after = [nll(model, g.prompt_ids, g.episodes[0], config).item() for g in groups]
    assert len(history) == 8 and all("loss/sft" in h for h in history)
    assert sum(after) < 0.8 * sum(before)
