"""Agent input never raises out of an env or the action parser, and never hangs them
(the contract in envs/core.py): property-based fuzzing over tool names, argument shapes
and types, None, huge and deeply nested values, unicode, empty and text-only messages,
and raw model text through ``parse_action``, on every env. ``make test`` runs a few
hundred actions per env; ``make test-slow`` over a thousand.

Stepping a finished episode stays API misuse (``RuntimeError``, as the contract says): a
rollout never does it, so the fuzzer resets when an episode ends."""

import json
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.tool_format import OPEN, parse_action
from envs.appworld.world import synthetic_world
from envs.core import AgentAction, ToolCall
from envs.factory import make_env

# a step that takes longer is a hang (the slowest real step here: an AppWorld cell, < 2 s)
STEP_LIMIT_S = 30

ENVS = {
    "airline_mini": lambda: {"name": "airline_mini", "split": "train"},
    "tau3_airline": lambda: {"name": "tau3_airline", "split": "train"},
    "tau2_retail": lambda: {"name": "tau2_retail", "split": "train"},
    "appworld": lambda: {
        "name": "appworld",
        "split": "test_normal",
        "data_root": str(synthetic_world()),
        "execution_timeout_s": 2,
    },
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet="0123456789+-*/(). ", max_size=40),  # calculate's alphabet
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
nested = st.integers(min_value=1, max_value=5_000).map(lambda n: "[" * n + "]" * n)


def tool_calls(names: list[str]):
    name = st.sampled_from(names) | st.text(max_size=20)
    keys = st.sampled_from(["user_id", "reservation_id", "expression", "flights", "id"])
    arguments = st.dictionaries(keys | st.text(max_size=10), json_values | nested, max_size=5)
    return st.builds(ToolCall, name=name, arguments=arguments)


def actions(names: list[str]):
    text = st.text(max_size=300) | st.sampled_from(["", " ", "###STOP###", "\u202e\u0000"])
    return st.builds(
        AgentAction,
        content=text | nested,
        tool_calls=st.lists(tool_calls(names), max_size=3).map(tuple),
        malformed=st.lists(st.text(max_size=50) | nested, max_size=2).map(tuple),
    )


def model_text(names: list[str]):
    """What a model might write: text around tool-call blocks, closed or not, whose JSON
    is valid, broken, deeply nested or not JSON at all."""
    block = st.one_of(
        st.sampled_from(names).map(lambda n: json.dumps({"name": n, "arguments": {}})),
        nested,
        st.text(max_size=60),
    ).map(lambda body: f"{OPEN}{body}</tool_call>")
    unclosed = nested.map(lambda body: OPEN + body)
    return st.lists(st.text(max_size=80) | block | unclosed, max_size=4).map("".join)


class _Hang(Exception):
    pass


def _bounded_step(env, action):
    def timeout(*_):
        raise _Hang(f"env.step did not return within {STEP_LIMIT_S} s: {action!r:.300}")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(STEP_LIMIT_S)
    try:
        return env.step(action)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _fuzz(env_name: str, examples: int) -> None:
    env = make_env(ENVS[env_name]())
    names = [
        t["function"]["name"] if "function" in t else t.get("name", "")
        for t in env.reset(seed=0)[0]["tools"]
    ]
    task_ids = [t.task_id for t in env.tasks()][:5]
    state = {"done": True}

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(
        task=st.sampled_from(task_ids),
        steps=st.lists(actions(names) | model_text(names), min_size=1, max_size=3),
    )
    def run(task, steps):
        if state["done"]:
            env.reset(seed=0, options={"task_id": task})
        for step in steps:
            action = parse_action(step) if isinstance(step, str) else step
            obs, reward, terminated, truncated, info = _bounded_step(env, action)
            assert isinstance(obs["messages"], list) and isinstance(reward, float)
            state["done"] = terminated or truncated
            if state["done"]:
                assert info["termination_reason"]
                break

    try:
        run()
        # still usable: a whole gold episode right after the fuzzing
        env.reset(seed=0, options={"task_id": task_ids[0]})
        for action in env.gold_actions(task_ids[0]):
            *_, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    finally:
        env.close()


@pytest.mark.parametrize("env_name", list(ENVS))
def test_fuzzed_actions_never_raise_or_hang(env_name):
    _fuzz(env_name, examples=100)


@pytest.mark.slow
@pytest.mark.parametrize("env_name", list(ENVS))
def test_fuzzed_actions_never_raise_or_hang_long(env_name):
    _fuzz(env_name, examples=600)
