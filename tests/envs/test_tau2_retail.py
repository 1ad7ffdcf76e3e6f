"""tau2-retail specifics: data integrity, splits and categories, budgets, floor, replay."""

import shutil
from collections import Counter

import pytest

from envs.replay import replay
from envs.tau2_engine import DataIntegrityError, verify_sha256
from envs.tau2_retail.env import Tau2RetailEnv
from envs.tau2_retail.tasks import FILE_SHA256, tau2_retail_domain

# Tasks a do-nothing agent passes: no DB change is the right outcome and nothing must be
# said. 12 and 105 count as state-changing (their gold set holds a WRITE call) but that
# call fails in the gold run (wrong refund method; gift card too small), so the DB ends as
# it began.
DO_NOTHING_PASSES = {
    "test": {"12": "state_changing", "65": "information_only"},
    "train": {
        "10": "transfer_only",
        "25": "information_only",
        "50": "transfer_only",
        "57": "no_action",
        "105": "state_changing",
    },
}


def test_split_sizes_and_categories():
    domain = tau2_retail_domain()
    test = Counter(domain.category(i) for i in domain.split_ids("test"))
    train = Counter(domain.category(i) for i in domain.split_ids("train"))
    assert test == {"state_changing": 37, "information_only": 3}
    assert train == {
        "state_changing": 68,
        "information_only": 2,
        "transfer_only": 2,
        "no_action": 2,
    }
    assert not set(domain.split_ids("test")) & set(domain.split_ids("train"))
    assert sorted(domain.split_ids("base"), key=int) == sorted(domain.tasks, key=int)


def test_checksums_verify_and_a_changed_file_is_named(tmp_path):
    from tau2.domains.retail.utils import RETAIL_DATA_DIR

    verify_sha256({RETAIL_DATA_DIR / f: h for f, h in FILE_SHA256.items()}, "package")
    copy = tmp_path / "tasks.json"
    shutil.copy(RETAIL_DATA_DIR / "tasks.json", copy)
    copy.write_text(copy.read_text().replace("order", "ordr", 1))
    with pytest.raises(DataIntegrityError, match="tasks.json"):
        verify_sha256({copy: FILE_SHA256["tasks.json"]}, "copy")


def test_no_task_needs_an_llm_judge_or_user_tools():
    for task_id, task in tau2_retail_domain().tasks.items():
        criteria = task.evaluation_criteria
        basis = {b.value for b in criteria.reward_basis}
        assert basis == {"DB", "COMMUNICATE"}, f"task {task_id}: reward basis {basis}"
        assert all(a.requestor == "assistant" for a in criteria.actions or []), task_id


def test_gold_tool_results_fit_the_observation_budget():
    env = Tau2RetailEnv(split="test")
    env.reset(options={"task_id": "5"})
    seen = []
    for action in env.gold_actions("5"):
        obs, *_ = env.step(action)
        seen += [m["content"] for m in obs["messages"] if m["role"] == "tool"]
    assert len(seen) > 3 and not any("[truncated" in text for text in seen)


def test_a_failed_gold_write_leaves_a_do_nothing_pass():
    env = Tau2RetailEnv(split="test")
    (result,) = replay(env, ["12"], "do_nothing")
    assert result.category == "state_changing" and result.reward == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "train"])
def test_do_nothing_floor(split):
    env = Tau2RetailEnv(split=split)
    results = replay(env, [t.task_id for t in env.tasks()], "do_nothing")
    assert {r.task_id: r.category for r in results if r.reward == 1.0} == DO_NOTHING_PASSES[split]


@pytest.mark.slow
def test_gold_replay_train_split():
    env = Tau2RetailEnv(split="train")
    results = list(replay(env, [t.task_id for t in env.tasks()], "gold"))
    assert [r.task_id for r in results if r.reward != 1.0] == []
