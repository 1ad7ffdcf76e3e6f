"""The scripted floor and ceiling of a held-out set: real episodes on airline_mini, and
computed once per process for the runs of a compare."""

from agents.env_pool import EnvSpec
from learners.training import evaluate
from learners.training.evaluate import Bounds, scripted_bounds, shared_scripted_bounds

SPEC = EnvSpec({"name": "airline_mini", "split": "test"})


def test_bounds_are_shared_by_runs_with_the_same_env_and_tasks(monkeypatch):
    env = SPEC.build()
    tasks = [t.task_id for t in env.tasks()][:4]
    bounds = scripted_bounds(env, tasks)
    assert bounds.ceiling == 1.0 and bounds.floor < 1.0
    calls = []

    def counted(env, task_ids):
        calls.append(task_ids)
        return scripted_bounds(env, task_ids)

    monkeypatch.setattr(evaluate, "scripted_bounds", counted)
    monkeypatch.setattr(evaluate, "_BOUNDS", {})
    assert shared_scripted_bounds(SPEC, env, tasks) == bounds
    assert shared_scripted_bounds(EnvSpec(dict(SPEC.env)), SPEC.build(), tasks) == bounds
    assert len(calls) == 1
    other = shared_scripted_bounds(SPEC, env, tasks[:1])
    assert isinstance(other, Bounds) and len(calls) == 2
