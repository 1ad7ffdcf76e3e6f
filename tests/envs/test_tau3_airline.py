"""tau3-airline specifics: data integrity, categories, truncation, budgets, users."""

import json
import shutil
from collections import Counter

import pytest

from envs.config import ConfigError
from envs.core import AgentAction, ToolCall
from envs.replay import replay
from envs.tau2_engine import DataIntegrityError, verify_sha256
from envs.tau3_airline.env import Tau3AirlineEnv
from envs.tau3_airline.tasks import FILES, data_dir, tau3_airline_domain
from envs.users import STOP, LLMUser


def test_split_sizes_and_categories_match_the_paper():
    domain = tau3_airline_domain()
    test = Counter(domain.category(i) for i in domain.split_ids("test"))
    train = Counter(domain.category(i) for i in domain.split_ids("train"))
    assert test == {"state_changing": 13, "information_only": 4, "transfer_only": 1, "no_action": 2}
    assert train == {"state_changing": 13, "information_only": 12, "no_action": 5}
    assert not set(domain.split_ids("test")) & set(domain.split_ids("train"))


def test_checksums_verify_and_a_changed_file_is_named(tmp_path):
    source = json.loads((data_dir() / "SOURCE.json").read_text())
    airline = data_dir() / "tau2" / "domains" / "airline"
    files = {airline / f: source["sha256"][f"tau2/domains/airline/{f}"] for f in FILES}
    verify_sha256(files, "package")  # the installed data are intact
    copy = tmp_path / "tasks.json"
    shutil.copy(airline / "tasks.json", copy)
    copy.write_text(copy.read_text().replace("reservation", "reservatiom", 1))
    with pytest.raises(DataIntegrityError, match="tasks.json"):
        verify_sha256({copy: files[airline / "tasks.json"]}, "copy")


def test_do_nothing_floor_on_test_split_is_7_of_20():
    env = Tau3AirlineEnv(split="test")
    results = list(replay(env, [t.task_id for t in env.tasks()], "do_nothing"))
    passed = Counter(r.category for r in results if r.reward == 1.0)
    assert passed == {"information_only": 4, "no_action": 2, "transfer_only": 1}


@pytest.mark.slow
def test_gold_replay_train_split():
    env = Tau3AirlineEnv(split="train")
    results = list(replay(env, [t.task_id for t in env.tasks()], "gold"))
    assert [r.task_id for r in results if r.reward != 1.0] == []


def test_observations_are_truncated_but_the_record_is_not():
    env = Tau3AirlineEnv(split="test", max_observation_chars=100)
    env.reset(options={"task_id": "8"})
    user_id = env.gold_actions("8")[0].tool_calls[0].arguments.get("user_id", "mia_li_3668")
    obs, *_ = env.step(
        AgentAction(tool_calls=(ToolCall("get_user_details", {"user_id": user_id}),))
    )
    (message,) = obs["messages"]
    assert len(message["content"]) < 150 and "[truncated" in message["content"]
    full = env.episode_record()["messages"][-1]["content"]
    assert len(full) > 100 and json.loads(full)["user_id"] == user_id


def test_turn_budget_truncates_with_zero_reward():
    env = Tau3AirlineEnv(split="test", max_turns=2)
    env.reset(options={"task_id": "2"})
    _, _, terminated, truncated, _ = env.step(AgentAction(content="Could you tell me more?"))
    assert not (terminated or truncated)
    _, reward, terminated, truncated, info = env.step(AgentAction(content="Anything else?"))
    assert truncated and not terminated and reward == 0.0
    assert info["termination_reason"] == "max_steps" and info["turns"] == 2


def test_agent_input_never_raises_nor_stalls_the_env():
    """Tool calls tau2 itself turns into errors, and an integer power its ``calculate``
    would evaluate forever (rejected before it runs): each an error observation, and the
    episode goes on."""
    env = Tau3AirlineEnv(split="test", max_steps=20)
    env.reset(options={"task_id": "8"})
    calls = [
        ToolCall("calculate", {"expression": "9**9**8"}),
        ToolCall("calculate", {"expression": "9 ** (9 ** 8)"}),
        ToolCall("get_user_details", {"user_id": None}),
        ToolCall("get_user_details", {"user_id": ["x"]}),
        ToolCall("book_reservation", {"flights": None}),
        ToolCall("calculate", {"expression": "1+" * 3_000 + "1"}),
        ToolCall("no_such_tool", {}),
    ]
    for call in calls:
        obs, _, terminated, truncated, _ = env.step(AgentAction(tool_calls=(call,)))
        assert obs["messages"][-1]["content"].startswith("Error") and not (terminated or truncated)
    obs, *_ = env.step(AgentAction(tool_calls=(ToolCall("calculate", {"expression": "2*3"}),)))
    assert obs["messages"][-1]["content"] == "6.0"


def test_step_budget_caps_tool_loops():
    env = Tau3AirlineEnv(split="test", max_steps=3)
    env.reset(options={"task_id": "2"})
    call = AgentAction(tool_calls=(ToolCall("list_all_airports", {}),))
    outcomes = [env.step(call)[3] for _ in range(3)]
    assert outcomes == [False, False, True]


def test_misuse_of_the_api_raises_clear_errors():
    env = Tau3AirlineEnv(split="test")
    with pytest.raises(ConfigError, match="unknown task_id") as error:
        env.reset(options={"task_id": "no-such-task"})
    assert len(str(error.value)) < 200  # not a list of every task id
    env.reset(options={"task_id": "2"})
    with pytest.raises(TypeError, match="AgentAction"):
        env.step("a raw string")
    env.step(AgentAction(content=STOP))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(AgentAction(content="hello"))
    with pytest.raises(ConfigError, match="no split"):
        Tau3AirlineEnv(split="dev")
    with pytest.raises(
        ConfigError, match=r"unknown option 'max_turn' \(did you mean 'max_turns'\?\)"
    ):
        Tau3AirlineEnv(max_turn=3)


class EchoBackend:
    """Stands in for an external chat model (the real ones need a network or a key)."""

    model = "echo-test"
    supports_temperature = True

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def complete(self, messages, *, temperature, seed):
        self.calls.append((messages, temperature, seed))
        return self.replies.pop(0)


def test_llm_user_gets_tau2_prompt_flipped_roles_and_is_recorded():
    backend = EchoBackend(["I want to cancel my trip.", f"Thanks. {STOP}"])
    env = Tau3AirlineEnv(split="test", user=LLMUser(backend, temperature=0.7))
    obs, info = env.reset(seed=5, options={"task_id": "2"})
    assert obs["messages"][1] == {"role": "user", "content": "I want to cancel my trip."}
    _, reward, terminated, _, info = env.step(AgentAction(content="Done, anything else."))
    assert terminated and info["termination_reason"] == "user_stop"
    system = backend.calls[0][0][0]
    assert system["role"] == "system" and "Instructions" in system["content"]
    # the simulated user speaks as "assistant" to its own model; the agent's text is "user"
    assert [m["role"] for m in backend.calls[1][0][1:]] == ["user", "assistant", "user"]
    assert backend.calls[1][0][-1]["content"] == "Done, anything else."
    assert {c[1] for c in backend.calls} == {0.7} and {c[2] for c in backend.calls} == {5}
    user = env.episode_record()["user"]
    assert (
        user["model"] == "echo-test"
        and user["temperature"] == 0.7
        and len(user["prompt_hash"]) == 16
    )
