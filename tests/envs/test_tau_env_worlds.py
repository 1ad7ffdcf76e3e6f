"""A tau2-backed episode reads the domain's one pristine world until its first call that may
write, then gets a world of its own: no episode sees another's writes, none changes the
pristine world, and an episode that only reads builds no world."""

import pytest

from envs.core import AgentAction
from envs.factory import make_env
from envs.tau_env import TauEnv

ENVS = ("tau3_airline", "tau2_retail", "airline_mini")


def _writing_task(env: TauEnv) -> tuple[str, list[AgentAction]]:
    """A task whose gold solution writes, and its gold tool calls."""
    for task_id in sorted(env.domain.tasks, key=lambda t: (len(t), t)):
        calls = [a for a in env.gold_actions(task_id) if a.is_tool_use]
        if any(not env.domain.leaves_db_alone(c.name) for a in calls for c in a.tool_calls):
            return task_id, calls
    raise AssertionError(f"{env.domain.name} has no task whose gold solution writes")


@pytest.mark.parametrize("name", ENVS)
def test_a_write_stays_in_its_episode(name):
    writer, reader = make_env({"name": name}), make_env({"name": name})
    assert writer.domain is reader.domain  # the pristine world is shared
    fresh = writer.domain.pristine_world().get_db_hash()
    task_id, calls = _writing_task(writer)
    writer.reset(seed=0, options={"task_id": task_id})
    reader.reset(seed=0, options={"task_id": task_id})
    for action in calls:
        writer.step(action)
    assert writer.state_hash() != fresh  # the gold solution changed the writer's world
    assert reader.state_hash() == fresh
    assert writer.domain.pristine_world().get_db_hash() == fresh
    # the reader's lookups (the gold calls that read) answer from the unchanged world
    reads = [
        AgentAction(tool_calls=(c,))
        for a in calls
        for c in a.tool_calls
        if reader.domain.leaves_db_alone(c.name)
    ]
    for action in reads:
        reader.step(action)
    assert reader._world is None and reader.state_hash() == fresh


@pytest.mark.parametrize("name", ENVS)
def test_an_episode_that_only_reads_builds_no_world(name, monkeypatch):
    env = make_env({"name": name})
    task_id, calls = _writing_task(env)
    reads = [c for a in calls for c in a.tool_calls if env.domain.leaves_db_alone(c.name)]
    assert reads
    env.domain.pristine_world()

    def no_world():
        raise AssertionError("a world was built for an episode that only reads")

    monkeypatch.setattr(env.domain, "build_environment", no_world)
    env.reset(seed=0, options={"task_id": task_id})
    for call in reads:
        _, _, _, _, info = env.step(AgentAction(tool_calls=(call,)))
    assert info["tool_calls"] == len(reads) and info["tool_errors"] == 0
