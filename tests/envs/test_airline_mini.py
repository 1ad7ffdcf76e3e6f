"""airline-mini specifics: the generated task set, the tool subset, scoring, the floor."""

from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from envs.airline_mini.env import AirlineMiniConfig, AirlineMiniEnv
from envs.airline_mini.generator import CategoryCounts, GeneratorConfig, generate
from envs.airline_mini.policy import POLICY
from envs.airline_mini.tasks import (
    TASKSET_SHA256,
    airline_db,
    airline_mini_domain,
    airline_mini_taskset,
)
from envs.airline_mini.tools import TOOL_NAMES
from envs.config import ConfigError
from envs.core import AgentAction, ToolCall
from envs.replay import replay
from envs.tau2_engine import DataIntegrityError
from envs.users import STOP

CONFIG_FILE = Path(__file__).parents[2] / "configs" / "env" / "airline_mini.yaml"

# Test tasks named below; the recorded checksum pins them.
QUESTION_TASK = "240"  # the email of liam_taylor_6683
FORBIDDEN_TASK = "241"  # cancel PPFOZN, which the policy forbids
CANCEL_TASK = "242"  # cancel I6MKN8, which the policy allows


@pytest.fixture(scope="module")
def db():
    return airline_db()


def _user_of(task) -> str:
    return task.user_scenario.instructions.known_info.removeprefix("My user id is ").rstrip(".")


def test_category_counts_per_split():
    domain = airline_mini_domain()
    counts = {s: Counter(domain.category(i) for i in domain.split_ids(s)) for s in domain.splits}
    assert counts == {
        "train": {
            "state_changing": 96,
            "information_only": 72,
            "transfer_only": 36,
            "no_action": 36,
        },
        "test": {"state_changing": 24, "information_only": 18, "transfer_only": 9, "no_action": 9},
    }


def test_generator_is_deterministic_and_matches_the_recorded_checksum(db):
    assert generate(db).sha256() == generate(db).sha256() == TASKSET_SHA256
    assert generate(db, GeneratorConfig(seed=1)).sha256() != TASKSET_SHA256


def test_a_changed_task_set_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setattr("envs.airline_mini.tasks.TASKSET_SHA256", "0" * 64)
    with pytest.raises(DataIntegrityError, match="TASKSET_SHA256"):
        airline_mini_taskset.__wrapped__()  # past the cache, so the set is generated anew


def test_counts_the_db_cannot_fill_are_a_config_error(db):
    config = GeneratorConfig(test=CategoryCounts(500, 0, 0, 0))
    with pytest.raises(ConfigError, match="test split has no reservation left"):
        generate(db, config)


def test_splits_are_disjoint_down_to_users():
    domain = airline_mini_domain()
    train, test = (set(domain.split_ids(s)) for s in ("train", "test"))
    assert train and test and not train & test
    assert train | test == set(domain.tasks)
    users = {s: {_user_of(domain.tasks[i]) for i in domain.split_ids(s)} for s in domain.splits}
    assert not users["train"] & users["test"]


def test_communicate_values_can_be_matched():
    """tau2 strips commas from the agent's message only, and a one-character value is found
    in almost any message."""
    values = [
        v
        for task in airline_mini_domain().tasks.values()
        for v in task.evaluation_criteria.communicate_info
    ]
    assert values and all("," not in v and len(v) > 1 for v in values)


def test_only_the_four_tools_are_exposed():
    env = AirlineMiniEnv(split="test")
    obs, _ = env.reset(options={"task_id": CANCEL_TASK})
    assert [t["function"]["name"] for t in obs["tools"]] == list(TOOL_NAMES)
    assert sorted(env.domain.tool_types) == sorted(TOOL_NAMES)
    hidden = AgentAction(tool_calls=(ToolCall("list_all_airports", {}),))
    obs, _, terminated, _, info = env.step(hidden)
    assert "not found" in obs["messages"][0]["content"] and info["tool_errors"] == 1
    assert not terminated


def test_policy_is_short():
    # 236 SmolLM2 tokens when measured; English prose runs ~4 characters a token
    assert len(POLICY) <= 1200


