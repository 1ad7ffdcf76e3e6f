"""The fast scorer (envs.tau2_scoring) against tau2's evaluate_simulation: the same
RewardInfo, field for field, and the same episode info, on gold, do-nothing and perturbed
trajectories of every tau2-backed env."""

from collections.abc import Callable

import pytest

from envs.core import AgentAction, ToolCall
from envs.factory import make_env
from envs.tau2_scoring import score_episode, summary, tau2_evaluate
from envs.tau_env import TauEnv
from envs.users import STOP

ENVS = ("tau3_airline", "tau2_retail", "airline_mini")
Script = Callable[[TauEnv, str], list[AgentAction]]


def _calls(env: TauEnv, task_id: str) -> list[AgentAction]:
    return [a for a in env.gold_actions(task_id) if a.is_tool_use]


def _closing(env: TauEnv, task_id: str) -> AgentAction:
    return env.gold_actions(task_id)[-1]


def _wrong_args(env: TauEnv, task_id: str) -> list[AgentAction]:
    """The gold script with a typo in the first string argument of its last tool call."""
    calls = _calls(env, task_id)
    if calls:
        (last,) = calls[-1].tool_calls
        key = next((k for k, v in last.arguments.items() if isinstance(v, str)), None)
        if key is not None:
            arguments = {**last.arguments, key: last.arguments[key] + "X"}
            calls[-1] = AgentAction(tool_calls=(ToolCall(last.name, arguments, last.id),))
    return [*calls, _closing(env, task_id)]