def test_every_gold_tool_result_fits_the_observation_budget():
    """The agent sees each result the task needs whole (nothing it must read is cut)."""
    domain = airline_mini_domain()
    world = domain.build_environment()  # one world: no two tasks touch the same reservation
    budget = AirlineMiniConfig().max_observation_chars
    for task in domain.tasks.values():
        for action in task.evaluation_criteria.actions or []:
            result = world.to_json_str(world.make_tool_call(action.name, **action.arguments))
            assert len(result) <= budget, (task.id, action.name, len(result))


def test_env_defaults_are_the_small_budgets_and_the_yaml_matches_them():
    assert AirlineMiniEnv().config == AirlineMiniConfig()
    assert AirlineMiniEnv(max_turns=2).config.max_turns == 2
    yaml = OmegaConf.to_container(OmegaConf.load(CONFIG_FILE))
    assert yaml.pop("name") == "airline_mini"
    assert set(yaml) == {f.name for f in fields(AirlineMiniConfig)}
    assert AirlineMiniConfig(**yaml) == AirlineMiniConfig()


def test_scripted_user_states_the_request_and_user_id():
    env = AirlineMiniEnv(split="test")
    obs, _ = env.reset(options={"task_id": CANCEL_TASK})
    assert obs["messages"][1]["content"] == (
        "I want to cancel my reservation I6MKN8.\nMy user id is "
        + _user_of(env.domain.tasks[CANCEL_TASK])
        + "."
    )


def _play(task_id: str, actions: list[AgentAction]) -> tuple[float, dict]:
    env = AirlineMiniEnv(split="test")
    env.reset(options={"task_id": task_id})
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return reward, info
    raise AssertionError(f"task {task_id}: the actions did not end the episode")


def _call(name: str, **arguments) -> AgentAction:
    return AgentAction(tool_calls=(ToolCall(name, arguments),))


@pytest.mark.parametrize(
    ("task_id", "actions", "reward"),
    [
        # ask for confirmation first: the scripted user says yes, and the task still scores
        (
            CANCEL_TASK,
            [
                _call("get_reservation_details", reservation_id="I6MKN8"),
                AgentAction(content="Shall I cancel reservation I6MKN8?"),
                _call("cancel_reservation", reservation_id="I6MKN8"),
                AgentAction(content="Reservation I6MKN8 is cancelled."),
            ],
            1.0,
        ),
        (CANCEL_TASK, [AgentAction(content="Sorry, I cannot cancel it.")], 0.0),
        (
            FORBIDDEN_TASK,
            [
                _call("cancel_reservation", reservation_id="PPFOZN"),
                AgentAction(content="Done."),
            ],
            0.0,
        ),
        (FORBIDDEN_TASK, [AgentAction(content=f"The policy does not allow it. {STOP}")], 1.0),
        (
            QUESTION_TASK,
            [
                _call("get_user_details", user_id="liam_taylor_6683"),
                AgentAction(content="Your email is liam.taylor5916@example.com."),
            ],
            1.0,
        ),
        (QUESTION_TASK, [AgentAction(content="Your email is liam@example.com.")], 0.0),
    ],
    ids=[
        "confirm-then-cancel",
        "refuse-allowed-cancel",
        "cancel-forbidden",
        "refuse-forbidden",
        "answer-question",
        "wrong-answer",
    ],
)
def test_evaluator_scores_what_the_policy_asks(task_id, actions, reward):
    assert _play(task_id, actions)[0] == reward


def test_do_nothing_floor_on_test_split_is_0_30():
    env = AirlineMiniEnv(split="test")
    results = list(replay(env, [t.task_id for t in env.tasks()], "do_nothing"))
    passed = Counter(r.category for r in results if r.reward == 1.0)
    assert passed == {"transfer_only": 9, "no_action": 9}
    assert sum(r.reward for r in results) / len(results) == pytest.approx(0.30)


@pytest.mark.slow
def test_gold_replay_train_split():
    env = AirlineMiniEnv(split="train")
    results = list(replay(env, [t.task_id for t in env.tasks()], "gold"))
    assert len(results) == 240 and [r.task_id for r in results if r.reward != 1.0] == []


@pytest.mark.slow
def test_do_nothing_floor_on_train_split_is_0_30():
    env = AirlineMiniEnv(split="train")
    results = list(replay(env, [t.task_id for t in env.tasks()], "do_nothing"))
    passed = Counter(r.category for r in results if r.reward == 1.0)
    assert passed == {"transfer_only": 36, "no_action": 36}