def _partial_then_agent_stop(env: TauEnv, task_id: str) -> list[AgentAction]:
    """The first half of the gold calls, then the closing message with the stop token."""
    calls = _calls(env, task_id)
    return [
        *calls[: len(calls) // 2],
        AgentAction(content=f"{_closing(env, task_id).content} {STOP}"),
    ]


def _reversed(env: TauEnv, task_id: str) -> list[AgentAction]:
    return [*_calls(env, task_id)[::-1], _closing(env, task_id)]


SCRIPTS: dict[str, Script] = {
    "gold": lambda env, task_id: env.gold_actions(task_id),
    "do_nothing": lambda env, task_id: [AgentAction(content="Sorry.")],
    "wrong_args": _wrong_args,
    "partial": _partial_then_agent_stop,
    "reversed": _reversed,
    # one turn allowed: the user confirms the question and the budget truncates the episode
    "truncated": lambda env, task_id: [AgentAction(content="Could you tell me more?")],
}


def _env(name: str, script: str) -> TauEnv:
    budget = {"max_turns": 1} if script == "truncated" else {"max_steps": 10**6}
    return make_env({"name": name, **budget})


def _check(env: TauEnv, task_id: str, script: str) -> float:
    """Play ``script`` on ``task_id``; assert that the env's reward and info, and the fast
    scorer's whole RewardInfo, equal tau2's. Returns the reward."""
    from tau2.data_model.simulation import TerminationReason

    env.reset(seed=0, options={"task_id": task_id})
    for action in SCRIPTS[script](env, task_id):
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    else:
        raise AssertionError(f"{script} did not end the episode of task {task_id}")
    termination = TerminationReason(info["termination_reason"])
    task = env.domain.tasks[task_id]
    expected = tau2_evaluate(env.domain, task, env._trajectory, termination)
    fast = score_episode(env.domain, task_id, env._current_world(), env._trajectory, termination)
    where = f"{env.domain.name} task {task_id}, {script}"
    assert fast.model_dump() == expected.model_dump(), where
    assert reward == expected.reward, where
    assert {k: info[k] for k in summary(expected)} == summary(expected), where
    return reward


def _sample(env: TauEnv) -> list[str]:
    """The first state-changing task and the first task of another category."""
    by_category = {}
    for task_id in sorted(env.domain.tasks, key=lambda t: (len(t), t)):
        by_category.setdefault(env.domain.category(task_id), task_id)
    other = next(t for c, t in by_category.items() if c != "state_changing")
    return [by_category["state_changing"], other]


@pytest.mark.parametrize("name", ENVS)
def test_fast_scores_equal_tau2_on_a_sample(name):
    """Every script on a state-changing task; gold and do-nothing on another task."""
    envs = {script: _env(name, script) for script in ("truncated", "gold")}
    changing, other = _sample(envs["gold"])
    rewards = {
        script: _check(envs.get(script, envs["gold"]), changing, script) for script in SCRIPTS
    }
    other_gold = _check(envs["gold"], other, "gold")
    _check(envs["gold"], other, "do_nothing")
    # passes and failures both, so a scorer returning a constant fails
    assert rewards["gold"] == other_gold == 1.0
    assert rewards["do_nothing"] == rewards["truncated"] == 0.0


@pytest.mark.parametrize("name", ENVS)
def test_read_and_generic_tools_leave_the_db_alone(name):
    """The fast scorer hashes no world when every call reads: check what that relies on
    with every READ or GENERIC call of every gold solution."""
    from tau2.data_model.message import ToolCall as TauToolCall
    from tau2.environment.toolkit import ToolType

    domain = _env(name, "gold").domain
    world = domain.build_environment()
    fresh = world.get_db_hash()
    calls = [
        a
        for task in domain.tasks.values()
        for a in task.evaluation_criteria.actions or []
        if domain.tool_types[a.name] in (ToolType.READ, ToolType.GENERIC)
    ]
    assert {domain.tool_types[a.name] for a in calls} == {ToolType.READ, ToolType.GENERIC}
    for action in calls:
        world.get_response(TauToolCall(id="read", name=action.name, arguments=action.arguments))
    assert world.get_db_hash() == fresh


def test_scoring_builds_no_world_once_the_hashes_are_known(monkeypatch):
    """Gold and fresh-world hashes are cached, so scoring the same task again builds nothing."""
    from tau2.data_model.simulation import TerminationReason

    env = _env("tau3_airline", "gold")
    task_id = _sample(env)[0]
    episodes = []
    for script in ("gold", "do_nothing"):  # the env's scoring caches the hashes
        episodes.append((_check(env, task_id, script), env._current_world(), env._trajectory))

    def no_world():
        raise AssertionError("a world was built to score")

    monkeypatch.setattr(env.domain, "build_environment", no_world)
    for reward, world, messages in episodes:
        again = score_episode(env.domain, task_id, world, messages, TerminationReason.USER_STOP)
        assert again.reward == reward
    assert [reward for reward, *_ in episodes] == [1.0, 0.0]


@pytest.mark.parametrize("name", ENVS)
def test_a_gold_replays_world_is_taken_as_the_gold_world(name, monkeypatch):
    """Scoring an episode that made the gold solution's writing calls stores its own
    world's hashes as the task's gold hashes, building no gold world; they equal the gold
    world's built as tau2 builds it, on three state-changing tasks. An episode that wrote
    otherwise leaves the gold hashes to be built."""
    from tau2.data_model.simulation import TerminationReason

    env = _env(name, "gold")
    domain = env.domain
    ordered = sorted(domain.tasks, key=lambda t: (len(t), t))
    tasks = [t for t in ordered if domain.category(t) == "state_changing"][:3]
    episodes = {}
    for task_id in tasks:
        for script in ("gold", "wrong_args"):  # scored by the env: the gold hashes cached
            _check(env, task_id, script)
            episodes[task_id, script] = (env._current_world(), env._trajectory)
    built_by_tau2s_recipe = {t: domain.gold_hashes[t] for t in tasks}

    def no_world():
        raise AssertionError("a world was built to score")

    monkeypatch.setattr(domain, "build_environment", no_world)
    monkeypatch.setattr(domain, "gold_hashes", {})
    for task_id in tasks:
        world, messages = episodes[task_id, "wrong_args"]
        with pytest.raises(AssertionError, match="a world was built"):
            score_episode(domain, task_id, world, messages, TerminationReason.USER_STOP)
        world, messages = episodes[task_id, "gold"]
        score_episode(domain, task_id, world, messages, TerminationReason.USER_STOP)
    assert domain.gold_hashes == built_by_tau2s_recipe


@pytest.mark.slow
@pytest.mark.parametrize("name", ENVS)
def test_fast_scores_equal_tau2_on_every_task(name):
    """Every task of every split: gold, do-nothing, and one perturbation in turn."""
    env = _env(name, "gold")
    perturbations = ("wrong_args", "partial", "reversed")
    rewards = []
    for k, task_id in enumerate(sorted(env.domain.tasks, key=lambda t: (len(t), t))):
        for script in ("gold", "do_nothing", perturbations[k % len(perturbations)]):
            rewards.append(_check(env, task_id, script))
    assert set(rewards) == {0.0, 1.0}
    (task_id, *_) = env.domain.tasks
    assert _check(_env(name, "truncated"), task_id, "truncated") == 0.0
